"""The worked example of the spec (section 10), checked to 1e-4."""

import numpy as np
import pytest

from g2po_jax import credit

# Trajectories A->B->SUCCESS, A->B->C (fail), A->D->E (fail), A->B->SUCCESS.
A, B, C, D, E, END = 1, 2, 3, 4, 5, 99
EXAMPLE = dict(
    group=np.zeros(4, np.int32),
    state=np.array([[A, B], [A, B], [A, D], [A, B]]),
    next_state=np.array([[B, END], [B, C], [D, E], [B, END]]),
    reward=np.array([[0, 10], [0, 0], [0, 0], [0, 10]], np.float32),
    valid=np.ones((4, 2), bool),
    mask=np.ones((4, 2), bool),
)

EXPECTED = {
    'g2po': [1.8594, 2.4331, -0.0114, -3.8585, -3.7142, -1.0010, 1.8594, 2.4331],
    'gigpo': [1.8014, 1.5128, -1.8014, -2.0901, -1.8014, -0.9354, 1.8014, 1.5128],
    'graphgpo': [1.4354, 1.5128, -0.4354, -2.0901, -2.4354, -0.9354, 1.4354, 1.5128],
    'grpo': [0.9354, 0.9354, -0.9354, -0.9354, -0.9354, -0.9354, 0.9354, 0.9354],
}


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_worked_example(name):
  options = {'omega': 0.1} if name == 'graphgpo' else {}
  adv = np.asarray(credit.estimate(name, **EXAMPLE, **options))
  np.testing.assert_allclose(adv.ravel(), EXPECTED[name], atol=1e-4)


def test_worked_example_intermediates():
  """Node values, distances and TD errors of the example, by hand."""
  from g2po_jax import graph as graph_lib
  g = graph_lib.build_graph(EXAMPLE['group'], EXAMPLE['state'], EXAMPLE['next_state'],
                            EXAMPLE['mask'], pad=False)
  values = np.asarray(credit.node_values(EXAMPLE['reward'], EXAMPLE['mask'], g, gamma=0.95))
  np.testing.assert_allclose(values[g.node[:, 0]], 4.5125, atol=1e-4)     # V(A)
  np.testing.assert_allclose(values[g.node[0, 1]], 6.3333, atol=1e-4)     # V(B)
  np.testing.assert_allclose(values[g.node[2, 1]], 0.0, atol=1e-6)        # V(D)
  d, _ = credit.success_distances(EXAMPLE['reward'], EXAMPLE['mask'], g, success_reward=10.0)
  d = np.asarray(d)
  assert d[g.node[0, 0]] == 2 and d[g.node[0, 1]] == 1                    # A, B
  assert d[g.next_node[1, 1]] == d[g.node[2, 1]] == d[g.next_node[2, 1]] == 3  # C, D, E


@pytest.mark.parametrize('name', sorted(credit.ESTIMATORS))
def test_all_fail_group_is_zero(name):
  batch = dict(EXAMPLE, reward=np.zeros((4, 2), np.float32))
  np.testing.assert_array_equal(np.asarray(credit.estimate(name, **batch)), 0.0)


def test_hgpo_early_steps_use_only_the_levels_that_fit():
  """HGPO at step t averages only levels k <= t+1 (spec 7), by hand.

  Trajectories A->A (returns 1, 1) and A->B (returns 0, 0), history 1,
  mean_norm, gamma 1. Level 1 groups A's three visits (mean 2/3): +1/3, +1/3,
  -2/3; B is alone. Level 2 exists only at t = 1, where (A, A) and (A, B) are
  singletons. A filler window before the start would instead group the two
  t = 0 steps at level 2 (+-0.5) and give 0.4333 and -0.5667 there.
  """
  batch = dict(group=np.zeros(2, np.int32), state=np.array([[A, A], [A, B]]),
               next_state=np.array([[A, END], [B, END]]),
               reward=np.array([[0, 1], [0, 0]], np.float32),
               valid=np.ones((2, 2), bool), mask=np.ones((2, 2), bool))
  adv = np.asarray(credit.estimate('hgpo', **batch, history=1, norm='mean_norm', gamma=1.0))
  np.testing.assert_allclose(adv, [[1 / 3, 1 / 3], [-2 / 3, 0]], atol=1e-6)
