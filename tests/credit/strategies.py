"""Hypothesis strategies: random rollout batches with the structure of real ones."""

import numpy as np
from hypothesis import strategies as st

SUCCESS_REWARD = 10.0


@st.composite
def batches(draw, max_rows=8, max_steps=7, num_keys=5):
  """Padded batches with shared states, self-loops, invalid actions, truncation.

  States come from a small alphabet so groups revisit them; next_state is the
  next step's state (or a fresh key after the last step); some trajectories
  end in a success reward, some carry partial rewards; padding holds garbage
  (NaN rewards, random keys) that must not matter.
  """
  b = draw(st.integers(1, max_rows))
  t = draw(st.integers(1, max_steps))
  seed = draw(st.integers(0, 2**32 - 1))
  rng = np.random.default_rng(seed)
  group = rng.integers(0, draw(st.integers(1, 3)), b) * 7 + 3   # arbitrary labels
  lengths = rng.integers(0 if draw(st.booleans()) else 1, t + 1, b)
  mask = np.arange(t)[None, :] < lengths[:, None]
  state = rng.integers(0, num_keys, (b, t)).astype(np.int64) * 1000003
  final = rng.integers(0, num_keys + 2, b) * 1000003
  next_state = np.concatenate([state[:, 1:], final[:, None]], axis=1)
  next_state[np.arange(b), np.maximum(lengths - 1, 0)] = final
  reward = np.zeros((b, t))
  won = rng.random(b) < 0.5
  last = np.maximum(lengths - 1, 0)
  reward[np.arange(b), last] = np.where(won & (lengths > 0), SUCCESS_REWARD, 0.0)
  if draw(st.booleans()):  # partial rewards somewhere
    reward += rng.choice([0.0, 0.0, 0.0, 0.5, 1.0], (b, t))
  valid = rng.random((b, t)) < draw(st.sampled_from([1.0, 0.8, 0.5]))
  reward = np.where(mask, reward, np.nan)
  state = np.where(mask, state, rng.integers(0, 10**9, (b, t)))
  return dict(group=group, state=state, next_state=next_state, reward=reward,
              valid=valid, mask=mask)
