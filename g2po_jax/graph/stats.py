"""Graph statistics of a rollout batch (host, numpy)."""

import numpy as np

from g2po_jax.graph.builder import Graph, dense_ids


def graph_stats(graph: Graph, mask: np.ndarray) -> dict[str, np.ndarray | float]:
  """Size and overlap of each group's graph and of the whole batch.

  A node counts when at least one real step is taken in it (final
  observations that are only reached are not nodes here); an edge is a real
  step (multigraph).

  Args:
    graph: from `build_graph`, shapes [B', T'], [N'].
    mask: [B, T] bool with B <= B', T <= T'.
  Returns:
    Per group ([G] arrays, G = number of groups): `group_nodes`,
    `group_edges`, `group_visits_per_node`, `group_singleton_fraction`; for
    the batch (floats): `nodes`, `edges`, `visits_per_node` (edges / nodes),
    `singleton_fraction` (share of steps whose node is visited once),
    `shared_fraction` (share of steps whose node is visited by two or more
    trajectories).
  """
  b, t = mask.shape
  node = graph.node[:b, :t][mask]
  group = graph.group[:b]
  num_groups = int(group.max(initial=-1)) + 1
  num_slots = graph.node_group.shape[0]
  visits = np.bincount(node, minlength=num_slots)
  trajectories = np.bincount(  # distinct trajectories per node
      np.unique(node.astype(np.int64) * b + np.nonzero(mask)[0]) // b,
      minlength=num_slots)
  owner = graph.node_group
  visited = visits > 0
  g_nodes = np.bincount(owner[visited], minlength=num_groups)[:num_groups]
  g_edges = np.bincount(owner[node], minlength=num_groups)[:num_groups]
  single_rows = visits[node] == 1
  g_single = np.bincount(owner[node], weights=single_rows, minlength=num_groups)[:num_groups]
  edges = node.size
  nodes = int(visited.sum())
  return {
      'group_nodes': g_nodes,
      'group_edges': g_edges,
      'group_visits_per_node': g_edges / np.maximum(g_nodes, 1),
      'group_singleton_fraction': g_single / np.maximum(g_edges, 1),
      'nodes': float(nodes),
      'edges': float(edges),
      'visits_per_node': edges / max(nodes, 1),
      'singleton_fraction': float(single_rows.mean()) if edges else 0.0,
      'shared_fraction': float((trajectories[node] >= 2).mean()) if edges else 0.0,
  }


def matching_stats(group: np.ndarray, node_key: np.ndarray, true_key: np.ndarray,
                   mask: np.ndarray) -> dict[str, float]:
  """How well the nodes of a matching rule fit the true states.

  Nodes and true states are (group, key) pairs over the steps acted in.

  Args:
    group: [B] int task group of each trajectory.
    node_key: [B, T] uint64 keys the matcher gave (equal in a group = one node).
    true_key: [B, T] uint64 keys of the true states.
    mask: [B, T] bool real steps.
  Returns:
    `nodes`; `visits_per_node`; `singleton_fraction` (share of steps in a
    node visited once) and `true_singleton_fraction` (the same under the
    true states); `merged_nodes` (nodes holding two or more true states);
    `purity` (share of steps whose node holds only their true state);
    `recall` (share of pairs of visits to one true state that share a node;
    1.0 with no such pair).
  """
  owner = np.broadcast_to(np.asarray(group)[:, None], mask.shape)[mask].astype(np.int64)
  node, num_nodes = dense_ids(owner, node_key[mask].astype(np.uint64))
  true, _ = dense_ids(owner, true_key[mask].astype(np.uint64))
  cell, _ = dense_ids(node.astype(np.int64), true.astype(np.int64))  # (node, true) pairs
  steps = node.size
  visits = np.bincount(node)
  true_visits = np.bincount(true)
  cell_visits = np.bincount(cell)
  # True states per node: count each distinct (node, true) pair once.
  first = np.zeros(cell_visits.size, np.int64)
  first[cell[::-1]] = np.arange(steps)[::-1]
  kinds = np.bincount(node[first], minlength=num_nodes)
  pairs = lambda v: (v * (v - 1) // 2).sum()
  revisits = pairs(true_visits)
  return {
      'nodes': float(num_nodes),
      'visits_per_node': steps / max(num_nodes, 1),
      'singleton_fraction': float((visits[node] == 1).mean()) if steps else 0.0,
      'true_singleton_fraction': float((true_visits[true] == 1).mean()) if steps else 0.0,
      'merged_nodes': float((kinds > 1).sum()),
      'purity': float((kinds[node] == 1).mean()) if steps else 1.0,
      'recall': float(pairs(cell_visits) / revisits) if revisits else 1.0,
  }
