"""Host <-> global-array plumbing for one or many processes.

JAX's multi-controller runtime runs the same program in every process; each
process owns some rows of every batch (whole task groups: its own
environments) and the devices attached to it. These helpers assemble those
rows into global arrays sharded over the mesh, bring a process's own rows
back, and let processes agree on the padded shapes every one of them must
use. In a single process they reduce to `device_put` / `device_get`.
"""

from collections.abc import Sequence
import hashlib

import jax
from jax.experimental import multihost_utils
import numpy as np


def agree_max(values: Sequence[int]) -> list[int]:
  """The elementwise maximum of `values` over all processes (one collective)."""
  if jax.process_count() == 1:
    return [int(v) for v in values]
  gathered = multihost_utils.process_allgather(np.asarray(values, np.int64))
  return [int(v) for v in np.asarray(gathered).reshape(-1, len(values)).max(0)]


def gather_rows(x: np.ndarray) -> np.ndarray:
  """Every process's [n, ...] rows, concatenated in process order.

  All processes must pass the same shape (pad first); used for metrics.
  """
  if jax.process_count() == 1:
    return np.asarray(x)
  out = np.asarray(multihost_utils.process_allgather(np.asarray(x)))
  return out.reshape((-1,) + out.shape[2:])


def global_batch(tree, sharding_of):
  """Assembles each process's rows into global arrays.

  Args:
    tree: a pytree of numpy arrays [b_local, ...], the same shapes in every
      process.
    sharding_of: maps an array to its NamedSharding (batch-major).
  Returns:
    The pytree of global jax Arrays [b_local * num_processes, ...].
  """
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding_of(x), np.asarray(x)), tree)


def local_rows(tree, mesh: jax.sharding.Mesh, spec_of):
  """This process's rows of batch-sharded global arrays, as numpy.

  Args:
    tree: a pytree of global jax Arrays sharded per `spec_of`.
    mesh: their mesh.
    spec_of: maps an array to its PartitionSpec.
  """
  if jax.process_count() == 1:
    return jax.device_get(tree)
  local = multihost_utils.global_array_to_host_local_array(
      tree, mesh, jax.tree.map(spec_of, tree))
  return jax.device_get(local)


def gather_strings(texts: Sequence[str], width: int = 64) -> list[str]:
  """Every process's strings (the same count each), in process order."""
  if jax.process_count() == 1:
    return list(texts)
  codes = np.zeros((len(texts), width), np.uint8)
  for i, text in enumerate(texts):
    raw = text.encode()[:width]
    codes[i, :len(raw)] = np.frombuffer(raw, np.uint8)
  return [bytes(row).rstrip(b'\0').decode(errors='replace') for row in gather_rows(codes)]


def fetch(x: jax.Array) -> np.ndarray:
  """The whole of a (possibly multi-process) global array, on every process."""
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def barrier(name: str) -> None:
  """Waits until every process got here (no-op in a single process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def local_digest(tree) -> str:
  """A hash of the values this process holds of a pytree of jax Arrays.

  Hashes each leaf's addressable shards (one per distinct index, in index
  order) with their positions. Arrays replicated over the processes give the
  same digest in every process exactly when every process holds the same
  values, which makes this a cheap check that replicas did not drift apart.
  """
  h = hashlib.blake2b(digest_size=16)
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    h.update(jax.tree_util.keystr(path).encode())
    shards = {}
    for shard in leaf.addressable_shards:
      key = tuple((s.start, s.stop) for s in shard.index)
      shards.setdefault(key, shard)
    for key in sorted(shards, key=lambda k: [(a or 0, b or -1) for a, b in k]):
      h.update(repr(key).encode())
      h.update(np.ascontiguousarray(jax.device_get(shards[key].data)).tobytes())
  return h.hexdigest()
