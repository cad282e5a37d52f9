"""Checkpoints: the orbax-managed train state, and warm-start policy dirs.

`Checkpointer` keeps the last K train states (policy, optimizer moments, KL
reference, step) with a JSON record of the iteration, in `workdir/checkpoints`.
Restoring walks back from the newest step: a corrupt or half-written one is
skipped with a warning. Every RNG of the run is derived from (config seed,
iteration), so the iteration in the record is all a resume needs to replay
the task sampler and the sampling keys exactly.

A *policy directory* (what experiments/sft.py writes and `model.init_from`
reads) is a Hugging Face Qwen2 directory plus the tokenizer's files, so a real
Qwen2.5 checkpoint and our warm start load the same way.
"""

import os
import shutil

from absl import logging
from flax import nnx
import jax
import orbax.checkpoint as ocp

from g2po_jax import tokenizers
from g2po_jax.models import hf
from g2po_jax.models import qwen2


class Checkpointer:
  """Saves and restores (state pytree, JSON record) pairs by iteration."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def save(self, iteration: int, state, record: dict) -> None:
    """Starts an asynchronous save; `wait` (or the next save) completes it."""
    self._manager.save(iteration, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)), force=True)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def restore_latest(self, abstract_state):
    """(state, record) of the newest readable checkpoint, or None if none.

    Args:
      abstract_state: a pytree of jax.ShapeDtypeStruct (with shardings) to
        restore into, e.g. from `jax.eval_shape`.
    """
    for step in reversed(self.steps()):
      try:
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), record=ocp.args.JsonRestore()))
        return out.state, out.record
      except Exception as e:  # orbax raises many types for damaged files
        logging.warning('checkpoint %d in %s is unreadable (%s: %s); trying the one before.',
                        step, self.directory, type(e).__name__, str(e)[:200])
    return None

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


def params_of(model: qwen2.Qwen2) -> nnx.State:
  return nnx.split(model)[1]
