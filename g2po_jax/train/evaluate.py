"""Episode metrics of a batch of rollouts, evaluation on unseen tasks, and the
diagnostics of a policy evaluated on an environment it was not trained on."""

import collections
import functools
import re

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


# The receptacle an ALFWorld command names: 'go to R', 'open R', 'close R',
# 'examine R', 'take o from R', 'move o to R', 'heat/cool/clean o with R'.
_RECEPTACLE = re.compile(r'^(?:go to|open|close) (.+)$|^(?:take|move|heat|cool|clean) .+? '
                         r'(?:from|to|with) (.+)$')
_ROOM = re.compile(r'Looking quickly around you, you see (.+?)\.\n')


class Recorder(envs.BatchEnv):
  """Passes an environment through and keeps the texts the diagnostics read."""

  def __init__(self, env: envs.BatchEnv):
    self._env = env
    self.name, self.max_steps = env.name, env.max_steps
    self.tasks: list[str] = []
    self.offered: list[str] = []           # every admissible action of every step
    self.sent: list[tuple[int, str]] = []  # (instance, action) of every step
    self.rooms: list[frozenset[str] | None] = []

  def reset(self, seeds):
    out = self._env.reset(seeds)
    self.rooms = [_room(t.observation) for t in out]
    for t in out:
      self.tasks.append(t.task)
      self.offered.extend(t.admissible)
    return out

  def step(self, actions):
    out = self._env.step(actions)
    for i, (a, t) in enumerate(zip(actions, out)):
      if t is not None:
        self.sent.append((i, a))
        self.offered.extend(t.admissible)
    return out

  def oracle_actions(self):
    return self._env.oracle_actions()

  def task_type(self, index):
    return self._env.task_type(index)

  def vocabulary(self):
    return self._env.vocabulary()

  def close(self):
    self._env.close()


def _room(observation: str) -> frozenset[str] | None:
  """The receptacles an ALFWorld-like first observation lists, or None."""
  match = _ROOM.search(observation)
  if match is None:
    return None
  return frozenset(re.sub(r'^(?:and )?a ', '', item.strip())
                   for item in match.group(1).split(','))


def _unknown_share(tokenizer: tokenizers.Tokenizer, texts: list[str]) -> float | None:
  if not isinstance(tokenizer, tokenizers.WordTokenizer) or not texts:
    return None
  distinct = collections.Counter(texts)
  unknown = sum(n for text, n in distinct.items()
                if tokenizer.UNK in tokenizer.encode(text))
  return unknown / len(texts)


def transfer_metrics(recorder: Recorder, tokenizer: tokenizers.Tokenizer,
                     r: rollout.Rollouts, prompt_len: int) -> dict[str, float | None]:
  """The zero-shot diagnostics of the module docstring."""
  named = absent = 0
  for i, action in recorder.sent:
    room = recorder.rooms[i]
    match = _RECEPTACLE.match(action or '')
    if room is None or match is None:
      continue
    named += 1
    absent += (match.group(1) or match.group(2)) not in room
  return {
      'unknown_word_actions': _unknown_share(tokenizer, recorder.offered),
      'unknown_word_tasks': _unknown_share(tokenizer, recorder.tasks),
      'cut_prompts': float(np.mean(r.prompt_lengths >= prompt_len)),
      'absent_receptacle_actions': absent / len(recorder.sent) if recorder.sent else None,
      'receptacle_actions': named / len(recorder.sent) if recorder.sent else None,
  }
