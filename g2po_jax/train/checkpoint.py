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
data can restore without an error.

With several processes every process calls `save` and `restore_latest` (orbax
writes each array shard once and the JSON record from process 0).

A *policy directory* (what experiments/sft.py writes and `model.init_from`
reads) is a Hugging Face Qwen2 directory plus the tokenizer's files, so a real
Qwen2.5 checkpoint and our warm start load the same way.
"""

import os
import shutil

from absl import logging
import jax
import orbax.checkpoint as ocp

from g2po_jax import distributed
from g2po_jax import tokenizers
from g2po_jax.models import hf
from g2po_jax.models import qwen2


class Checkpointer:
  """Saves and restores (state pytree, JSON record) pairs by iteration."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True))

  def save(self, iteration: int, state, record: dict) -> None:
    """Starts an asynchronous save; `wait` (or the next save) completes it.

    The device arrays are copied to host memory before this returns (orbax
    0.12.8 with default options does that inside `save`), so `state` may be
    donated to the next train step right away.
    """
    self._manager.save(iteration, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)), force=True)

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
    for i, step in enumerate(reversed(steps)):
      error = None
      try:
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), record=ocp.args.JsonRestore()))
      except Exception as e:  # orbax raises many types for damaged files
        error = f'{type(e).__name__}: {str(e)[:300]}'
      # A process that read its shards fine must not go on alone.
      if not distributed.agree_max([error is not None])[0]:
        self._set_aside(steps[len(steps) - i:])
        return out.state, out.record
      logging.warning('checkpoint %d in %s is unreadable (%s); falling back to the one before.',
                      step, self.directory, error or 'failed in another process')
    if steps:
      raise RuntimeError(
          f'none of the checkpoints {steps} in {self.directory} is readable (see the warnings '
          f'above). Move the directory away to start over.')
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
    self._manager.wait_until_finished()
    self._manager.close()


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

