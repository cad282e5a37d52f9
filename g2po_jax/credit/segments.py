"""Segment statistics and per-trajectory scans shared by every estimator.

Device code: pure jnp, jit-friendly, no Python loop over rows or groups.
Every function ignores padded steps (mask False) and never produces NaN or
inf on them, whatever garbage the padding holds.
"""

import chex
import jax
import jax.numpy as jnp

Array = chex.Array

NORMS = ('mean_std_norm', 'mean_norm')
EPS = 1e-6
# Values of a set that agree to this relative tolerance are treated as equal,
# so ties computed along different float32 paths normalize to exactly 0
# instead of amplifying rounding noise by 1/eps. Purely relative: genuinely
# small differences (GraphGPO's omega^d for large d) still count.
TIE_TOL = 1e-5


def _flat(x: Array, ids: Array, mask: Array, num_segments: int):
  m = mask.reshape(-1)
  seg = jnp.where(m, ids.reshape(-1), num_segments)  # padding -> spare slot
  return jnp.where(m, x.reshape(-1), 0.0), seg, m


def segment_mean(x: Array, ids: Array, mask: Array, num_segments: int) -> Array:
  """Mean of x over the real steps of each segment.

  Args:
    x: [...] float values.
    ids: [...] int segment of each value, in [0, num_segments) where mask.
    mask: [...] bool, True on real steps.
    num_segments: static number of segments.
  Returns:
    [num_segments] float means; 0 for segments without a real step.
  """
  xs, seg, m = _flat(x, ids, mask, num_segments)
  total = jax.ops.segment_sum(xs, seg, num_segments + 1)
  count = jax.ops.segment_sum(m.astype(xs.dtype), seg, num_segments + 1)
  return (total / jnp.maximum(count, 1.0))[:num_segments]


def normalize(x: Array, ids: Array, mask: Array, num_segments: int, *,
              norm: str, ddof: int = 1, singleton: str = 'zero',
              eps: float = EPS) -> Array:
  """Normalizes x within each segment: the `norm(x over S)` of the spec.

    mean_std_norm: (x - mean_S) / (std_S + eps), std with `ddof`.
    mean_norm:     x - mean_S.

  A segment whose values are all equal (to a relative TIE_TOL) gives exactly 0. A
  segment with a single real step gives 0 (`singleton='zero'`, step and node
  terms) or x unchanged (`singleton='keep'`, group-wide episode terms).

  Args:
    x: [...] float values.
    ids: [...] int segment of each value, in [0, num_segments) where mask.
    mask: [...] bool, True on real steps.
    num_segments: static number of segments.
    norm: 'mean_std_norm' or 'mean_norm'.
    ddof: delta degrees of freedom of the std (1 = unbiased, 0 = population).
    singleton: 'zero' or 'keep', see above.
    eps: added to the std.
  Returns:
    Array of x's shape; 0 on padded steps.
  """
  chex.assert_equal_shape([x, ids, mask])
  if norm not in NORMS:
    raise ValueError(f'norm must be one of {NORMS}; got {norm!r}.')
  if singleton not in ('zero', 'keep'):
    raise ValueError(f"singleton must be 'zero' or 'keep'; got {singleton!r}.")
  xs, seg, m = _flat(x, ids, mask, num_segments)
  n = num_segments + 1
  count = jax.ops.segment_sum(m.astype(xs.dtype), seg, n)
  mean = jax.ops.segment_sum(xs, seg, n) / jnp.maximum(count, 1.0)
  hi = jax.ops.segment_max(jnp.where(m, xs, -jnp.inf), seg, n)
  lo = jax.ops.segment_min(jnp.where(m, xs, jnp.inf), seg, n)
  scale = jnp.maximum(jnp.abs(hi), jnp.abs(lo))
  tied = (hi - lo <= TIE_TOL * scale) | (count <= 1)  # NaN-free on empty slots
  centered = jnp.where(tied[seg], 0.0, xs - mean[seg])
  if norm == 'mean_std_norm':
    var = jax.ops.segment_sum(centered**2, seg, n) / jnp.maximum(count - ddof, 1.0)
    centered = centered / (jnp.sqrt(var)[seg] + eps)
  single = count[seg] <= 1
  out = jnp.where(single, 0.0 if singleton == 'zero' else xs, centered)
  return jnp.where(m, out, 0.0).reshape(x.shape)


def lengths(mask: Array) -> Array:
  """[B] int32 number of real steps per row of a [B, T] prefix mask."""
  return mask.sum(axis=1, dtype=jnp.int32)


def last_step(mask: Array) -> Array:
  """[B, T] bool: True on the last real step of each row."""
  t = jnp.arange(mask.shape[1])
  return mask & (t[None, :] == lengths(mask)[:, None] - 1)


def episode_returns(reward: Array, mask: Array) -> Array:
  """[B] sum of rewards over each row's real steps."""
  return jnp.where(mask, reward, 0.0).sum(axis=1)


def is_success(returns: Array, success_reward: float) -> Array:
  """[B] bool: the episode return equals `success_reward` (to 1e-5 rel.)."""
  return jnp.abs(returns - success_reward) <= TIE_TOL * jnp.maximum(jnp.abs(success_reward), 1.0)


def reverse_discounted_sum(x: Array, mask: Array, discount: float) -> Array:
  """y_t = x_t + discount * y_{t+1} along each row, over real steps only.

  Args:
    x: [B, T] float.
    mask: [B, T] bool prefix mask.
    discount: scalar.
  Returns:
    [B, T] float; 0 on padded steps (which also cut the recursion).
  """
  chex.assert_rank([x, mask], 2)
  xs = jnp.where(mask, x, 0.0)

  def body(carry, inputs):
    xt, mt = inputs
    y = jnp.where(mt, xt + discount * carry, 0.0)
    return y, y

  _, ys = jax.lax.scan(body, jnp.zeros(x.shape[0], xs.dtype), (xs.T, mask.T),
                       reverse=True)
  return ys.T


def next_step_value(values: Array, mask: Array, terminal: Array) -> Array:
  """Value of the next step of the same row; `terminal` on the last step.

  Args:
    values: [B, T] float, a value per step.
    mask: [B, T] bool prefix mask.
    terminal: [B] float, used on each row's last real step.
  Returns:
    [B, T] float; 0 on padded steps.
  """
  shifted = jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], axis=1)
  out = jnp.where(last_step(mask), terminal[:, None], shifted)
  return jnp.where(mask, out, 0.0)
