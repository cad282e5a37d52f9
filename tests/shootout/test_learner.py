"""The jitted tabular learner: device graph = host graph, configs, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from g2po_jax import credit
from g2po_jax import graph as graph_lib
from g2po_jax.shootout import learner
from g2po_jax.shootout import mdp as mdp_lib

NUM_TASKS, GROUP = 3, 8


def _batch(name='easy', seed=0, bias=None):
  """Episodes of NUM_TASKS tasks x GROUP attempts, task-major rows [B, H]."""
  config = learner.PRESETS[name]
  bias = config.start_bias if bias is None else bias

  @jax.jit
  def sample(key):
    k_task, k_run = jax.random.split(key)
    tasks = jax.vmap(lambda k: mdp_lib.generate(k, config))(jax.random.split(k_task, NUM_TASKS))
    logits = jax.vmap(mdp_lib.initial_logits, in_axes=(0, None))(tasks, bias)
    ep = jax.vmap(lambda k, t, l: mdp_lib.sample_episodes(
        k, t, l, num_episodes=GROUP, goal=config.goal, horizon=config.horizon))(
            jax.random.split(k_run, NUM_TASKS), tasks, logits)
    return jax.tree.map(lambda x: x.reshape(NUM_TASKS * GROUP, -1), ep)

  task = np.repeat(np.arange(NUM_TASKS, dtype=np.int32), GROUP)
  return config, task, jax.device_get(sample(jax.random.key(seed)))


@pytest.mark.parametrize('name', sorted(credit.ESTIMATORS))
@pytest.mark.parametrize('preset', ['easy', 'wide'])
def test_device_graph_gives_the_host_graphs_advantages(name, preset):
  config, task, ep = _batch(preset, seed=1, bias=3.0)
  assert 0 < (ep.reward.sum(1) > 0).mean() < 1          # mixed groups: a real check
  options = credit.check_options(name, {})
  host = credit.estimate(name, group=task, state=ep.state, next_state=ep.next_state,
                         reward=ep.reward, valid=ep.valid, mask=ep.mask)

  @jax.jit
  def device(ep):
    graph = learner.episode_graph(jnp.asarray(task), ep.state, ep.next_state,
                                  num_tasks=NUM_TASKS, num_states=config.num_states,
                                  history=options.get('history'))
    return credit.ESTIMATORS[name](ep.reward, ep.valid, ep.mask, graph, **options)

  np.testing.assert_allclose(device(ep), host, atol=2e-4, rtol=1e-4)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
  pairs = set(zip(a.ravel().tolist(), b.ravel().tolist()))
  return len(pairs) == len(set(a.ravel().tolist())) == len(set(b.ravel().tolist()))


@pytest.mark.parametrize('history', [0, 2, 3])
def test_window_ids_match_the_host_windows_in_both_sort_modes(history):
  config, task, ep = _batch('easy', seed=2)
  host = graph_lib.build_graph(task, ep.state, ep.next_state, ep.mask, history=history,
                               pad=False).context
  ids = {}
  for packed in (True, False):
    fn = jax.jit(lambda s, p=packed: learner.window_ids(
        s, num_tasks=NUM_TASKS, num_states=config.num_states, history=history, packed=p))
    ids[packed] = np.asarray(fn(ep.state))
    assert ids[packed].shape == (history + 1,) + ep.state.shape
    assert ids[packed].min() >= 0 and ids[packed].max() < ep.state.size
  for level in range(history + 1):
    real = ep.mask & (np.arange(ep.mask.shape[1]) >= level)   # windows in the episode
    assert _same_partition(ids[True][level][real], host[level][real])
    assert _same_partition(ids[False][level][real], host[level][real])


def test_graph_statistics_match_the_host_statistics():
  config, task, ep = _batch('wide', seed=3)
  graph = graph_lib.build_graph(task, ep.state, ep.next_state, ep.mask, pad=False)
  host = graph_lib.graph_stats(graph, ep.mask)
  device = jax.jit(lambda s, m: learner.graph_statistics(
      s, m, num_tasks=NUM_TASKS, num_states=config.num_states))(ep.state, ep.mask)
  np.testing.assert_allclose(device['shared_fraction'], host['shared_fraction'], rtol=1e-6)
  np.testing.assert_allclose(device['visits_per_node'], host['visits_per_node'], rtol=1e-6)
  assert 0 < host['shared_fraction'] < 1


def test_pg_loss_gradient_is_the_score_function():
  """d/dlogits of -mean A log pi(a|s) = -(onehot(a) - pi(s)) * A / steps, summed."""
  config, task, ep = _batch('tiny', seed=4)
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(NUM_TASKS, config.num_states, config.num_actions)).astype(np.float32)
  adv = rng.normal(size=ep.reward.shape).astype(np.float32)
  grad = np.asarray(jax.jit(jax.grad(learner.pg_loss))(logits, jnp.asarray(task), ep, adv))
  pi = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  expected = np.zeros_like(logits)
  for b, t in zip(*np.nonzero(ep.mask)):
    n, s, a = task[b], ep.state[b, t], ep.action[b, t]
    expected[n, s] -= adv[b, t] * (np.eye(config.num_actions)[a] - pi[n, s])
  np.testing.assert_allclose(grad, expected / ep.mask.sum(), atol=1e-6)


def _sweep_tiny(estimators, num_iters):
  config = learner.TrainConfig(mdp=learner.PRESETS['tiny'], estimators=tuple(estimators),
                               num_tasks=4, group_size=8, num_iters=num_iters, optimizer='sgd')
  sweep = learner.make_sweep(config)
  return lambda which, seeds, lrs: jax.device_get(
      sweep(jnp.int32(which), np.asarray(seeds, np.int32), np.asarray(lrs, np.float32)))


@pytest.mark.slow
def test_tiny_preset_learns_with_every_estimator():
  names = list(credit.ESTIMATORS)
  seeds = np.arange(4)
  sweep = _sweep_tiny(names, 60)
  outs = [sweep(i, seeds, np.full(4, 50.0)) for i in range(len(names))]
  for name, out in zip(names, outs):
    success = out['success']                                     # [4, 61]
    assert success.shape == (4, 61) and np.isfinite(success).all()
    start, end = success[:, 0].mean(), success[:, -5:].mean()
    assert end > start + 0.3 and end > 0.75, (name, start, end)
    assert np.isfinite(out['max_abs_advantage']).all()
    assert (out['max_abs_advantage'] > 0).any()
  # Common random numbers: every estimator starts from the same tasks.
  for out in outs[1:]:
    np.testing.assert_array_equal(out['success'][:, 0], outs[0]['success'][:, 0])


def test_runs_are_reproducible_and_rates_share_tasks():
  sweep = _sweep_tiny(['grpo'], 3)
  a = sweep(0, [0, 0, 1], [1.0, 30.0, 1.0])
  b = sweep(0, [0, 0, 1], [1.0, 30.0, 1.0])
  np.testing.assert_array_equal(a['success'], b['success'])
  assert a['success'][0, 0] == a['success'][1, 0]                # same seed, same tasks
  assert not np.array_equal(a['success'][0], a['success'][1])    # different rates learn apart
  assert a['success'][0, 0] != a['success'][2, 0]                # another seed, other tasks


@pytest.mark.parametrize('kwargs, match', [
    (dict(estimators=('nope',)), 'unknown estimator'),
    (dict(estimators='g2po'), 'estimators'),
    (dict(estimators=()), 'estimators'),
    (dict(estimators=('g2po', 'g2po')), 'repeat'),
    (dict(options={'grpo': {'gamma': 0.9}}), 'not among'),
    (dict(estimators=('g2po',), options={'g2po': {'gamma': 2.0}}), 'gamma'),
    (dict(estimators=('g2po',), options={'g2po': {'history': 2}}), 'no option'),
    (dict(options=[('g2po', {})]), 'mapping'),
    (dict(group_size=1), 'group_size'),
    (dict(num_tasks=0), 'num_tasks'),
    (dict(num_iters=2.5), 'num_iters'),
    (dict(optimizer='lion'), 'optimizer'),
    (dict(mdp={'num_states': 8}), 'MDPConfig'),
])
def test_bad_train_configs_raise(kwargs, match):
  kwargs = {'mdp': learner.PRESETS['tiny'], **kwargs}
  with pytest.raises(ValueError, match=match):
    learner.TrainConfig(**kwargs)


def test_estimator_options_are_filled_in():
  config = learner.TrainConfig(mdp=learner.PRESETS['tiny'], estimators=('g2po', 'hgpo'),
                               options={'hgpo': {'history': 1}})
  assert config.estimator_options('hgpo')['history'] == 1
  assert config.estimator_options('g2po')['gamma'] == 0.95


def test_window_ids_refuse_a_packed_sort_that_would_overflow():
  state = jnp.zeros((4, 64), jnp.int32)
  with pytest.raises(ValueError, match='packed=False'):
    learner.window_ids(state, num_tasks=1, num_states=1000, history=3, packed=True)
  ids = learner.window_ids(state, num_tasks=1, num_states=1000, history=3)   # falls back
  assert ids.shape == (4, 4, 64)


def test_episode_graph_rejects_uneven_groups():
  state = jnp.zeros((6, 4), jnp.int32)
  with pytest.raises(ValueError, match='split evenly'):
    learner.episode_graph(jnp.zeros(6, jnp.int32), state, state, num_tasks=4, num_states=5)
