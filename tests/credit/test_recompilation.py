"""Shape buckets keep the number of compilations small."""

import jax
import numpy as np

from g2po_jax import credit


def _batch(rng, b, t):
  lengths = rng.integers(1, t + 1, b)
  mask = np.arange(t)[None] < lengths[:, None]
  state = rng.integers(0, 20, (b, t))
  reward = np.zeros((b, t))
  reward[np.arange(b), lengths - 1] = 10.0 * (rng.random(b) < 0.5)
  return dict(group=np.arange(b) // 8, state=state, next_state=np.roll(state, -1, 1),
              reward=reward, valid=rng.random((b, t)) < 0.9, mask=mask)


def test_twenty_batch_sizes_compile_a_handful_of_times():
  compiles = []
  listener = lambda event, duration, **kw: compiles.append(event)
  rng = np.random.default_rng(0)
  credit.estimate('g2po', **_batch(rng, 64, 50))       # warm-up at the largest size
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    for b, t in zip(rng.integers(40, 65, 20), rng.integers(34, 51, 20)):
      credit.estimate('g2po', **_batch(rng, int(b), int(t)), gamma=float(rng.uniform(0.9, 1)))
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  backend = [e for e in compiles if e == '/jax/core/compile/backend_compile_duration']
  assert len(backend) <= 5, f'{len(backend)} compilations for 20 batches'
