"""Synthetic rollout batches of state texts, for the benchmarks (host, numpy).

Each task has a pool of state texts (words of the household world, up to
`obs_chars` characters); its attempts walk over the pool so states repeat
about as often as in ALFWorld.
"""

import numpy as np

SUCCESS_REWARD = 10.0
_WORDS = ('You arrive at cabinet drawer fridge countertop shelf sinkbasin the a an of in on '
          'is open closed see nothing mug apple knife plate 1 2 3 4 5 go to take put from '
          'heat cool clean with examine look inventory use desklamp Admissible actions').split()


def _text(rng: np.random.Generator, chars: int) -> str:
  words = rng.choice(_WORDS, chars // 4)
  return ' '.join(words)[:int(chars * rng.uniform(0.5, 1.0))]


def make_rollouts(num_tasks: int, group_size: int, steps: int, obs_chars: int, seed: int = 0):
  """A padded rollout batch whose observations are texts, [B][T+1] lists."""
  rng = np.random.default_rng(seed)
  b = num_tasks * group_size
  pool = max(steps // 2, 4)                        # states per task
  pools = [[_text(rng, obs_chars) for _ in range(pool)] for _ in range(num_tasks)]
  # Random walks that mostly move forward: revisits across attempts, some loops.
  moves = rng.choice([-1, 0, 1, 1, 1], (b, steps + 1))
  walk = np.clip(np.cumsum(moves, axis=1), 0, pool - 1)
  task = np.repeat(np.arange(num_tasks), group_size)
  lengths = np.where(rng.random(b) < 0.5, rng.integers(steps // 2, steps + 1, b), steps)
  mask = np.arange(steps)[None] < lengths[:, None]
  reward = np.zeros((b, steps), np.float32)
  won = (lengths < steps)
  reward[np.arange(b), lengths - 1] = np.where(won, SUCCESS_REWARD, 0.0)
  texts = [[pools[task[i]][j] for j in walk[i]] for i in range(b)]
  return dict(group=task, texts=texts, reward=reward, valid=rng.random((b, steps)) < 0.9,
              mask=mask)
