"""Tests of KV-cache sampling, token log-probs and the bucketing sampler."""

import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from g2po_jax import models
from g2po_jax import sampling
from g2po_jax.train import batch as batch_lib

CONFIG = models.ModelConfig(vocab_size=61, hidden_size=32, num_layers=2, num_heads=4,
                            num_kv_heads=2, head_dim=8, intermediate_size=64,
                            rope_theta=1e4, max_position_embeddings=64, value_head=True)
N = 6
GREEDY = sampling.SamplingConfig(max_new_tokens=N, temperature=0.0)
BUCKETS = dict(length_buckets=(8, 16), batch_buckets=(2, 4))


@pytest.fixture(name='split', scope='module')
def _split():
  model = models.init_model(CONFIG, 0)
  # Scale the weights up so that logits are far from uniform and greedy
  # choices are not decided by rounding.
  graphdef, params = nnx.split(model)
  return graphdef, jax.tree.map(lambda x: x * 8 if x.ndim > 1 else x, params)


@pytest.fixture(name='prompts', scope='module')
def _prompts():
  lengths = np.array([3, 7, 5], np.int32)
  tokens = np.zeros((3, 8), np.int32)
  rng = np.random.RandomState(0)
  for i, n in enumerate(lengths):
    tokens[i, :n] = rng.randint(1, CONFIG.vocab_size, n)
  return tokens, lengths


_SAMPLERS = {}


def _sample(split, prompts, config, seed=0):
  # One Sampler (one jit cache) per config, shared by the tests.
  if config not in _SAMPLERS:
    _SAMPLERS[config] = sampling.Sampler(split[0], config, **BUCKETS)
  return _SAMPLERS[config](split[1], *prompts, jax.random.key(seed))


def _rows(prompts, samples):
  """[prompt | response] rows, left-padded so real tokens are contiguous."""
  tokens, lengths = prompts
  b, p = tokens.shape
  rows = np.zeros((b, p + N), np.int32)
  mask = np.zeros((b, p + N), bool)
  for i, n in enumerate(lengths):
    rows[i, p - n:p] = tokens[i, :n]
    mask[i, p - n:p] = True
  rows[:, p:], mask[:, p:] = samples.tokens, samples.mask
  return jnp.asarray(rows), jnp.asarray(mask)


def test_sampler_logp_equal_token_logprobs(split, prompts):
  samples = _sample(split, prompts, sampling.SamplingConfig(max_new_tokens=N))
  assert samples.mask.all() and not samples.done.any()     # no stop ids
  rows, mask = _rows(prompts, samples)
  stats = jax.jit(sampling.token_logprobs, static_argnums=0)(split[0], split[1], rows, mask)
  p = prompts[0].shape[1]
  np.testing.assert_allclose(stats.logp[:, p - 1:], samples.logp, atol=2e-5)
  assert stats.entropy.shape == stats.values.shape == stats.logp.shape
  assert (stats.entropy[mask[:, 1:]] > 0).all()
  np.testing.assert_array_equal(stats.values, 0.0)         # a fresh value head


def test_greedy_is_deterministic_and_matches_recomputation(split, prompts):
  a = _sample(split, prompts, GREEDY, seed=0)
  b = _sample(split, prompts, GREEDY, seed=1)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  # Reference without a cache: causal attention makes one full forward pass
  # over the final rows give every step's next-token logits from scratch.
  rows, mask = _rows(prompts, a)
  logits = jax.jit(lambda p, t, m: nnx.merge(split[0], p)(t, m))(split[1], rows, mask)
  logits = logits[:, prompts[0].shape[1] - 1:-1]                       # [B, N, V]
  np.testing.assert_array_equal(a.tokens, np.argmax(logits, -1))
  logp = np.take_along_axis(jax.nn.log_softmax(logits), a.tokens[..., None], -1)[..., 0]
  np.testing.assert_allclose(a.logp, logp, atol=2e-5)


def test_top_k_1_is_greedy(split, prompts):
  np.testing.assert_array_equal(
      _sample(split, prompts, sampling.SamplingConfig(N, top_k=1), seed=3).tokens,
      _sample(split, prompts, GREEDY).tokens)


def test_top_k_and_top_p_restrict_the_draw():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 2000))
  keys = jax.random.split(jax.random.key(0), 2000)
  for config, allowed in ((sampling.SamplingConfig(1, top_k=2), {0, 1}),
                          (sampling.SamplingConfig(1, top_p=0.7), {0, 1}),
                          (sampling.SamplingConfig(1, top_p=0.9), {0, 1, 2}),
                          (sampling.SamplingConfig(1, top_p=1e-6), {0}),
                          (sampling.SamplingConfig(1), {0, 1, 2, 3})):
    drawn = set(np.asarray(sampling.draw_tokens(logits, keys, config)).tolist())
    assert drawn == allowed, config


def test_stop_ids_end_rows_and_pad_after(split, prompts):
  free = _sample(split, prompts, GREEDY)
  stop = int(free.tokens[0, 2])
  config = dataclasses.replace(GREEDY, stop_ids=(stop,), pad_id=60)
  stopped = _sample(split, prompts, config)
  for row in range(3):
    hits = np.flatnonzero(free.tokens[row] == stop)
    n = hits[0] + 1 if hits.size else N
    assert stopped.done[row] == bool(hits.size)
    np.testing.assert_array_equal(stopped.mask[row], np.arange(N) < n)
    np.testing.assert_array_equal(stopped.tokens[row, :n], free.tokens[row, :n])
    assert (stopped.tokens[row, n:] == 60).all() and (stopped.logp[row, n:] == 0).all()


def test_buckets_avoid_recompiling_and_padding_rows_are_inert(split, prompts):
  sampler = sampling.Sampler(split[0], GREEDY, **BUCKETS)
  tokens, lengths = prompts
  full = sampler(split[1], tokens, lengths, jax.random.key(0))
  alone = sampler(split[1], tokens[:1, :4], lengths[:1], jax.random.key(0))   # 1 -> 2 rows
  assert sampler.num_compilations == 2                      # batch buckets 4 and 2
  shorter = sampler(split[1], tokens[:2, :3], np.array([3, 3]), jax.random.key(0))
  assert sampler.num_compilations == 2                      # same buckets: no compile
  np.testing.assert_array_equal(alone.tokens[0], full.tokens[0])
  assert shorter.tokens.shape == (2, N) and alone.tokens.shape == (1, N)
  sampler(split[1], np.ones((1, 9), np.int32), np.array([9]), jax.random.key(0))
  assert sampler.num_compilations == 3                      # length bucket 16


def test_a_rows_draws_do_not_depend_on_its_batch(split, prompts):
  # Row ids, not batch positions, seed the draws: a trajectory samples the
  # same tokens alone, in a bigger (padded) batch, or at another position.
  sampler = sampling.Sampler(split[0], sampling.SamplingConfig(N), **BUCKETS)
  tokens, lengths = prompts
  key = jax.random.key(5)
  together = sampler(split[1], tokens, lengths, key, row_ids=np.array([7, 8, 9]))
  alone = sampler(split[1], tokens[2:], lengths[2:], key, row_ids=np.array([9]))
  swapped = sampler(split[1], tokens[::-1], lengths[::-1], key, row_ids=np.array([9, 8, 7]))
  np.testing.assert_array_equal(alone.tokens[0], together.tokens[2])
  np.testing.assert_array_equal(swapped.tokens[::-1], together.tokens)
  np.testing.assert_allclose(swapped.logp[::-1], together.logp, atol=1e-6)


def test_errors(split):
  with pytest.raises(ValueError, match='max_new_tokens'):
    sampling.SamplingConfig(0)
  with pytest.raises(ValueError, match='top_p'):
    sampling.SamplingConfig(4, top_p=0.0)
  with pytest.raises(ValueError, match='stop_ids'):
    sampling.SamplingConfig(4, stop_ids=[1])
  with pytest.raises(ValueError, match='increasing'):
    sampling.Sampler(split[0], GREEDY, length_buckets=(16, 8))
  sampler = sampling.Sampler(split[0], GREEDY, **BUCKETS)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match='lengths must lie'):
    sampler(split[1], np.ones((2, 4), np.int32), np.array([0, 2]), key)
  with pytest.raises(ValueError, match='exceeds the largest bucket'):
    sampler(split[1], np.ones((1, 20), np.int32), np.array([20]), key)
  with pytest.raises(ValueError, match='exceeds the largest bucket'):
    sampler(split[1], np.ones((5, 4), np.int32), np.full(5, 4), key)
  with pytest.raises(ValueError, match=r'\[B, L\]'):
    sampler(split[1], np.ones(4, np.int32), np.array([4]), key)


def test_scored_logprobs_equal_the_full_logits(split, prompts):
  samples = _sample(split, prompts, sampling.SamplingConfig(max_new_tokens=N))
  tokens, lengths = prompts
  rows = batch_lib.sample_rows(tokens, lengths, samples.tokens, samples.mask, width=8)
  full = sampling.token_logprobs(split[0], split[1], rows['tokens'], rows['token_mask'], 0.8)
  for chunk in (5, 1024):               # blocks that do and do not divide R x K
    scored = sampling.scored_logprobs(
        split[0], split[1], rows['tokens'], rows['token_mask'], rows['positions'],
        rows['segments'], rows['score_pos'], rows['score_token'], rows['value_pos'],
        temperature=0.8, chunk=chunk)
    np.testing.assert_allclose(scored.logp, full.logp[:, 7:], atol=1e-5)
    np.testing.assert_allclose(scored.entropy, full.entropy[:, 7:], atol=1e-5)
    np.testing.assert_allclose(scored.values, full.values[:, 7], atol=1e-6)


def test_remat_changes_nothing_in_sampling(split, prompts):
  remat = dataclasses.replace(CONFIG, remat=True)
  graphdef = nnx.split(models.init_model(remat, 0))[0]
  config = sampling.SamplingConfig(max_new_tokens=N, temperature=1.0)
  a = sampling.Sampler(graphdef, config, **BUCKETS)(split[1], *prompts, jax.random.key(2))
  b = _sample(split, prompts, config, seed=2)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_allclose(a.logp, b.logp, atol=1e-6)


@pytest.mark.parametrize('temperature', [0.0, 1.0])
def test_shared_prompts_sample_exactly_what_unshared_rows_sample(split, temperature):
  tokens, lengths = np.zeros((7, 8), np.int32), np.array([3, 7, 3, 5, 7, 3, 1], np.int32)
  rng = np.random.RandomState(1)
  distinct = {n: rng.randint(1, CONFIG.vocab_size, n) for n in (1, 3, 5, 7)}
  for i, n in enumerate(lengths):
    tokens[i, :n] = distinct[n]                 # rows 0, 2, 5 and rows 1, 4 share a prompt
  tokens[2, 5] = 9                              # padding past the length does not matter
  buckets = dict(length_buckets=(8, 16), batch_buckets=(2, 4, 8))
  row_ids = np.arange(7) + 3
  free = sampling.Sampler(split[0], sampling.SamplingConfig(N, temperature=temperature),
                          **buckets)(split[1], tokens, lengths, jax.random.key(4), row_ids)
  stop = int(free.tokens[0, 1])                 # some rows stop early
  config = sampling.SamplingConfig(N, temperature=temperature, stop_ids=(stop,))
  plain = sampling.Sampler(split[0], config, **buckets)
  shared = sampling.Sampler(split[0], config, share_prompts=True, **buckets)
  a = plain(split[1], tokens, lengths, jax.random.key(4), row_ids=row_ids)
  b = shared(split[1], tokens, lengths, jax.random.key(4), row_ids=row_ids)
  assert a.done.any() and not a.done.all()
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_array_equal(a.mask, b.mask)
  np.testing.assert_array_equal(a.done, b.done)
  np.testing.assert_allclose(a.logp, b.logp, atol=1e-6)
  if temperature:   # rows with one prompt but their own keys draw differently
    assert not np.array_equal(b.tokens[0], b.tokens[2])
