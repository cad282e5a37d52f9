"""Episode metrics of a batch of rollouts, and evaluation on unseen tasks."""

import functools

import jax
import ml_collections as mlc
import numpy as np

from g2po_jax import distributed
from g2po_jax import envs
from g2po_jax import sampling
from g2po_jax import tokenizers
from g2po_jax.train import config as config_lib
from g2po_jax.train import rollout


def episode_metrics(prefix: str, r: rollout.Rollouts) -> dict[str, float]:
  """Success (overall and per task type), length, reward, invalid rate of
  every process's episodes. Rewards are the environment's (success = 1)."""
  lengths = distributed.gather_rows(r.lengths)
  won = distributed.gather_rows(r.won)
  steps = max(int(lengths.sum()), 1)
  invalid = distributed.gather_rows((r.mask & ~r.valid).sum(1))
  types = np.array(distributed.gather_strings(r.task_types))
  out = {
      f'{prefix}/success': float(won.mean()),
      f'{prefix}/episode_length': float(lengths.mean()),
      f'{prefix}/reward': float(distributed.gather_rows(r.env_reward.sum(1)).mean()),
      f'{prefix}/invalid_rate': float(invalid.sum() / steps),
      f'{prefix}/env_steps': float(lengths.sum()),
  }
  for kind in sorted(set(types)):
    out[f'{prefix}/success/{kind}'] = float(won[types == kind].mean())
  return out


def process_share(seeds: np.ndarray, group_size: int) -> tuple[np.ndarray, int]:
  """This process's whole task groups of `seeds`, and the index of its first row."""
  n, p = jax.process_count(), jax.process_index()
  groups = len(seeds) // group_size
  per = groups // n
  return seeds[p * per * group_size:(p + 1) * per * group_size], p * per * group_size


def evaluate(c: mlc.ConfigDict, env: envs.BatchEnv, sampler: sampling.Sampler, params,
             tokenizer: tokenizers.Tokenizer, step: int) -> dict[str, float]:
  """One attempt at each of `eval.num_tasks` unseen (eval-split) tasks.

  `step` (updates so far, or any counter) seeds the sampling: the same tasks
  every time, fresh draws each step.
  """
  seeds, row_offset = process_share(envs.split_seeds('eval', c.eval.num_tasks), 1)
  r = rollout.collect(env, seeds, functools.partial(sampler, params), tokenizer,
                      jax.random.fold_in(jax.random.key(c.seed + 1), step),
                      row_offset=row_offset, **config_lib.rollout_options(c))
  return episode_metrics('eval', r)
