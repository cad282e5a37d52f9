"""Checkpoints: the orbax-managed train state, and warm-start policy dirs.

`Checkpointer` keeps the last K train states (policy, optimizer moments, KL
reference, step) with a JSON record of the iteration, in `workdir/checkpoints`.
Every RNG of the run is derived from (config seed, iteration), so the
iteration in the record is all a resume needs to replay the task sampler and
the sampling keys exactly.

What can be left on disk, and what happens to it (orbax 0.12.8, measured):
  <step>.orbax-checkpoint-tmp-<n>/   a save cut short (kill -9, preemption):
      orbax writes here and renames to <step>/ only when every file is
      written, so this is never listed as a step; it is deleted in the
      background at start-up (finished before the first save).
  <step>/ with missing or truncated files (copied half, disk trouble): listed
      as a step, but restoring it raises (ValueError from tensorstore for
      truncated or missing array data, KeyError for a missing item). Restore
      then falls back to the step before, with a warning, and renames the bad
      step to <step>.unreadable/ so the resumed run can save that step again.
Restore checks readability, not integrity: bytes flipped inside an array's
data can restore without an error. When no step is readable, restore raises
`CheckpointError` rather than start over and overwrite them.

A save first checks that the disk has room for the state: on a full disk
orbax's background threads fail with a dozen tracebacks (measured), while
this stops with one `CheckpointError` naming the directory and the space.

With several processes every process calls `save` and `restore_latest` (orbax
writes each array shard once and the JSON record from process 0).

A *policy directory* (what experiments/sft.py writes and `model.init_from`
reads) is a Hugging Face Qwen2 directory plus the tokenizer's files, so a real
Qwen2.5 checkpoint and our warm start load the same way.
"""

import contextlib
import errno
import logging as std_logging
import os
import re
import shutil

from absl import logging
import jax
import orbax.checkpoint as ocp

from g2po_jax import distributed
from g2po_jax import tokenizers
from g2po_jax.models import hf
from g2po_jax.models import qwen2


# Room a save needs beyond the state's bytes: orbax's metadata files.
_SAVE_MARGIN_BYTES = 1 << 20


class CheckpointError(RuntimeError):
  """Checkpoints cannot be written or read; the message names the directory."""


def _not_a_reported_write_failure(record: std_logging.LogRecord) -> bool:
  """False for orbax's thread tracebacks of a failed write (an OS error):
  the save raises that error, which Checkpointer reports in one line."""
  error = record.exc_info[1] if record.exc_info else None
  return not (error is not None and 'orbax' in record.pathname
              and _os_error_code(error) is not None)


class Checkpointer:
  """Saves and restores (state pytree, JSON record) pairs by iteration."""

  def __init__(self, directory: str, keep: int):
    absl_logger = std_logging.getLogger('absl')
    if _not_a_reported_write_failure not in absl_logger.filters:
      absl_logger.addFilter(_not_a_reported_write_failure)
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True))
    self._saving = None   # iteration of the save in flight

  def save(self, iteration: int, state, record: dict) -> None:
    """Starts an asynchronous save; `wait` (or the next save) completes it.

    The device arrays are copied to host memory before this returns (orbax
    0.12.8 with default options does that inside `save`), so `state` may be
    donated to the next train step right away.

    Raises:
      CheckpointError: the disk lacks room for the state, or writing the
        previous or this save failed with an OS error (e.g. disk full).
    """
    need = sum(x.nbytes for x in jax.tree.leaves(state)) + _SAVE_MARGIN_BYTES
    free = shutil.disk_usage(self.directory).free
    if distributed.agree_max([free < need])[0]:   # every process stops together
      raise CheckpointError(
          f'no room to save checkpoint {iteration} in {self.directory}: it needs about '
          f'{need / 2**20:.1f} MiB and the disk has {free / 2**20:.1f} MiB free '
          f'({os.strerror(errno.ENOSPC)}).')
    with self._os_errors(iteration):
      self._manager.save(iteration, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)), force=True)
    self._saving = iteration

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def restore_latest(self, abstract_state):
    """(state, record) of the newest readable checkpoint, or None if there is none.

    Walks back from the newest step. An unreadable one is logged as a warning
    and renamed to `<step>.unreadable` (by process 0; every process tried it
    and they all move on together).

    Args:
      abstract_state: a pytree of jax.ShapeDtypeStruct (with shardings) to
        restore into, e.g. from `jax.eval_shape`.
    Raises:
      RuntimeError: checkpoints exist but none is readable (rather than
        silently starting over and overwriting them).
    """
    steps = self.steps()
    unreadable = []                                  # (step, why), newest first
    for step in reversed(steps):
      error = None
      try:
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), record=ocp.args.JsonRestore()))
      except Exception as e:  # orbax raises many types for damaged files
        error = f'{type(e).__name__}: {" ".join(str(e).split())[:200]}'
      # A process that read its shards fine must not go on alone.
      if not distributed.agree_max([error is not None])[0]:
        for bad, why in unreadable:
          logging.warning('checkpoint %d in %s is unreadable (%s); fell back to checkpoint %d.',
                          bad, self.directory, why, step)
        self._set_aside([bad for bad, _ in unreadable])
        return out.state, out.record
      unreadable.append((step, error or 'failed in another process'))
    if steps:
      raise CheckpointError(
          f'none of the checkpoints {steps} in {self.directory} is readable (checkpoint '
          f'{steps[-1]}: {unreadable[0][1]}); move the directory away to start over.')
    return None

  def _set_aside(self, steps: list[int]) -> None:
    """Renames unreadable step directories out of orbax's way."""
    if not steps:
      return
    if jax.process_index() == 0:
      for step in steps:
        path = os.path.join(self.directory, str(step))
        target, n = path + '.unreadable', 1
        while os.path.exists(target):
          target, n = f'{path}.unreadable{n}', n + 1
        os.rename(path, target)
        logging.warning('moved unreadable checkpoint %s to %s', path, target)
    distributed.barrier('checkpoint_set_aside')
    self._manager.reload()

  def close(self) -> None:
    with self._os_errors(self._saving):
      self._manager.wait_until_finished()
    self._manager.close()

  @contextlib.contextmanager
  def _os_errors(self, iteration: int | None):
    """Turns a failed write (an OS error, possibly wrapped by tensorstore)
    into one CheckpointError; any other error propagates unchanged."""
    try:
      yield
    except Exception as e:
      code = _os_error_code(e)
      if code is None:
        raise
      raise CheckpointError(f'saving checkpoint {iteration} in {self.directory} failed: '
                            f'{os.strerror(code)} (errno {code}).') from e


def _os_error_code(error: BaseException) -> int | None:
  """The errno behind an error or its causes; tensorstore writes it into the
  message as os_error_code='N'."""
  while error is not None:
    if isinstance(error, OSError) and error.errno:
      return error.errno
    match = re.search(r"os_error_code='(\d+)'", str(error))
    if match:
      return int(match.group(1))
    error = error.__cause__ or error.__context__
  return None


def save_policy(directory: str, model: qwen2.Qwen2, tokenizer: tokenizers.Tokenizer) -> None:
  """Writes a policy directory: Hugging Face Qwen2 weights + the tokenizer.

  Written beside the target and renamed into place, so an interrupted save
  never leaves a half-written policy that a later run would load.
  """
  directory = os.path.abspath(directory)
  partial = directory + '.partial'
  shutil.rmtree(partial, ignore_errors=True)
  hf.save_hf(model, partial)
  tokenizer.save(partial)
  shutil.rmtree(directory, ignore_errors=True)
  os.replace(partial, directory)


def check_policy(directory: str) -> None:
  """Checks, without loading weights, that `directory` is a policy directory.

  Raises:
    ValueError: naming what is missing or wrong.
  """
  if not os.path.exists(directory):
    raise ValueError(f'{directory!r} does not exist.')
  hf.load_config(directory)                     # reads config.json only
  if not any(os.path.isfile(os.path.join(directory, f)) for f in (hf.WEIGHTS_FILE,
                                                                  hf.INDEX_FILE)):
    raise ValueError(f'{directory!r} has neither {hf.WEIGHTS_FILE} nor {hf.INDEX_FILE}.')
  if not any(os.path.isfile(os.path.join(directory, f)) for f in (
      tokenizers.WordTokenizer.FILE, tokenizers.HFTokenizer.FILE)):
    raise ValueError(f'{directory!r} holds no tokenizer ({tokenizers.WordTokenizer.FILE} or '
                     f'{tokenizers.HFTokenizer.FILE}).')


def load_policy(directory: str, *, mesh: jax.sharding.Mesh | None = None,
                **overrides) -> tuple[qwen2.Qwen2, tokenizers.Tokenizer]:
  """Loads a policy directory (ours or a Hugging Face Qwen2 download).

  Raises:
    ValueError: naming what is missing or wrong in the directory.
  """
  if not os.path.isdir(directory):
    raise ValueError(f'model.init_from={directory!r} is not a directory.')
  return hf.load_hf(directory, mesh=mesh, **overrides), tokenizers.load_tokenizer(directory)


def abstract(tree):
  """ShapeDtypeStructs (with shardings) of a pytree of arrays."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      tree)

