"""Episode metrics of a batch of rollouts, and evaluation on unseen tasks."""

import functools

import jax
import ml_collections as mlc
import numpy as np

from g2po_jax import distributed
from g2po_jax import envs
from g2po_jax import protocol as protocol_lib
from g2po_jax import sampling
from g2po_jax import tokenizers
from g2po_jax.train import config as config_lib
from g2po_jax.train import rollout


def episode_metrics(prefix: str, r: rollout.Rollouts) -> dict[str, float]:
  """Success (overall and per task type), length, reward and the response
  statistics of every process's episodes. Rewards are the environment's
  (success = 1).

  Of the steps, `format_error_rate` is the share whose response broke the
  protocol's format and `invalid_rate` the share of well-formed actions the
  environment did not admit; `truncation_rate` is the share of responses cut
  by rollout.max_new_tokens.
  """
  lengths = distributed.gather_rows(r.lengths)
  won = distributed.gather_rows(r.won)
  steps = max(int(lengths.sum()), 1)
  per_row = lambda x: distributed.gather_rows((r.mask & x).sum(1)).sum()
  response = r.response_mask.sum(1)
  # Equal shapes on every process for the gathers: [count, sum, max, cut].
  tokens = distributed.gather_rows(np.array([[len(response), response.sum(),
                                              response.max(initial=0),
                                              (~r.response_stopped).sum()]]))
  types = np.array(distributed.gather_strings(r.task_types))
  out = {
      f'{prefix}/success': float(won.mean()),
      f'{prefix}/episode_length': float(lengths.mean()),
      f'{prefix}/reward': float(distributed.gather_rows(r.env_reward.sum(1)).mean()),
      f'{prefix}/invalid_rate': float(per_row(~r.valid & ~r.format_error) / steps),
      f'{prefix}/format_error_rate': float(per_row(r.format_error) / steps),
      f'{prefix}/env_steps': float(lengths.sum()),
      f'{prefix}/response_length': float(tokens[:, 1].sum() / max(tokens[:, 0].sum(), 1)),
      f'{prefix}/response_length_max': float(tokens[:, 2].max()),
      f'{prefix}/truncation_rate': float(tokens[:, 3].sum() / max(tokens[:, 0].sum(), 1)),
      f'{prefix}/tokens_per_episode': float(tokens[:, 1].sum() / len(lengths)),
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
             tokenizer: tokenizers.Tokenizer, protocol: protocol_lib.Protocol,
             step: int) -> dict[str, float]:
  """One attempt at each of `eval.num_tasks` unseen (eval-split) tasks.

  `step` (updates so far, or any counter) seeds the sampling: the same tasks
  every time, fresh draws each step.
  """
  seeds, row_offset = process_share(envs.split_seeds('eval', c.eval.num_tasks), 1)
  r = rollout.collect(env, seeds, functools.partial(sampler, params), tokenizer, protocol,
                      jax.random.fold_in(jax.random.key(c.seed + 1), step),
                      row_offset=row_offset, **config_lib.rollout_options(c))
  return episode_metrics('eval', r)
