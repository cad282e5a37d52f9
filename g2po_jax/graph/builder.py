"""The per-group state-transition graph as padded integer arrays. Host only.

A rollout batch is B trajectories padded to T steps. Within each task group,
every distinct state key is one node; every real step is one edge
`state -> next_state` (a multigraph: revisits are separate edges, self-loops
allowed). Node identity is the pair (group, key): nothing is shared across
tasks.

`build_graph` numbers nodes densely with sorts (no Python loop over rows) and
pads B and T up to a small set of bucket sizes. The node arrays get 2 * B * T
slots (every state and next state of a padded batch fits), so their size
follows the row buckets and a batch's node count never triggers a new
compilation: a trainer with fixed B and T compiles its estimator once.
Routing the last step of a successful trajectory to SUCCESS depends on the
rewards, so the estimators do it on the device (see `g2po_jax.credit`).
"""

from typing import NamedTuple

import numpy as np

MIN_ROWS = 8
MIN_STEPS = 8


class Graph(NamedTuple):
  """Padded graph arrays of a rollout batch (numpy here; jax under jit).

  Static sizes come from shapes: B rows, T steps, N node slots.

  Attributes:
    group: [B] int32. Dense task group of each trajectory, in [0, B).
    node: [B, T] int32. Node of each step's state, in [0, N); 0 on padding.
    next_node: [B, T] int32. Node of each step's next_state, in [0, N).
    node_group: [N] int32. Group owning each node; B on unused slots.
    context: [K+1, B, T] int32 or None. For HGPO: at level k (0-based) the id,
      in [0, B*T), of the window (group, last k+1 state keys up to this step).
      Steps t < k have no window at level k (it would reach before the
      episode start); their id is 0 and HGPO skips them. None unless built
      with `history`.
  """
  group: np.ndarray
  node: np.ndarray
  next_node: np.ndarray
  node_group: np.ndarray
  context: np.ndarray | None = None


def bucket_size(n: int, minimum: int) -> int:
  """Smallest size >= max(n, minimum) of the form 2**k or 3 * 2**(k-1).

  Consecutive buckets differ by at most 1.5x, so padding wastes at most a
  third of the work while sizes take only about two values per doubling.
  """
  size = 1 << max(int(minimum) - 1, 0).bit_length()   # a power of two
  while size < n:
    size = size * 3 // 2 if size & (size - 1) == 0 and size > 1 else size * 4 // 3
    size = max(size, 2)
  return size


def dense_ids(*columns: np.ndarray) -> tuple[np.ndarray, int]:
  """Numbers the distinct rows of stacked 1-D columns densely (exact).

  Args:
    *columns: [n] integer arrays; row i is the tuple of their i-th entries.
  Returns:
    ([n] int32 ids in [0, k), k = number of distinct tuples), ids in sorted
    order of the tuples.
  """
  n = columns[0].shape[0]
  if n == 0:
    return np.zeros(0, np.int32), 0
  order = np.lexsort(columns[::-1])
  change = np.zeros(n, bool)
  change[0] = True
  for c in columns:
    s = c[order]
    change[1:] |= s[1:] != s[:-1]
  ids = np.empty(n, np.int32)
  ids[order] = np.cumsum(change) - 1
  return ids, int(change.sum())


def _pad(x: np.ndarray, shape: tuple[int, ...], fill=0) -> np.ndarray:
  out = np.full(shape, fill, x.dtype)
  out[tuple(slice(0, s) for s in x.shape)] = x
  return out


def build_graph(group: np.ndarray, state: np.ndarray, next_state: np.ndarray,
                mask: np.ndarray, history: int | None = None,
                pad: bool = True) -> Graph:
  """Builds the padded graph arrays of a rollout batch.

  Inputs are assumed valid (see `g2po_jax.credit.validate_batch`).

  Args:
    group: [B] int. Task group of each trajectory (any integer labels).
    state: [B, T] integer keys of the state each action was taken in.
    next_state: [B, T] integer keys of the state reached.
    mask: [B, T] bool, a prefix per row: True on real steps.
    history: if given (K >= 0), also build HGPO's K+1 context levels.
    pad: round B and T up to bucket sizes (`bucket_size`) and give the node
      arrays 2 * B' * T' slots; without it, shapes are exact.
  Returns:
    A `Graph` with arrays of shape [B', T'], [N'] (B' >= B, T' >= T).
    Padded rows and steps are outside every node; their `node` is 0.
  """
  b, t = mask.shape
  bp, tp = (bucket_size(b, MIN_ROWS), bucket_size(t, MIN_STEPS)) if pad else (b, t)
  group_id = dense_ids(np.asarray(group))[0]
  rows = np.broadcast_to(group_id[:, None], (b, t))
  n_real = int(mask.sum())
  # Nodes: distinct (group, key) over states and next states of real steps.
  keys = np.concatenate([state[mask], next_state[mask]]).astype(np.uint64)
  owners = np.concatenate([rows[mask], rows[mask]])
  ids, num_nodes = dense_ids(owners, keys)
  node = np.zeros((b, t), np.int32)
  next_node = np.zeros((b, t), np.int32)
  node[mask] = ids[:n_real]
  next_node[mask] = ids[n_real:]
  np_ = 2 * bp * tp if pad else max(num_nodes, 1)
  node_group = np.full(np_, bp, np.int32)
  node_group[ids] = owners
  context = None
  if history is not None:
    context = np.zeros((history + 1, bp, tp), np.int32)
    for level in range(history + 1):
      context[level, :b, :t] = _window_ids(rows, state, mask, level + 1)
  return Graph(
      group=_pad(group_id, (bp,)),
      node=_pad(node, (bp, tp)),
      next_node=_pad(next_node, (bp, tp)),
      node_group=node_group,
      context=context)


def _window_ids(rows: np.ndarray, state: np.ndarray, mask: np.ndarray,
                size: int) -> np.ndarray:
  """[B, T] int32 dense ids of (group, last `size` state keys); 0 at t < size-1."""
  b, t = mask.shape
  keys = state.astype(np.uint64)
  full = mask & (np.arange(t) >= size - 1)        # the window fits in the episode
  columns = [rows[full]]
  for lag in range(size):
    shifted = np.zeros_like(keys)
    shifted[:, lag:] = keys[:, :t - lag]
    columns.append(shifted[full])
  out = np.zeros((b, t), np.int32)
  out[full] = dense_ids(*columns)[0]
  return out
