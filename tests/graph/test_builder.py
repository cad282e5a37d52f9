"""Tests for g2po_jax/graph/builder.py and stats.py."""

import subprocess
import sys

import numpy as np
import pytest

from g2po_jax.graph import bucket_size, build_graph, dense_ids, graph_stats

A, B, C, D, E, END = 1, 2, 3, 4, 5, 99
GROUP = np.array([7, 7, 7, 7])
STATE = np.array([[A, B], [A, B], [A, D], [A, B]])
NEXT = np.array([[B, END], [B, C], [D, E], [B, END]])
MASK = np.ones((4, 2), bool)


def test_nodes_are_group_key_pairs():
  group = np.array([0, 0, 1])
  state = np.array([[1, 2], [1, 1], [1, 2]])
  g = build_graph(group, state, np.roll(state, -1, 1), np.ones((3, 2), bool), pad=False)
  assert g.node[0, 0] == g.node[1, 0] == g.node[1, 1]          # same group, same key
  assert g.node[2, 0] != g.node[0, 0]                          # other task, same key
  assert (g.node_group[g.node] == g.group[:, None]).all()


def test_padding_and_buckets():
  g = build_graph(GROUP, STATE, NEXT, MASK)
  assert g.node.shape == g.next_node.shape == (8, 8) and g.group.shape == (8,)
  assert g.node_group.shape == (2 * 8 * 8,)
  assert (g.node_group[6:] == 8).all()                         # A..E and END, rest unused
  assert sorted(set(g.node[:4, :2].ravel()) | set(g.next_node[:4, :2].ravel())) == list(range(6))


def test_bucket_sizes_are_few_and_tight():
  sizes = {bucket_size(n, 8) for n in range(1, 1025)}
  assert sizes == {8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024}
  assert all(n <= bucket_size(n, 8) < 1.5 * n + 1 for n in range(8, 5000))


def test_dense_ids_exact():
  ids, n = dense_ids(np.array([3, 1, 3, 1]), np.array([5, 5, 5, 6]))
  assert n == 3 and ids.tolist() == [2, 0, 2, 1]


def test_history_contexts():
  state = np.array([[A, B, C], [D, B, C], [A, B, C]])
  g = build_graph(np.zeros(3), state, state, np.ones((3, 3), bool), history=2, pad=False)
  level1, level2, level3 = g.context
  assert level1[0, 2] == level1[1, 2] == level1[2, 2]          # same state C
  assert level2[0, 2] == level2[1, 2]                          # same (B, C)
  assert level3[0, 2] != level3[1, 2] and level3[0, 2] == level3[2, 2]
  assert level2[0, 1] == level2[2, 1] != level2[1, 1]          # (A, B) vs (D, B)
  # No window reaches before the episode start: those steps get id 0.
  assert (level2[:, 0] == 0).all() and (level3[:, :2] == 0).all()


def test_stats():
  g = build_graph(GROUP, STATE, NEXT, MASK)
  stats = graph_stats(g, MASK)
  assert stats['nodes'] == 3 and stats['edges'] == 8           # A, B, D acted in
  assert stats['visits_per_node'] == pytest.approx(8 / 3)
  assert stats['singleton_fraction'] == pytest.approx(1 / 8)   # D
  assert stats['shared_fraction'] == pytest.approx(7 / 8)
  assert stats['group_nodes'].tolist() == [3]


def test_host_modules_do_not_import_jax():
  code = 'import g2po_jax.graph, sys; assert "jax" not in sys.modules, "jax imported"'
  subprocess.run([sys.executable, '-c', code], check=True)
