"""Graph statistics of a rollout batch (host, numpy)."""

import numpy as np

from g2po_jax.graph.builder import Graph


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
