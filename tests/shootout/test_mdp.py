"""The procedural MDP family: structure, exact success, sampling."""

import collections

import jax
import numpy as np
import pytest

from g2po_jax.shootout import learner
from g2po_jax.shootout import mdp as mdp_lib

FAMILIES = {name: learner.PRESETS[name] for name in ('tiny', 'easy', 'hard', 'wide')}


def _tasks(config, num=20, seed=0):
  generate = jax.jit(jax.vmap(lambda key: mdp_lib.generate(key, config)))
  return jax.device_get(generate(jax.random.split(jax.random.key(seed), num)))


def _distances(next_state: np.ndarray, source: int) -> dict[int, int]:
  """BFS hops from `source` over next_state [S, A]."""
  dist, queue = {source: 0}, collections.deque([source])
  while queue:
    s = queue.popleft()
    for t in next_state[s].tolist():
      if t not in dist:
        dist[t] = dist[s] + 1
        queue.append(t)
  return dist


def _can_reach(next_state: np.ndarray, target: int) -> set[int]:
  """States with a path to `target` (BFS on the reversed graph)."""
  parents = collections.defaultdict(set)
  for s, row in enumerate(next_state.tolist()):
    for t in row:
      parents[t].add(s)
  seen, queue = {target}, collections.deque([target])
  while queue:
    for p in parents[queue.popleft()]:
      if p not in seen:
        seen.add(p)
        queue.append(p)
  return seen


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_goal_is_exactly_depth_correct_steps_away(name):
  config = FAMILIES[name]
  tasks = _tasks(config)
  for i in range(len(tasks.correct)):
    nxt, correct = tasks.next_state[i], tasks.correct[i]
    # No shortcut: the shortest route from the start is D steps long.
    assert _distances(nxt, mdp_lib.START)[config.goal] == config.depth
    s = mdp_lib.START
    for _ in range(config.depth):        # and the correct actions walk it
      s = nxt[s, correct[s]]
    assert s == config.goal


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_traps_cannot_reach_the_goal_and_wander_states_can(name):
  config = FAMILIES[name]
  tasks = _tasks(config)
  first_trap, first_wander = config.depth + 1, config.depth + 1 + config.num_traps
  for i in range(len(tasks.correct)):
    reach = _can_reach(tasks.next_state[i], config.goal)
    assert not reach & set(range(first_trap, first_wander))
    # Path and wander states all keep a way back (through the start).
    assert set(range(config.depth)) | set(range(first_wander, config.num_states)) <= reach
    wander = np.arange(first_wander, config.num_states)
    np.testing.assert_array_equal(
        tasks.next_state[i][wander, tasks.correct[i][wander]], mdp_lib.START)


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_invalid_actions_are_flagged_self_loops(name):
  config = FAMILIES[name]
  tasks = _tasks(config)
  states = np.arange(config.num_states)[None, :, None]
  invalid = ~tasks.valid
  assert (tasks.next_state[invalid] == np.broadcast_to(states, invalid.shape)[invalid]).all()
  assert 0 < invalid.mean() < 1 if config.invalid_fraction else not invalid.any()
  rows = np.arange(config.num_states)
  for i in range(len(tasks.correct)):
    has = tasks.correct[i] >= 0
    assert tasks.valid[i][rows[has], tasks.correct[i][has]].all()   # correct moves are valid
    assert (tasks.next_state[i][config.goal] == config.goal).all()   # the goal absorbs


def test_trap_fraction_sets_the_trap_region():
  config = mdp_lib.MDPConfig(num_states=30, num_actions=3, depth=4, horizon=10,
                             trap_fraction=0.6, invalid_fraction=0.0)
  assert config.num_traps == round(0.6 * 25)
  tasks = _tasks(config, num=5)
  traps = np.arange(5, 5 + config.num_traps)
  assert (tasks.correct[:, traps] == -1).all()
  in_traps = tasks.next_state[:, traps]
  assert ((in_traps >= 5) & (in_traps < 5 + config.num_traps)).all()


def test_initial_logits_put_the_bias_on_correct_actions():
  config = FAMILIES['easy']
  task = jax.tree.map(lambda x: x[0], _tasks(config, num=1))
  logits = np.asarray(mdp_lib.initial_logits(task, 1.5))
  for s, c in enumerate(task.correct):
    expected = np.zeros(config.num_actions)
    if c >= 0:
      expected[c] = 1.5
    np.testing.assert_array_equal(logits[s], expected)


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_family_evaluation_equals_the_general_one(name):
  config = FAMILIES[name]
  tasks = _tasks(config, num=16)
  logits = jax.random.normal(jax.random.key(1), tasks.next_state.shape)
  logits = logits + jax.vmap(mdp_lib.initial_logits, in_axes=(0, None))(tasks, 5.0)
  general = jax.jit(jax.vmap(lambda t, l: mdp_lib.success_probability(
      t, l, goal=config.goal, horizon=config.horizon)))(tasks, logits)
  family = jax.jit(jax.vmap(lambda t, l: mdp_lib.family_success_probability(t, l, config)))(
      tasks, logits)
  np.testing.assert_allclose(family, general, rtol=1e-5, atol=1e-7)
  assert 0.01 < float(general.mean()) < 0.99            # a non-trivial check


def test_exact_success_matches_monte_carlo():
  config = mdp_lib.MDPConfig(num_states=10, num_actions=3, depth=4, horizon=9,
                             trap_fraction=0.4, invalid_fraction=0.3, start_bias=1.0)
  task = jax.tree.map(lambda x: x[0], _tasks(config, num=1, seed=3))
  logits = mdp_lib.initial_logits(task, 1.0) + 0.5 * jax.random.normal(
      jax.random.key(4), task.next_state.shape)
  exact = float(mdp_lib.success_probability(task, logits, goal=config.goal,
                                            horizon=config.horizon))
  n = 40_000
  episodes = mdp_lib.sample_episodes(jax.random.key(5), task, logits, num_episodes=n,
                                     goal=config.goal, horizon=config.horizon)
  rate = float((np.asarray(episodes.reward).sum(1) == mdp_lib.SUCCESS_REWARD).mean())
  sigma = np.sqrt(exact * (1 - exact) / n)
  assert 0.05 < exact < 0.95
  assert abs(rate - exact) < 4 * sigma, (rate, exact, sigma)


def test_sampled_episodes_are_consistent():
  config = FAMILIES['easy']
  task = jax.tree.map(lambda x: x[0], _tasks(config, num=1))
  logits = mdp_lib.initial_logits(task, config.start_bias)
  ep = jax.device_get(mdp_lib.sample_episodes(jax.random.key(0), task, logits,
                                              num_episodes=256, goal=config.goal,
                                              horizon=config.horizon))
  mask = ep.mask
  assert (mask[:, 0]).all() and not (mask[:, 1:] & ~mask[:, :-1]).any()      # prefixes
  np.testing.assert_array_equal(ep.next_state, task.next_state[ep.state, ep.action])
  np.testing.assert_array_equal(ep.valid, task.valid[ep.state, ep.action])
  np.testing.assert_array_equal(ep.state[:, 1:][mask[:, 1:]], ep.next_state[:, :-1][mask[:, 1:]])
  success = ep.reward.sum(1) == mdp_lib.SUCCESS_REWARD
  # A success ends at the goal on its last real step; a failure uses the horizon.
  last = mask.sum(1) - 1
  assert (ep.next_state[np.arange(256), last][success] == config.goal).all()
  assert (mask[~success].all(1)).all()
  assert 0 < success.mean() < 1


def test_inverse_cdf_sampling_follows_the_policy():
  probs = np.array([0.1, 0.6, 0.3])
  task = mdp_lib.MDP(next_state=np.zeros((1, 3), np.int32), valid=np.ones((1, 3), bool),
                     correct=np.zeros(1, np.int32))
  u = jax.random.uniform(jax.random.key(0), (1, 50_000))
  ep = mdp_lib.rollout(u, task, np.log(probs)[None].astype(np.float32), goal=5)
  freq = np.bincount(np.asarray(ep.action).ravel(), minlength=3) / 50_000
  np.testing.assert_allclose(freq, probs, atol=0.01)


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_states=5, depth=4), 'num_states'),
    (dict(num_actions=1), 'num_actions'),
    (dict(horizon=3, depth=4), 'horizon'),
    (dict(depth=0), 'depth'),
    (dict(num_states=12.0), 'num_states'),
    (dict(trap_fraction=1.5), 'trap_fraction'),
    (dict(invalid_fraction=-0.1), 'invalid_fraction'),
    (dict(invalid_fraction=True), 'invalid_fraction'),
    (dict(start_bias=float('nan')), 'start_bias'),
])
def test_bad_family_configs_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    mdp_lib.MDPConfig(**kwargs)
