"""A Qwen2 decoder in Flax NNX: config, presets, layers and the KV cache.

The architecture of Qwen2 / Qwen2.5 (https://arxiv.org/abs/2412.15115):
token embedding, pre-norm decoder layers (RMSNorm, rotary grouped-query
attention with q/k/v bias and no output bias, SwiGLU MLP), a final RMSNorm and
a language-model head that may share the embedding matrix. An optional scalar
value head reads the same final hidden states (PPO with a critic).

Padding and positions. Every call takes a `mask` ([B, T] bool, True = real
token) next to the tokens. A token attends to the real tokens at its own and
earlier slots of its row, and its rotary position is the number of real
tokens before it. Left padding, right padding or holes all give the same
result for the real tokens; padded slots compute garbage that nobody reads.

The KV cache is a plain pytree (`KVCache`) passed in and returned, never
module state, so sampling stays a pure function of (graphdef, params).

Every parameter carries logical axis names in its `out_sharding` metadata
(e.g. ('embed', 'mlp')); `g2po_jax.models.sharding.RULES` maps them to mesh
axes. `eager_sharding=False` keeps construction mesh-free on a laptop.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import chex
from flax import nnx
import jax
import jax.numpy as jnp

from g2po_jax.models import sharding

Array = chex.Array

DTYPES = ('float32', 'bfloat16', 'float16')


# ----------------------------------------------------------------------------
# Config and presets
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shape and numerics of a Qwen2 decoder.

  Attributes:
    vocab_size: rows of the embedding (and columns of the LM head).
    hidden_size: model width D.
    num_layers: decoder layers.
    num_heads: query heads H.
    num_kv_heads: key/value heads K (grouped-query attention; H % K == 0).
    head_dim: width of one head.
    intermediate_size: SwiGLU hidden width F.
    rope_theta: rotary base frequency.
    rms_norm_eps: epsilon of every RMSNorm.
    tie_embeddings: the LM head is the transposed embedding matrix.
    max_position_embeddings: longest context the model is meant for (written
      to saved checkpoints; rotary embeddings themselves have no hard limit).
    dtype: activation / matmul dtype ('float32' on CPU, 'bfloat16' on
      accelerators). Norms, rotary phases, softmaxes, logits, log-probs and
      values are always float32.
    param_dtype: dtype the parameters are stored in.
    value_head: add a scalar value head (PPO with a critic).
    remat: recompute each layer's activations in the backward pass (saves
      memory on long sequences at ~1/3 more compute).
  """
  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  intermediate_size: int
  rope_theta: float = 1e6
  rms_norm_eps: float = 1e-6
  tie_embeddings: bool = True
  max_position_embeddings: int = 32768
  dtype: str = 'float32'
  param_dtype: str = 'float32'
  value_head: bool = False
  remat: bool = False

  def __post_init__(self):
    for name in ('vocab_size', 'hidden_size', 'num_layers', 'num_heads',
                 'num_kv_heads', 'head_dim', 'intermediate_size',
                 'max_position_embeddings'):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be a positive int; got {value!r}.')
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f'num_heads ({self.num_heads}) must be a multiple of '
                       f'num_kv_heads ({self.num_kv_heads}).')
    if self.head_dim % 2:
      raise ValueError(f'head_dim must be even for rotary embeddings; got '
                       f'{self.head_dim}.')
    if self.rope_theta <= 0 or self.rms_norm_eps <= 0:
      raise ValueError(f'rope_theta and rms_norm_eps must be positive; got '
                       f'{self.rope_theta}, {self.rms_norm_eps}.')
    for name in ('dtype', 'param_dtype'):
      if getattr(self, name) not in DTYPES:
        raise ValueError(f'{name} must be one of {DTYPES}; got '
                         f'{getattr(self, name)!r}.')


PRESETS: dict[str, dict] = {
    # Learns the small household task from scratch on 2 CPU cores. The
    # vocabulary comes from the word tokenizer, so it has no vocab_size.
    'tiny': dict(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                 head_dim=32, intermediate_size=256, rope_theta=1e4,
                 max_position_embeddings=512),
    # Compiles in seconds: for tests and smoke runs, not for learning.
    'micro': dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                  head_dim=16, intermediate_size=64, rope_theta=1e4,
                  max_position_embeddings=512),
    # The Hugging Face configs of Qwen/Qwen2.5-{0.5B,1.5B,7B}(-Instruct).
    'qwen2.5-0.5b': dict(vocab_size=151936, hidden_size=896, num_layers=24,
                         num_heads=14, num_kv_heads=2, head_dim=64,
                         intermediate_size=4864, tie_embeddings=True),
    'qwen2.5-1.5b': dict(vocab_size=151936, hidden_size=1536, num_layers=28,
                         num_heads=12, num_kv_heads=2, head_dim=128,
                         intermediate_size=8960, tie_embeddings=True),
    'qwen2.5-7b': dict(vocab_size=152064, hidden_size=3584, num_layers=28,
                       num_heads=28, num_kv_heads=4, head_dim=128,
                       intermediate_size=18944, tie_embeddings=False),
}


def make_config(preset: str, **overrides) -> ModelConfig:
  """The config of a preset (see PRESETS) with fields replaced by overrides.

  Example: `make_config('tiny', vocab_size=tokenizer.vocab_size)`,
  `make_config('qwen2.5-1.5b', dtype='bfloat16', param_dtype='bfloat16')`.
  """
  if preset not in PRESETS:
    raise ValueError(f'unknown preset {preset!r}; choose one of '
                     f'{", ".join(PRESETS)}.')
  fields = {f.name for f in dataclasses.fields(ModelConfig)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f'unknown ModelConfig fields {unknown}; valid fields: '
                     f'{sorted(fields)}.')
  kwargs = {**PRESETS[preset], **overrides}
  if 'vocab_size' not in kwargs:
    raise ValueError(f'preset {preset!r} has no vocab_size; pass one, e.g. '
                     f'vocab_size=tokenizer.vocab_size.')
  return ModelConfig(**kwargs)


# ----------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------


def _param(rngs: nnx.Rngs, init, shape: tuple[int, ...], axes: tuple,
           dtype) -> nnx.Param:
  return nnx.Param(init(rngs.params(), shape, dtype), out_sharding=axes,
                   eager_sharding=False)


_normal = nnx.initializers.normal(0.02)  # Qwen2's initializer_range
_zeros = nnx.initializers.zeros
_ones = nnx.initializers.ones


class RMSNorm(nnx.Module):
  """x / rms(x) * scale, normalized in float32 (as the reference does)."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.eps = config.rms_norm_eps
    self.scale = _param(rngs, _ones, (config.hidden_size,), ('norm',),
                        config.param_dtype)

  def __call__(self, x: Array) -> Array:
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) + self.eps)
    return self.scale[...].astype(x.dtype) * x32.astype(x.dtype)


def rotary(x: Array, positions: Array, theta: float) -> Array:
  """Rotates [B, T, N, Dh] features by [B, T] positions (Qwen2's half split).

  Feature i < Dh/2 pairs with i + Dh/2 and turns by positions * theta^(-2i/Dh).
  """
  half = x.shape[-1] // 2
  inv_freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions.astype(jnp.float32)[..., None, None] * inv_freq  # [B,T,1,h]
  sin, cos = jnp.sin(angles), jnp.cos(angles)
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)
  return out.astype(x.dtype)


class Attention(nnx.Module):
  """Grouped-query self-attention with q/k/v bias, rotary, optional cache."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    d, h, k, dh = (config.hidden_size, config.num_heads, config.num_kv_heads,
                   config.head_dim)
    pd = config.param_dtype
    self.theta = config.rope_theta
    self.dtype = config.dtype
    self.q_kernel = _param(rngs, _normal, (d, h, dh), ('embed', 'heads', 'head_dim'), pd)
    self.q_bias = _param(rngs, _zeros, (h, dh), ('heads', 'head_dim'), pd)
    self.k_kernel = _param(rngs, _normal, (d, k, dh), ('embed', 'kv_heads', 'head_dim'), pd)
    self.k_bias = _param(rngs, _zeros, (k, dh), ('kv_heads', 'head_dim'), pd)
    self.v_kernel = _param(rngs, _normal, (d, k, dh), ('embed', 'kv_heads', 'head_dim'), pd)
    self.v_bias = _param(rngs, _zeros, (k, dh), ('kv_heads', 'head_dim'), pd)
    self.o_kernel = _param(rngs, _normal, (h, dh, d), ('heads', 'head_dim', 'embed'), pd)

  def _project(self, x: Array, kernel: nnx.Param, bias: nnx.Param) -> Array:
    return (jnp.einsum('btd,dnh->btnh', x, kernel[...].astype(self.dtype))
            + bias[...].astype(self.dtype))

  def __call__(self, x: Array, positions: Array, attn_mask: Array,
               cache: tuple[Array, Array] | None, cache_index: Array | int
               ) -> tuple[Array, tuple[Array, Array]]:
    """x [B, T, D]; positions [B, T]; attn_mask [B, 1, T, S] bool.

    Without a cache S == T and the keys are this call's tokens. With a cache
    (k, v: [B, S, K, Dh]) the new keys/values are written at slots
    [cache_index, cache_index + T) first. Returns ([B, T, D], (k, v)).
    """
    q = rotary(self._project(x, self.q_kernel, self.q_bias), positions, self.theta)
    k = rotary(self._project(x, self.k_kernel, self.k_bias), positions, self.theta)
    v = self._project(x, self.v_kernel, self.v_bias)
    if cache is not None:
      k = jax.lax.dynamic_update_slice(cache[0], k.astype(cache[0].dtype),
                                       (0, cache_index, 0, 0))
      v = jax.lax.dynamic_update_slice(cache[1], v.astype(cache[1].dtype),
                                       (0, cache_index, 0, 0))
    # Softmax in float32 inside; masked logits get a large finite negative,
    # so a row with no visible key (padding) gives no NaN.
    out = jax.nn.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype),
                                       mask=attn_mask)
    out = jnp.einsum('btnh,nhd->btd', out, self.o_kernel[...].astype(self.dtype))
    return out, (k, v)


class MLP(nnx.Module):
  """SwiGLU: down(silu(gate(x)) * up(x))."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    d, f, pd = config.hidden_size, config.intermediate_size, config.param_dtype
    self.dtype = config.dtype
    self.gate = _param(rngs, _normal, (d, f), ('embed', 'mlp'), pd)
    self.up = _param(rngs, _normal, (d, f), ('embed', 'mlp'), pd)
    self.down = _param(rngs, _normal, (f, d), ('mlp', 'embed'), pd)

  def __call__(self, x: Array) -> Array:
    w = lambda p: p[...].astype(self.dtype)
    return (jax.nn.silu(x @ w(self.gate)) * (x @ w(self.up))) @ w(self.down)


class DecoderLayer(nnx.Module):
  """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.attn_norm = RMSNorm(config, rngs=rngs)
    self.attn = Attention(config, rngs=rngs)
    self.mlp_norm = RMSNorm(config, rngs=rngs)
    self.mlp = MLP(config, rngs=rngs)

  def __call__(self, x, positions, attn_mask, cache, cache_index):
    h, kv = self.attn(self.attn_norm(x), positions, attn_mask, cache, cache_index)
    x = x + h
    return x + self.mlp(self.mlp_norm(x)), kv


class ValueHead(nnx.Module):
  """A scalar per position: w . h + b, in float32. Starts at exactly 0."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.kernel = _param(rngs, _zeros, (config.hidden_size,), ('embed',), 'float32')
    self.bias = _param(rngs, _zeros, (), (), 'float32')

  def __call__(self, h: Array) -> Array:
    return jnp.einsum('...d,d->...', h.astype(jnp.float32), self.kernel[...]) + self.bias[...]


class KVCache(NamedTuple):
  """Preallocated keys and values of every layer, filled slot by slot."""
  k: tuple[Array, ...]  # num_layers x [B, S, K, Dh]
  v: tuple[Array, ...]  # num_layers x [B, S, K, Dh]
  mask: Array           # [B, S] bool, True where a slot holds a real token


def init_cache(config: ModelConfig, batch_size: int, length: int) -> KVCache:
  """An empty cache of `length` slots per row, in the activation dtype."""
  shape = (batch_size, length, config.num_kv_heads, config.head_dim)
  zeros = lambda: tuple(jnp.zeros(shape, config.dtype)
                        for _ in range(config.num_layers))
  return KVCache(zeros(), zeros(), jnp.zeros((batch_size, length), bool))


class Qwen2(nnx.Module):
  """The Qwen2 decoder. Holds only `nnx.Param` variables.

  `nnx.split(model)` therefore gives exactly (graphdef, params), the pair the
  pure functions in `g2po_jax.sampling` take.
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.config = config
    v, d = config.vocab_size, config.hidden_size
    self.embed = _param(rngs, _normal, (v, d), ('vocab', 'embed'), config.param_dtype)
    self.layers = nnx.List([DecoderLayer(config, rngs=rngs)
                            for _ in range(config.num_layers)])
    self.final_norm = RMSNorm(config, rngs=rngs)
    self.lm_head = (None if config.tie_embeddings else
                    _param(rngs, _normal, (d, v), ('embed', 'vocab'), config.param_dtype))
    self.value_head = ValueHead(config, rngs=rngs) if config.value_head else None

  def hidden_states(self, tokens: Array, mask: Array,
                    cache: KVCache | None = None,
                    cache_index: Array | int = 0,
                    positions: Array | None = None,
                    segments: Array | None = None
                    ) -> tuple[Array, KVCache | None]:
    """Final-norm hidden states of `tokens`, optionally through a KV cache.

    Args:
      tokens: [B, T] int32.
      mask: [B, T] bool, True for real tokens.
      cache: None (attend within this call only) or a cache whose slots
        before `cache_index` hold the earlier tokens and whose later slots
        are empty.
      cache_index: int32 scalar, the slot of tokens[:, 0] in the cache.
      positions: [B, T] int32 rotary positions (no cache only); default: the
        number of real tokens before each slot.
      segments: [B, T] int32 (no cache only) for rows that pack one prompt
        and several responses: a token of segment s > 0 attends to earlier
        tokens of segment 0 (the shared prompt) and of segment s only; a
        token of segment 0 to earlier segment-0 tokens. None: plain causal.
    Returns:
      hidden [B, T, D] in the activation dtype, and the cache with this
      call's keys, values and mask written (None without a cache).
    """
    chex.assert_rank([tokens, mask], 2)
    chex.assert_equal_shape([tokens, mask])
    cfg = self.config
    t = tokens.shape[1]
    if cache is not None and (positions is not None or segments is not None):
      raise ValueError('positions and segments are for cache-free calls (training rows).')
    if positions is None:
      positions = jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1
      if cache is not None:
        positions += cache.mask.sum(1, dtype=jnp.int32)[:, None]
      positions = jnp.maximum(positions, 0)                      # padding
    if cache is None:
      kv_mask, q_slots = mask, jnp.arange(t)
    else:
      kv_mask = jax.lax.dynamic_update_slice(cache.mask, mask, (0, cache_index))
      q_slots = cache_index + jnp.arange(t)
    causal = jnp.arange(kv_mask.shape[1])[None, :] <= q_slots[:, None]  # [T, S]
    attn_mask = kv_mask[:, None, None, :] & causal[None, None]          # [B,1,T,S]
    if segments is not None:
      chex.assert_equal_shape([tokens, segments])
      same = ((segments[:, :, None] == segments[:, None, :])
              | (segments[:, None, :] == 0))                             # [B, T, S]
      attn_mask &= same[:, None]

    x = jnp.take(self.embed[...], tokens, axis=0).astype(cfg.dtype)
    ks, vs = [], []
    for i, layer in enumerate(self.layers):
      if cfg.remat and cache is None:
        # Rematerializing saves activations for a backward pass (decoding with
        # a cache has none). A pure jax.checkpoint of the split layer works
        # under any enclosing transform, where nnx.remat's state updates fail
        # on parameters from another trace level (a frozen reference model).
        layer_def, layer_state = nnx.split(layer)
        x, _ = jax.checkpoint(
            lambda st, x: nnx.merge(layer_def, st)(x, positions, attn_mask, None, 0)
        )(layer_state, x)
        continue
      layer_cache = None if cache is None else (cache.k[i], cache.v[i])
      x, (k, v) = layer(x, positions, attn_mask, layer_cache, cache_index)
      ks.append(k)
      vs.append(v)
    x = self.final_norm(x)
    new_cache = None if cache is None else KVCache(tuple(ks), tuple(vs), kv_mask)
    return x, new_cache

  def logits(self, hidden: Array) -> Array:
    """[..., D] hidden states -> [..., V] float32 logits."""
    h = hidden.astype(self.config.dtype)
    if self.lm_head is None:
      w = self.embed[...].astype(self.config.dtype)
      return jnp.einsum('...d,vd->...v', h, w, preferred_element_type=jnp.float32)
    w = self.lm_head[...].astype(self.config.dtype)
    return jnp.einsum('...d,dv->...v', h, w, preferred_element_type=jnp.float32)

  def values(self, hidden: Array) -> Array:
    """[..., D] hidden states -> [...] float32 values (needs value_head)."""
    if self.value_head is None:
      raise ValueError('this model has no value head; build it with '
                       'ModelConfig(value_head=True).')
    return self.value_head(hidden)

  def __call__(self, tokens: Array, mask: Array | None = None) -> Array:
    """[B, T] tokens (and optional [B, T] bool mask) -> [B, T, V] float32 logits."""
    if mask is None:
      mask = jnp.ones(tokens.shape, bool)
    return self.logits(self.hidden_states(tokens, mask)[0])


def init_model(config: ModelConfig, seed: int,
               mesh: jax.sharding.Mesh | None = None) -> Qwen2:
  """A freshly initialized model; its values depend only on (config, seed)
  (with and without a mesh they agree to the last bit or so: the eager and
  jitted normal samplers round differently).

  Without a mesh this is `Qwen2(config, rngs=nnx.Rngs(seed))`, run op by op:
  each distinct parameter shape compiles one small random kernel, which is
  cached for later models (a jitted init compiles every parameter's random
  draw separately, several times slower on CPU). With a mesh, the params are
  created inside one jit whose outputs carry `sharding.param_shardings`, so
  no device ever holds the whole model.
  """
  build = lambda: Qwen2(config, rngs=nnx.Rngs(seed))
  if mesh is None:
    return build()
  graphdef, abstract = nnx.split(nnx.eval_shape(build))
  params = jax.jit(lambda: nnx.split(build())[1],
                   out_shardings=sharding.param_shardings(abstract, mesh))()
  return nnx.merge(graphdef, params)
