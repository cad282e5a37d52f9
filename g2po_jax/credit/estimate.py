"""`estimate`: one validated entry point to every estimator.

It checks the batch on the host, builds the padded graph arrays
(`g2po_jax.graph.build_graph`), runs the estimator's pure function under
`jax.jit` (one compiled function per estimator, options and bucket shape)
and crops the result back to [B, T]. The trainer skips this wrapper and
calls the pure functions inside its own jitted step.
"""

import functools
import inspect
import math
from collections.abc import Callable

import jax
import numpy as np

from g2po_jax import graph as graph_lib
from g2po_jax.credit.episode import grpo_advantages, rloo_advantages
from g2po_jax.credit.g2po import TD_FORMS, g2po_advantages
from g2po_jax.credit.gagpo import gagpo_advantages
from g2po_jax.credit.gigpo import gigpo_advantages
from g2po_jax.credit.graphgpo import DISTANCE_FORMS, graphgpo_advantages
from g2po_jax.credit.hgpo import hgpo_advantages
from g2po_jax.credit.segments import NORMS

ESTIMATORS: dict[str, Callable[..., jax.Array]] = {
    'grpo': grpo_advantages,
    'rloo': rloo_advantages,
    'gigpo': gigpo_advantages,
    'g2po': g2po_advantages,
    'graphgpo': graphgpo_advantages,
    'hgpo': hgpo_advantages,
    'gagpo': gagpo_advantages,
}


# Largest |reward|, |success_reward| and penalty accepted. Normalization sums
# squared deviations of returns in float32 (max 3.4e38): a batch of 1e6 steps
# of 1000-step returns overflows from |reward| of about 9e12 on, so 1e9 leaves
# four orders of margin and is far above any reward scale in use.
MAX_ABS_REWARD = 1e9


def _real(v) -> bool:
  return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
      v, (bool, np.bool_)) and math.isfinite(v)


def _choice(options):
  return lambda v: isinstance(v, str) and v in options, f'one of {options}'


# option -> (predicate, what a valid value is)
_OPTION_RULES = {
    'norm': _choice(NORMS),
    'td_form': _choice(TD_FORMS),
    'distance_form': _choice(DISTANCE_FORMS),
    'level': _choice(('step', 'trajectory')),
    'gamma': (lambda v: _real(v) and 0 < v <= 1, 'a number in (0, 1]'),
    'td_gamma': (lambda v: _real(v) and 0 <= v <= 1, 'a number in [0, 1]'),
    'lam': (lambda v: _real(v) and 0 <= v <= 1, 'a number in [0, 1]'),
    'omega': (lambda v: _real(v) and 0 < v <= 1, 'a number in (0, 1]'),
    'penalty': (lambda v: _real(v) and 0 <= v <= MAX_ABS_REWARD,
                f'a number in [0, {MAX_ABS_REWARD:g}]'),
    'success_reward': (lambda v: _real(v) and 0 < v <= MAX_ABS_REWARD,
                       f'a number in (0, {MAX_ABS_REWARD:g}]'),
    'history': (lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                and 0 <= v <= 16, 'an integer in [0, 16]'),
}
_WEIGHT = (_real, 'a finite number')


def estimator_options(name: str) -> dict[str, object]:
  """The options of estimator `name` with their defaults."""
  params = inspect.signature(ESTIMATORS[name]).parameters.values()
  return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


def check_options(name: str, options: dict[str, object]) -> dict[str, object]:
  """Validates an estimator name and options; returns them with defaults.

  Raises:
    ValueError: unknown estimator, an option it does not use, or a bad value.
  """
  if name not in ESTIMATORS:
    raise ValueError(f'unknown estimator {name!r}; choose one of {", ".join(ESTIMATORS)}.')
  allowed = estimator_options(name)
  for key, value in options.items():
    if key not in allowed:
      raise ValueError(f'estimator {name!r} has no option {key!r}; its options are '
                       f'{", ".join(allowed) or "(none)"}.')
    ok, expected = _OPTION_RULES.get(key, _WEIGHT)
    if not ok(value):
      raise ValueError(f'option {key!r} of {name!r} must be {expected}; got {value!r}.')
  return {**allowed, **options}


def _array(name: str, x, ndim: int, kinds: str, expected: str) -> np.ndarray:
  try:
    arr = np.asarray(x)
  except Exception as e:  # e.g. ragged nested lists
    raise ValueError(f'{name} must be {expected}; could not convert it to an array ({e}).') from e
  if arr.ndim != ndim or arr.dtype.kind not in kinds:
    raise ValueError(f'{name} must be {expected}; got dtype {arr.dtype}, shape {arr.shape}.')
  return arr


def validate_batch(group, state, next_state, reward, valid, mask) -> tuple[np.ndarray, ...]:
  """Checks a rollout batch (spec section 1) on the host.

  Returns:
    (group [B] int64, state [B, T] uint64, next_state [B, T] uint64,
    reward [B, T] float32, valid [B, T] bool, mask [B, T] bool).
  Raises:
    ValueError: naming the argument and what was expected; |reward| above
      `MAX_ABS_REWARD` on a real step is an error.
  """
  mask = _array('mask', mask, 2, 'b', 'a [B, T] bool array')
  b, t = mask.shape
  shape = f'[B, T] = {list(mask.shape)} (the shape of mask)'
  group = _array('group', group, 1, 'iu', f'a [B] integer array, B = {b}')
  state = _array('state', state, 2, 'iu', f'a {shape} integer array')
  next_state = _array('next_state', next_state, 2, 'iu', f'a {shape} integer array')
  reward = _array('reward', reward, 2, 'fiu', f'a {shape} float array')
  valid = _array('valid', valid, 2, 'b', f'a {shape} bool array')
  for name, arr, want in (('group', group, (b,)), ('state', state, (b, t)),
                          ('next_state', next_state, (b, t)), ('reward', reward, (b, t)),
                          ('valid', valid, (b, t))):
    if arr.shape != want:
      raise ValueError(f'{name} must have shape {list(want)} to match mask; got {list(arr.shape)}.')
  holes = mask[:, 1:] & ~mask[:, :-1]
  if holes.any():
    row = int(np.argwhere(holes)[0, 0])
    raise ValueError(f'mask must be a prefix per row (True steps, then only False); '
                     f'row {row} has a True after a False: {mask[row].astype(int).tolist()}.')
  bad = mask & ~np.isfinite(reward)
  if bad.any():
    raise ValueError(f'reward must be finite on real steps; got {reward[bad][:3]} at '
                     f'[b, t] = {np.argwhere(bad)[:3].tolist()}.')
  huge = mask & (np.abs(reward) > MAX_ABS_REWARD)
  if huge.any():
    raise ValueError(f'reward must lie in [-{MAX_ABS_REWARD:g}, {MAX_ABS_REWARD:g}] on real '
                     f'steps (float32 normalization overflows beyond); got '
                     f'{reward[huge][:3]} at [b, t] = {np.argwhere(huge)[:3].tolist()}.')
  return (group.astype(np.int64), state.astype(np.uint64), next_state.astype(np.uint64),
          np.where(mask, reward, 0).astype(np.float32), valid, mask)


@functools.cache
def _compiled(name: str, static: tuple[tuple[str, object], ...]):
  """The jitted estimator; numeric options are traced, so sweeping them
  (gamma, weights, ...) reuses one compilation per shape bucket."""
  fn = functools.partial(ESTIMATORS[name], **dict(static))
  return jax.jit(lambda reward, valid, mask, graph, numeric: fn(
      reward, valid, mask, graph, **numeric))


def estimate(name: str, *, group, state, next_state, reward, valid, mask,
             **options) -> jax.Array:
  """Per-step advantages of a rollout batch with estimator `name`.

  Args:
    name: 'grpo' | 'rloo' | 'gigpo' | 'g2po' | 'graphgpo' | 'hgpo' | 'gagpo'.
    group: [B] int task group of each trajectory.
    state: [B, T] int state keys (equal key = identical state).
    next_state: [B, T] int keys of the states reached. The last step of a
      successful trajectory is routed to SUCCESS whatever it holds.
    reward: [B, T] float per-step rewards.
    valid: [B, T] bool, the action parsed as admissible.
    mask: [B, T] bool real steps, a prefix per row.
    **options: the estimator's options (`estimator_options(name)`); an option
      the estimator does not use is an error.
  Returns:
    [B, T] float32 advantages, exactly 0 on padding. Numpy or JAX inputs.
  Raises:
    ValueError: bad name, option, shape, dtype or mask.
  """
  options = check_options(name, options)
  group, state, next_state, reward, valid, mask = validate_batch(
      group, state, next_state, reward, valid, mask)
  b, t = mask.shape
  graph = graph_lib.build_graph(group, state, next_state, mask,
                                history=options.get('history'))
  shape = graph.node.shape
  pad = lambda x: np.pad(x, [(0, shape[0] - b), (0, shape[1] - t)])
  static = {k: v for k, v in options.items() if isinstance(v, str) or k == 'history'}
  numeric = {k: np.float32(v) for k, v in options.items() if k not in static}
  fn = _compiled(name, tuple(sorted(static.items())))
  # Numpy in, straight to jit: jnp.asarray would compile a staging op per shape.
  out = fn(pad(reward), pad(valid), pad(mask), graph, numeric)
  # Crop on the host: slicing on the device would compile once per (B, T).
  return jax.device_put(np.asarray(out)[:b, :t])
