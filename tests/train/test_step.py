"""The fused advantage + PPO step on a hand-built batch."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from g2po_jax import credit
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
      valid=valid, format_error=np.zeros_like(mask), mask=mask, state_key=state,
      next_key=next_state, true_key=state,
      won=np.array([1, 1, 0, 0], bool),
      prompt_ids=rng.integers(3, VOCAB, (s, PROMPT)).astype(np.int32),
      prompt_lengths=lengths,
      response_ids=rng.integers(3, VOCAB, (s, RESPONSE)).astype(np.int32),
      response_mask=np.arange(RESPONSE)[None] < rng.integers(1, RESPONSE + 1, s)[:, None],
      response_logp=np.zeros((s, RESPONSE), np.float32),
      response_stopped=np.ones(s, bool), sample_index=(b * 3 + t).astype(np.int32))


def _setup(estimator: str, lr: float = 1e-2, temperature: float = 1.0):
  config = qwen2.make_config('micro', vocab_size=VOCAB, value_head=estimator == 'ppo')
  graphdef, params = nnx.split(qwen2.init_model(config, seed=0))
  r = _rollouts(np.random.default_rng(0))
  traj = batch_lib.trajectories(r, history=2 if estimator == 'hgpo' else None)
  (mb,), (where,), _ = batch_lib.minibatches(
      r, minibatch_size=16, prompt_cap=PROMPT, shards=1, padded_steps=traj.mask.shape[1],
      rng=np.random.default_rng(1))
  options = {} if estimator == 'ppo' else credit.check_options(estimator, {})
  if estimator == 'hgpo':
    options['history'] = 2
  # Fixed critic values for PPO: zeros, so GAE is the discounted return.
  adv, targets, _ = step_lib.make_advantage_fn(estimator, options)(
      traj, np.zeros(traj.mask.shape, np.float32))
  mb = batch_lib.with_advantages(mb, where, np.asarray(adv),
                                 None if targets is None else np.asarray(targets))
  # The sampler's log-probs are the current policy's: ratios start at 1.
  stats = step_lib.scored(graphdef, params, mb, temperature, 1024)
  mb = mb._replace(old_logp=np.where(mb.score_mask, np.asarray(stats.logp), 0.0))
  tx = step_lib.make_optimizer(step_lib.make_schedule(lr, 0), 0.9, 0.999, 0.0, 1.0)
  state = step_lib.TrainState(params, tx.init(params), params, np.int32(0))
  train_step = step_lib.make_train_step(
      graphdef, tx, clip=0.2, kl_coef=0.01, entropy_coef=0.001, value_coef=0.5,
      action_ratio=False, temperature=temperature)
  return r, traj, mb, where, state, train_step


@pytest.mark.parametrize('estimator', ['g2po', 'gigpo', 'grpo', 'hgpo'])
def test_advantages_reach_the_loss_unchanged(estimator, monkeypatch):
  r, traj, mb, where, state, train_step = _setup(estimator)
  seen = []
  original = losses.clipped_policy_loss

  def spy(logp, old_logp, adv, mask, **kwargs):
    seen.append((np.asarray(adv), np.asarray(mask)))
    return original(logp, old_logp, adv, mask, **kwargs)

  monkeypatch.setattr(losses, 'clipped_policy_loss', spy)
  train_step(state, mb)     # not jitted, so the spy sees concrete values
  options = {'history': 2} if estimator == 'hgpo' else {}
  expected = np.asarray(credit.estimate(
      estimator, group=r.seeds, state=r.state_key, next_state=r.next_key, reward=r.reward,
      valid=r.valid, mask=r.mask, **options))
  tp = traj.mask.shape[1]
  adv, scored = seen[0]
  for row, index in enumerate(where[:, 0]):
    if index < 0:
      assert not scored[row].any()
      continue
    np.testing.assert_allclose(adv[row][scored[row]], expected[index // tp, index % tp],
                               rtol=1e-5, atol=1e-6)
  assert scored.any(axis=1).sum() == len(r.sample_index)   # every sample is scored
  assert np.abs(expected).max() > 0.1           # the batch carries real credit


@pytest.mark.parametrize('estimator, temperature', [('g2po', 1.0), ('ppo', 1.0), ('g2po', 0.7)])
def test_loss_decreases_on_a_fixed_batch(estimator, temperature):
  _, _, mb, _, state, train_step = _setup(estimator, temperature=temperature)
  step = jax.jit(train_step)
  first = None
  for _ in range(15):
    state, metrics = step(state, mb)
    first = metrics if first is None else first
  assert bool(metrics['finite'])
  assert int(state.step) == 15
  assert metrics['loss'] < first['loss'] - 1e-3
  assert metrics['policy_loss'] < first['policy_loss']
  assert first['ratio'] == pytest.approx(1.0, abs=1e-5)
  if estimator == 'ppo':
    assert metrics['value_loss'] < first['value_loss']


def test_nonfinite_update_is_skipped():
  _, _, mb, _, state, train_step = _setup('g2po')
  bad = mb._replace(advantage=np.full_like(mb.advantage, np.nan))
  new_state, metrics = jax.jit(train_step)(state, bad)
  assert not bool(metrics['finite'])
  assert int(new_state.step) == 0
  for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)


def _temp_bytes(vocab: int, prompt: int, response: int, rows: int = 4, remat=False) -> int:
  """Temporary memory of the compiled train step (XLA's memory analysis)."""
  config = qwen2.make_config('micro', vocab_size=vocab, remat=remat)
  graphdef, params = nnx.split(qwen2.init_model(config, seed=0))
  from experiments import perf   # the synthetic mini-batch of the benchmarks
  mb = perf.synthetic_minibatch(np.random.default_rng(0), vocab, np.full(rows, prompt),
                                       np.full(rows, response), prompt, response)
  step, state = perf.trainer_step(graphdef, params)
  compiled = step.lower(state, mb).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_train_step_memory_follows_the_responses_not_prompt_times_vocabulary():
  rows, small, big = 4, 512, 8192
  growth = {v: _temp_bytes(v, 512, 8, rows) - _temp_bytes(v, 32, 8, rows) for v in (small, big)}
  # Full-vocabulary logits at every prompt position would make the longer
  # prompts cost this much more with the bigger vocabulary, per copy.
  per_copy = rows * (512 - 32) * (big - small) * 4
  assert abs(growth[big] - growth[small]) < 0.1 * per_copy, growth
  assert _temp_bytes(big, 32, 64, rows) > _temp_bytes(big, 32, 8, rows)   # responses do count


def test_remat_gives_the_same_step():
  _, _, mb, _, state, train_step = _setup('g2po')
  config = qwen2.make_config('micro', vocab_size=VOCAB, remat=True)
  graphdef = nnx.split(qwen2.init_model(config, seed=0))[0]
  tx = step_lib.make_optimizer(step_lib.make_schedule(1e-2, 0), 0.9, 0.999, 0.0, 1.0)
  remat_step = step_lib.make_train_step(
      graphdef, tx, clip=0.2, kl_coef=0.01, entropy_coef=0.001, value_coef=0.5,
      action_ratio=False)
  a_state, a = jax.jit(train_step)(state, mb)
  b_state, b = jax.jit(remat_step)(state, mb)
  np.testing.assert_allclose(a['loss'], b['loss'], rtol=1e-6)
  np.testing.assert_allclose(a['grad_norm'], b['grad_norm'], rtol=1e-5)
  for x, y in zip(jax.tree.leaves(a_state.params), jax.tree.leaves(b_state.params)):
    np.testing.assert_allclose(x, y, atol=1e-6)


def test_action_ratio_is_one_per_action():
  logp = np.log(np.array([[0.5, 0.2, 0.4, 0.9], [0.3, 0.3, 0.6, 0.1]], np.float32))
  old = np.log(np.array([[0.25, 0.4, 0.2, 0.9], [0.3, 0.6, 0.3, 0.2]], np.float32))
  mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
  action_of = np.array([[0, 0, 1, 1], [0, 1, 1, 2]], np.int32)   # packed rows
  out = np.asarray(losses.action_log_ratio(logp, old, mask, action_of))
  d = logp - old
  np.testing.assert_allclose(out[0, :2], d[0, :2].mean(), rtol=1e-6)
  np.testing.assert_allclose(out[0, 2:], d[0, 2], rtol=1e-6)     # the padded token is ignored
  np.testing.assert_allclose(out[1, 1:3], d[1, 1:3].mean(), rtol=1e-6)
  np.testing.assert_allclose(out[1, [0, 3]], d[1, [0, 3]], rtol=1e-6)


def _shared_rollouts() -> rollout.Rollouts:
  """The hand-built batch with prompts repeated: steps 0 of rows 0-3 and
  steps 1 of rows 0-1 share prompts, ragged responses."""
  r = _rollouts(np.random.default_rng(2))
  ids, lengths = r.prompt_ids.copy(), r.prompt_lengths.copy()
  step0, step1 = r.sample_index % 3 == 0, np.isin(r.sample_index, [1, 4])
  for same in (step0, step1):
    ids[same], lengths[same] = ids[same][0], lengths[same][0]
  r.prompt_ids, r.prompt_lengths = ids, lengths
  return r


def _one_minibatch(r, pack):
  traj = batch_lib.trajectories(r, history=None)
  (mb,), (where,), packing = batch_lib.minibatches(
      r, minibatch_size=64, prompt_cap=PROMPT, shards=1, padded_steps=traj.mask.shape[1],
      rng=np.random.default_rng(1), pack=pack)
  adv = np.random.default_rng(3).standard_normal(traj.mask.shape).astype(np.float32)
  return batch_lib.with_advantages(mb, where, adv), where, packing


@pytest.mark.parametrize('action_ratio', [False, True])
def test_packed_rows_give_the_unpacked_loss_and_gradients(action_ratio):
  config = qwen2.make_config('micro', vocab_size=VOCAB)
  graphdef, params = nnx.split(qwen2.init_model(config, seed=0))
  r = _shared_rollouts()
  r.response_logp = np.where(r.response_mask, -np.log(VOCAB) + 0.1, 0.0).astype(np.float32)
  plain, plain_where, _ = _one_minibatch(r, pack=False)
  packed, packed_where, packing = _one_minibatch(r, pack=True)
  assert packed.tokens.shape[0] < plain.tokens.shape[0] and packing.rows == 11 - 3 - 1
  assert packing.tokens < packing.tokens_unpacked
  assert sorted(packed_where[packed_where >= 0]) == sorted(plain_where[plain_where >= 0])
  # Every scored token: the same log-prob packed as alone.
  a = step_lib.scored(graphdef, params, plain, 1.0, 7)
  b = step_lib.scored(graphdef, params, packed, 1.0, 7)
  def per_sample(mb, where, stats):
    out = {}
    for row in range(mb.score_mask.shape[0]):
      for k in np.flatnonzero(mb.score_mask[row]):
        out.setdefault(int(where[row, mb.score_sample[row, k]]), []).append(
            (float(stats.logp[row, k]), float(stats.entropy[row, k])))
    return out
  pa, pb = per_sample(plain, plain_where, a), per_sample(packed, packed_where, b)
  assert pa.keys() == pb.keys()
  for sample in pa:
    np.testing.assert_allclose(pa[sample], pb[sample], atol=1e-5)
  # Plain SGD with rate 1: the parameters move by exactly minus the gradient.
  tx = optax.sgd(1.0)
  state = step_lib.TrainState(params, tx.init(params), params, np.int32(0))
  step = jax.jit(step_lib.make_train_step(graphdef, tx, clip=0.2, kl_coef=0.01,
                                          entropy_coef=0.001, value_coef=0.5,
                                          action_ratio=action_ratio))
  outs = [step(jax.tree.map(jnp.copy, state), mb) for mb in (plain, packed)]
  (state_a, ma), (state_b, mb_) = outs
  for k in ('loss', 'policy_loss', 'kl', 'entropy', 'clip_fraction', 'grad_norm'):
    np.testing.assert_allclose(ma[k], mb_[k], rtol=1e-5, atol=1e-6, err_msg=k)
  for x, y, p0 in zip(*(jax.tree.leaves(t) for t in (state_a.params, state_b.params, params))):
    np.testing.assert_allclose(np.asarray(x) - p0, np.asarray(y) - p0, rtol=1e-4, atol=1e-6)


def test_packing_leaves_a_batch_without_shared_prompts_unchanged():
  r = _rollouts(np.random.default_rng(4))
  plain, plain_where, _ = _one_minibatch(r, pack=False)
  packed, packed_where, packing = _one_minibatch(r, pack=True)
  assert packing.tokens == packing.tokens_unpacked
  np.testing.assert_array_equal(plain_where, packed_where)
  for a, b in zip(plain, packed):
    if a is not None:
      np.testing.assert_array_equal(a, b)


def test_packing_never_reads_more_columns_than_one_sample_per_row():
  # Steps 0 of the 4 attempts share a prompt; with long responses a single
  # packed row would need a wider K bucket for every row of the mini-batch.
  r = _shared_rollouts()
  r.response_mask = np.ones_like(r.response_mask)
  plain, _, _ = _one_minibatch(r, pack=False)
  packed, _, packing = _one_minibatch(r, pack=True)
  assert packed.tokens.size <= plain.tokens.size
  assert packing.tokens < packing.tokens_unpacked
