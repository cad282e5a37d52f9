"""Tests of the Qwen2 NNX model: config, padding, cache, remat, dtypes."""

import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from g2po_jax import models
from g2po_jax.models import qwen2

CONFIG = models.ModelConfig(vocab_size=61, hidden_size=32, num_layers=2, num_heads=4,
                            num_kv_heads=2, head_dim=8, intermediate_size=64,
                            rope_theta=1e4, max_position_embeddings=64)


@pytest.fixture(name='model', scope='module')
def _model():
  return models.init_model(CONFIG, 0)


@nnx.jit
def _logits(model, tokens, mask):
  return model(tokens, mask)


@nnx.jit
def _hidden(model, tokens, mask, cache, index):
  return model.hidden_states(tokens, mask, cache, index)


def _tokens(b, t, seed=0):
  return jnp.asarray(np.random.RandomState(seed).randint(0, CONFIG.vocab_size, (b, t)),
                     jnp.int32)


def test_presets_match_the_hugging_face_configs():
  expected = {  # hidden, layers, heads, kv heads, intermediate, vocab, tied
      'qwen2.5-0.5b': (896, 24, 14, 2, 4864, 151936, True),
      'qwen2.5-1.5b': (1536, 28, 12, 2, 8960, 151936, True),
      'qwen2.5-7b': (3584, 28, 28, 4, 18944, 152064, False),
  }
  for name, shape in expected.items():
    c = models.make_config(name)
    assert (c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads,
            c.intermediate_size, c.vocab_size, c.tie_embeddings) == shape
    assert c.head_dim * c.num_heads == c.hidden_size
    assert (c.rope_theta, c.rms_norm_eps, c.max_position_embeddings) == (1e6, 1e-6, 32768)
  tiny = models.make_config('tiny', vocab_size=500)
  # Two query heads share one kv head so the tiny model still exercises GQA.
  assert tiny.num_heads == 2 and tiny.num_kv_heads == 1 and tiny.dtype == 'float32'


def test_config_errors():
  with pytest.raises(ValueError, match='unknown preset'):
    models.make_config('gpt2')
  with pytest.raises(ValueError, match='no vocab_size'):
    models.make_config('tiny')
  with pytest.raises(ValueError, match='unknown ModelConfig fields'):
    models.make_config('tiny', vocab_size=5, hidden=3)
  with pytest.raises(ValueError, match='multiple of num_kv_heads'):
    dataclasses.replace(CONFIG, num_kv_heads=3)
  with pytest.raises(ValueError, match='dtype'):
    dataclasses.replace(CONFIG, dtype='float64')
  with pytest.raises(ValueError, match='hidden_size'):
    dataclasses.replace(CONFIG, hidden_size=0)


def test_param_shapes_and_logical_axes(model):
  params = nnx.state(model, nnx.Param)
  flat = dict(nnx.to_flat_state(params))
  attn = ('layers', 0, 'attn')
  assert flat[attn + ('q_kernel',)].shape == (32, 4, 8)
  assert flat[attn + ('k_kernel',)].get_metadata()['out_sharding'] == (
      'embed', 'kv_heads', 'head_dim')
  assert flat[attn + ('o_kernel',)].shape == (4, 8, 32)
  assert ('lm_head',) not in flat                          # tied
  assert all('out_sharding' in v.get_metadata() for v in flat.values())
  untied = nnx.eval_shape(lambda: models.Qwen2(
      dataclasses.replace(CONFIG, tie_embeddings=False), rngs=nnx.Rngs(0)))
  assert nnx.state(untied, nnx.Param)['lm_head'].shape == (32, 61)


def test_padding_on_either_side_does_not_change_real_logits(model):
  tokens = _tokens(1, 7)
  left = jnp.concatenate([jnp.zeros((1, 3), jnp.int32), tokens], 1)
  right = jnp.concatenate([tokens, jnp.zeros((1, 3), jnp.int32)], 1)
  batch = jnp.concatenate([jnp.concatenate([tokens] * 2 + [left[:, :3]], 1)[:, :10], left,
                           right])                         # [3, 10]
  mask = jnp.stack([jnp.arange(10) < 7, jnp.arange(10) >= 3, jnp.arange(10) < 7])
  logits = _logits(model, batch, mask)
  np.testing.assert_allclose(logits[1, 3:], logits[0, :7], atol=1e-5)
  np.testing.assert_allclose(logits[2, :7], logits[0, :7], atol=1e-5)
  assert np.isfinite(logits).all()                        # padding: no NaN


def test_causal(model):
  tokens = _tokens(2, 8)
  changed = tokens.at[:, 5].set((tokens[:, 5] + 1) % CONFIG.vocab_size)
  mask = jnp.ones((2, 8), bool)
  a, b = _logits(model, tokens, mask), _logits(model, changed, mask)
  np.testing.assert_array_equal(a[:, :5], b[:, :5])
  assert not np.allclose(a[:, 5:], b[:, 5:])


def test_cache_in_chunks_matches_one_pass(model):
  tokens = _tokens(2, 9)
  mask = jnp.ones((2, 9), bool).at[0, :2].set(False)      # left pad in row 0
  ref = _logits(model, tokens, mask)
  cache = models.init_cache(CONFIG, 2, 12)
  parts = []
  for start in (0, 3, 6):
    h, cache = _hidden(model, tokens[:, start:start + 3], mask[:, start:start + 3],
                       cache, start)
    parts.append(model.logits(h))
  np.testing.assert_allclose(jnp.concatenate(parts, 1)[mask], ref[mask], atol=1e-5)
  np.testing.assert_array_equal(cache.mask[:, :9], mask)
  assert not cache.mask[:, 9:].any()


def test_remat_gives_the_same_gradients():
  tokens = _tokens(2, 6)
  grads = []
  for remat in (False, True):
    graphdef, params = nnx.split(models.init_model(dataclasses.replace(CONFIG, remat=remat), 1))
    loss = lambda p: jnp.mean(nnx.merge(graphdef, p)(tokens) ** 2)
    grads.append(jax.jit(jax.grad(loss))(params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), *grads)


def test_bfloat16_params_and_activations_give_float32_logits(model):
  config = dataclasses.replace(CONFIG, dtype='bfloat16', param_dtype='bfloat16')
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: models.Qwen2(config, rngs=nnx.Rngs(0))))
  params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), nnx.state(model, nnx.Param))
  low = nnx.merge(graphdef, params)
  tokens, mask = _tokens(2, 5), jnp.ones((2, 5), bool)
  hidden, _ = _hidden(low, tokens, mask, None, 0)
  assert hidden.dtype == jnp.bfloat16
  logits = low.logits(hidden)
  assert logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, _logits(model, tokens, mask), atol=0.02)


def test_value_head_starts_at_zero_and_is_optional(model):
  with pytest.raises(ValueError, match='no value head'):
    model.values(jnp.zeros((1, 32)))
  with_value = models.init_model(dataclasses.replace(CONFIG, value_head=True), 0)
  hidden, _ = _hidden(with_value, _tokens(2, 4), jnp.ones((2, 4), bool), None, 0)
  values = with_value.values(hidden)
  assert values.shape == (2, 4) and values.dtype == jnp.float32
  np.testing.assert_array_equal(values, 0.0)


def test_rotary_matches_the_rotate_half_formula():
  x = jnp.asarray(np.random.RandomState(0).randn(1, 3, 2, 8), jnp.float32)
  pos = jnp.array([[0, 1, 5]])
  inv = 1e4 ** (-np.arange(0, 8, 2) / 8)
  ang = np.concatenate([pos[0, :, None] * inv] * 2, -1)[None, :, None]   # [1,3,1,8]
  rot_half = np.concatenate([-x[..., 4:], x[..., :4]], -1)
  np.testing.assert_allclose(qwen2.rotary(x, pos, 1e4),
                             x * np.cos(ang) + rot_half * np.sin(ang), atol=1e-5)
