"""Invariances, degenerate groups and input validation of `credit.estimate`."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from g2po_jax import credit
from tests.credit.strategies import batches

NAMES = sorted(credit.ESTIMATORS)


def _estimate(name, batch):
  return np.asarray(credit.estimate(name, **batch))


@settings(max_examples=25, deadline=None)
@given(batch=batches(), name=st.sampled_from(NAMES), seed=st.integers(0, 2**31))
def test_permuting_trajectories_permutes_output(batch, name, seed):
  perm = np.random.default_rng(seed).permutation(len(batch['group']))
  permuted = {k: v[perm] for k, v in batch.items()}
  np.testing.assert_allclose(_estimate(name, permuted), _estimate(name, batch)[perm],
                             atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(batch=batches(), name=st.sampled_from(NAMES), rows=st.integers(0, 5),
       steps=st.integers(0, 9))
def test_extra_padding_changes_nothing(batch, name, rows, steps):
  b, t = batch['mask'].shape
  garbage = lambda x, fill: np.pad(x, [(0, rows), (0, steps)][:x.ndim], constant_values=fill)
  padded = dict(group=garbage(batch['group'], 12345), state=garbage(batch['state'], 7),
                next_state=garbage(batch['next_state'], 7),
                reward=garbage(batch['reward'], np.nan), valid=garbage(batch['valid'], False),
                mask=garbage(batch['mask'], False))
  out = _estimate(name, padded)
  np.testing.assert_allclose(out[:b, :t], _estimate(name, batch), atol=1e-5)
  assert (out[b:] == 0).all() and (out[:, t:] == 0).all()


@settings(max_examples=25, deadline=None)
@given(batch=batches(), name=st.sampled_from(NAMES), seed=st.integers(0, 2**31))
def test_relabelling_state_keys_changes_nothing(batch, name, seed):
  keys = np.unique(np.concatenate([batch['state'].ravel(), batch['next_state'].ravel()]))
  new = np.random.default_rng(seed).choice(2**40, keys.size, replace=False) + 17
  relabel = lambda x: new[np.searchsorted(keys, x)]
  relabelled = dict(batch, state=relabel(batch['state']), next_state=relabel(batch['next_state']),
                    group=batch['group'] * 31 + 5)
  np.testing.assert_allclose(_estimate(name, relabelled), _estimate(name, batch), atol=1e-5)


DEGENERATE = {
    'one step': dict(group=[0], state=[[1]], next_state=[[2]], reward=[[10.0]],
                     valid=[[True]], mask=[[True]]),
    'one trajectory, invalid': dict(group=[0], state=[[1, 1, 1]], next_state=[[1, 1, 2]],
                                    reward=[[0.0, 0.0, 0.0]], valid=[[False, True, False]],
                                    mask=[[True, True, True]]),
    'zero-length rows': dict(group=[0, 0, 1], state=[[1, 2], [1, 2], [3, 3]],
                             next_state=[[2, 3], [2, 3], [3, 3]],
                             reward=[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
                             valid=[[True, True]] * 3, mask=[[False, False]] * 3),
    'all succeed': dict(group=[4, 4], state=[[1, 2], [1, 2]], next_state=[[2, 9], [2, 9]],
                        reward=[[0.0, 10.0], [0.0, 10.0]], valid=[[True, True]] * 2,
                        mask=[[True, True]] * 2),
    'self-loops': dict(group=[0, 0], state=[[1, 1, 1], [1, 1, 2]],
                       next_state=[[1, 1, 1], [1, 2, 5]], reward=[[0.0, 0.0, 0.0],
                                                                  [0.0, 0.0, 10.0]],
                       valid=[[True, False, True], [True, True, True]],
                       mask=[[True, True, True], [True, True, True]]),
}


@pytest.mark.parametrize('case', sorted(DEGENERATE))
@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('norm', ['mean_std_norm', 'mean_norm'])
def test_degenerate_batches_are_finite(case, name, norm):
  batch = {k: np.asarray(v) for k, v in DEGENERATE[case].items()}
  options = {} if name == 'rloo' else {'norm': norm}
  out = np.asarray(credit.estimate(name, **batch, **options))
  assert out.shape == batch['mask'].shape and out.dtype == np.float32
  assert np.isfinite(out).all()
  assert (out[~batch['mask']] == 0).all()


def test_all_succeed_gives_zero_except_g2po_edge_term():
  batch = {k: np.asarray(v) for k, v in DEGENERATE['all succeed'].items()}
  for name in ('grpo', 'gigpo', 'graphgpo', 'rloo'):
    np.testing.assert_array_equal(_estimate(name, batch), 0.0)
  # G2PO's edge term still ranks the moves by value gain: 9.025 -> 9.5 -> 10.
  no_edge = credit.estimate('g2po', **batch, edge_weight=0.0)
  np.testing.assert_array_equal(np.asarray(no_edge), 0.0)
  edge = np.asarray(credit.estimate('g2po', **batch, episode_weight=0.0, node_weight=0.0))
  assert (edge[:, 1] > edge[:, 0]).all()


def test_single_step_group_keeps_its_episode_value():
  batch = {k: np.asarray(v) for k, v in DEGENERATE['one step'].items()}
  assert _estimate('grpo', batch)[0, 0] == pytest.approx(10.0)
  assert _estimate('g2po', batch)[0, 0] == pytest.approx(10.0)   # A_NC = A_EC = 0


def test_accepts_jax_arrays():
  batch = {k: np.asarray(v) for k, v in DEGENERATE['self-loops'].items()}
  as_jax = {k: jax.numpy.asarray(v) for k, v in batch.items()}
  np.testing.assert_allclose(_estimate('g2po', as_jax), _estimate('g2po', batch))


GOOD = {k: np.asarray(v) for k, v in DEGENERATE['self-loops'].items()}


@pytest.mark.parametrize('change, match', [
    (dict(name='ppo'), "unknown estimator 'ppo'"),
    (dict(gamma=0.9, name='grpo'), "estimator 'grpo' has no option 'gamma'"),
    (dict(omega=0.1), "estimator 'g2po' has no option 'omega'"),
    (dict(norm='zscore'), "option 'norm' of 'g2po' must be one of"),
    (dict(gamma=0.0), "option 'gamma' of 'g2po' must be a number in"),
    (dict(gamma=float('nan')), "option 'gamma'"),
    (dict(td_form='both'), "option 'td_form'"),
    (dict(episode_weight='1'), "option 'episode_weight' of 'g2po' must be a finite number"),
    (dict(mask=np.array([[True, False, True], [True, True, True]])), 'mask must be a prefix'),
    (dict(mask=GOOD['mask'].astype(int)), 'mask must be a .B, T. bool array'),
    (dict(valid=GOOD['valid'][:, :2]), r'valid must have shape \[2, 3\]'),
    (dict(state=GOOD['state'].astype(float)), 'state must be a .* integer array'),
    (dict(next_state=GOOD['next_state'][:1]), 'next_state must have shape'),
    (dict(group=np.zeros((2, 1), int)), 'group must be a .B. integer array'),
    (dict(reward=GOOD['reward'].astype(str)), 'reward must be a .* float array'),
    (dict(reward=np.full((2, 3), np.inf)), 'reward must be finite on real steps'),
    (dict(group=[[0], [0, 1]]), 'group must be'),
])
def test_bad_input_raises_value_error(change, match):
  kwargs = {'name': 'g2po', **GOOD, **change}
  name = kwargs.pop('name')
  with pytest.raises(ValueError, match=match):
    credit.estimate(name, **kwargs)


def test_hgpo_history_option_validated():
  with pytest.raises(ValueError, match="option 'history' of 'hgpo'"):
    credit.estimate('hgpo', **GOOD, history=-1)


@pytest.mark.parametrize('scale', [1e20, 1e38, 1e39])
def test_huge_rewards_are_rejected(scale):
  with pytest.raises(ValueError, match=r'reward must lie in \[-1e\+09, 1e\+09\]'):
    credit.estimate('g2po', **dict(GOOD, reward=GOOD['reward'] * scale))


@pytest.mark.parametrize('option', ['success_reward', 'penalty'])
def test_huge_reward_options_are_rejected(option):
  with pytest.raises(ValueError, match=f"option '{option}' of 'g2po' must be a number in"):
    credit.estimate('g2po', **GOOD, **{option: 1e30})


@pytest.mark.parametrize('name', NAMES)
def test_rewards_at_the_bound_keep_their_advantages(name):
  """Scaling rewards, success_reward and penalty to the bound keeps every
  advantage (mean_std_norm is scale-free; RLOO scales with the rewards)."""
  rng = np.random.default_rng(0)
  b, t = 256, 48
  lengths = rng.integers(1, t + 1, b)
  mask = np.arange(t) < lengths[:, None]
  state = rng.integers(0, 6, (b, t))
  reward = rng.choice([0.0, 0.0, 0.5, 1.0], (b, t)) / 20
  reward[np.arange(b), lengths - 1] += np.where(rng.random(b) < 0.5, 1.0, 0.0)
  reward /= reward.max()                                   # the largest reward is 1
  batch = dict(group=np.repeat(np.arange(32), 8), state=state, mask=mask,
               next_state=np.concatenate([state[:, 1:], rng.integers(0, 8, (b, 1))], 1),
               valid=rng.random((b, t)) < 0.8)
  options = credit.estimator_options(name)
  scaled = {k: v for k, v in dict(success_reward=1.0, penalty=0.01).items() if k in options}
  small = _estimate_with(name, dict(batch, reward=reward), scaled)
  top = credit.MAX_ABS_REWARD
  big = _estimate_with(name, dict(batch, reward=reward * top),
                       {k: v * top for k, v in scaled.items()})
  np.testing.assert_allclose(big / (top if name == 'rloo' else 1.0), small, atol=5e-3)


def _estimate_with(name, batch, options):
  return np.asarray(credit.estimate(name, **batch, **options))
