"""The fused advantage + PPO step on a hand-built batch."""

from flax import nnx
import jax
import numpy as np
import pytest

from g2po_jax import credit
from g2po_jax import sampling
from g2po_jax.models import qwen2
from g2po_jax.train import batch as batch_lib
from g2po_jax.train import losses
from g2po_jax.train import rollout
from g2po_jax.train import step as step_lib

VOCAB = 40
PROMPT, RESPONSE = 12, 3


def _rollouts(rng: np.random.Generator) -> rollout.Rollouts:
  """One task group of 4 attempts (two succeed, one is short) + random tokens."""
  state = np.array([[1, 2, 3], [1, 2, 3], [1, 4, 5], [1, 4, 0]], np.uint64)
  next_state = np.array([[2, 3, 9], [2, 3, 9], [4, 5, 6], [4, 7, 0]], np.uint64)
  mask = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 0]], bool)
  reward = np.zeros((4, 3), np.float32)
  reward[0, 2] = reward[1, 2] = 10.0
  valid = mask & (rng.random((4, 3)) < 0.8)
  b, t = np.nonzero(mask)
  s = len(b)
  lengths = rng.integers(4, PROMPT + 1, s).astype(np.int32)
  return rollout.Rollouts(
      seeds=np.full(4, 7, np.int64), task_types=['pick_and_place'] * 4, reward=reward,
      env_reward=reward / 10.0,
      valid=valid, mask=mask, state_key=state, next_key=next_state,
      won=np.array([1, 1, 0, 0], bool),
      prompt_ids=rng.integers(3, VOCAB, (s, PROMPT)).astype(np.int32),
      prompt_lengths=lengths,
      response_ids=rng.integers(3, VOCAB, (s, RESPONSE)).astype(np.int32),
      response_mask=np.arange(RESPONSE)[None] < rng.integers(1, RESPONSE + 1, s)[:, None],
      response_logp=np.zeros((s, RESPONSE), np.float32),
      sample_index=(b * 3 + t).astype(np.int32),
      actions=[[''] * n for n in mask.sum(1)], state_texts=[[''] * n for n in mask.sum(1)])


def _setup(estimator: str, lr: float = 1e-2, temperature: float = 1.0):
  config = qwen2.make_config('micro', vocab_size=VOCAB, value_head=estimator == 'ppo')
  graphdef, params = nnx.split(qwen2.init_model(config, seed=0))
  r = _rollouts(np.random.default_rng(0))
  traj = batch_lib.trajectories(r, history=2 if estimator == 'hgpo' else None)
  (mb,) = batch_lib.minibatches(r, size=16, prompt_len=PROMPT,
                                padded_steps=traj.mask.shape[1],
                                rng=np.random.default_rng(1))
  # The sampler's log-probs are the current policy's: ratios start at 1.
  stats = sampling.token_logprobs(graphdef, params, mb.tokens, mb.token_mask, temperature)
  mb = mb._replace(old_logp=np.where(mb.score_mask, np.asarray(stats.logp), 0.0))
  tx = step_lib.make_optimizer(step_lib.make_schedule(lr, 0), 0.9, 0.999, 0.0, 1.0)
  state = step_lib.TrainState(params, tx.init(params), params, np.int32(0))
  options = {} if estimator == 'ppo' else credit.check_options(estimator, {})
  if estimator == 'hgpo':
    options['history'] = 2
  train_step = step_lib.make_train_step(
      graphdef, tx, estimator=estimator, estimator_options=options, clip=0.2,
      kl_coef=0.01, entropy_coef=0.001, value_coef=0.5, action_ratio=False,
      temperature=temperature)
  return r, traj, mb, state, train_step


@pytest.mark.parametrize('estimator', ['g2po', 'gigpo', 'grpo', 'hgpo'])
def test_advantages_reach_the_loss_unchanged(estimator, monkeypatch):
  r, traj, mb, state, train_step = _setup(estimator)
  seen = []
  original = losses.clipped_policy_loss

  def spy(logp, old_logp, adv, mask, **kwargs):
    seen.append(np.asarray(adv))
    return original(logp, old_logp, adv, mask, **kwargs)

  monkeypatch.setattr(losses, 'clipped_policy_loss', spy)
  train_step(state, traj, mb)     # not jitted, so the spy sees concrete values
  options = {'history': 2} if estimator == 'hgpo' else {}
  expected = np.asarray(credit.estimate(
      estimator, group=r.seeds, state=r.state_key, next_state=r.next_key, reward=r.reward,
      valid=r.valid, mask=r.mask, **options))
  tp = traj.mask.shape[1]
  index = np.asarray(mb.sample_index)[mb.sample_mask]
  np.testing.assert_allclose(seen[0][mb.sample_mask], expected[index // tp, index % tp],
                             rtol=1e-5, atol=1e-6)
  assert np.abs(expected).max() > 0.1           # the batch carries real credit
  np.testing.assert_array_equal(seen[0][~mb.sample_mask], 0.0)


@pytest.mark.parametrize('estimator, temperature', [('g2po', 1.0), ('ppo', 1.0), ('g2po', 0.7)])
def test_loss_decreases_on_a_fixed_batch(estimator, temperature):
  _, traj, mb, state, train_step = _setup(estimator, temperature=temperature)
  if estimator == 'ppo':
    # Fixed targets for the critic: zero values, so GAE is the discounted return.
    traj = traj._replace(values=np.zeros_like(traj.reward))
  step = jax.jit(train_step)
  first = None
  for _ in range(15):
    state, metrics = step(state, traj, mb)
    first = metrics if first is None else first
  assert bool(metrics['finite'])
  assert int(state.step) == 15
  assert metrics['loss'] < first['loss'] - 1e-3
  assert metrics['policy_loss'] < first['policy_loss']
  assert first['ratio'] == pytest.approx(1.0, abs=1e-5)


def test_nonfinite_update_is_skipped():
  _, traj, mb, state, train_step = _setup('g2po')
  bad = traj._replace(reward=np.where(traj.mask, np.nan, 0.0).astype(np.float32))
  new_state, metrics = jax.jit(train_step)(state, bad, mb)
  assert not bool(metrics['finite'])
  assert int(new_state.step) == 0
  for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)
