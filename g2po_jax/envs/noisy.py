"""The built-in worlds behind the noise real tools write. Host only: never imports jax.

`household-noisy` and `shop-noisy` wrap `household-small` and `shop-small`:
the world, its rules, rewards and oracle are the inner world's; only the
texts the agent reads (observations) and the state keys are garbled, the way
raw tool and API output is:

  header   '[09:14:03] step 4, request 5f0c2a91. ' before every observation
           and key: a clock that advances 1-59 s a step (`clock`), the step
           counter and a random request id (`request_ids`).
  shuffle  the items of a listing ('a mug 2, a cup 1, and a pen 3') and the
           admissible actions of the key in a random order (`shuffle`).
  chatter  with probability `chatter`, one irrelevant sentence appended.
  jitter   each word's first letter upper-cased with probability `jitter`,
           each space doubled with the same probability.

`TimeStep.admissible` stays the inner world's sorted tuple, and
`TimeStep.true_state_key` is the inner world's noise-free key, so the true
state of every step is known (to score state matching: purity and recall).

Determinism (base.py's contract): a step's noise draws from
`default_rng([noise_seed, task seed, step, crc32 of the actions so far])`,
a pure function of the config, the task and the action history. Attempts that
act alike read the same texts; attempts that reach one state by different
paths read different headers, orders and sentences, which is what splits
exact-match graph nodes.

`NORMALIZERS` (for `graph.matching='normalized'`) undo each kind of noise:
case and spaces, the header, the chatter sentences, the order of listings
and of the key's lines.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

from g2po_jax.envs import base
from g2po_jax.envs import household
from g2po_jax.envs.shop import env as shop_env

_INNER = {'household-small': (household.HouseholdEnv, {'preset': 'small'}),
          'shop-small': (shop_env.ShopEnv, {'preset': 'small'})}

_CHATTER = ('A clock ticks somewhere.', 'The air smells faintly of dust.',
            'You hear a car pass outside.', 'The light flickers for a moment.',
            'Somebody laughs in another room.')
_LISTING = re.compile(r'a [\w-]+ \d+(?:, (?:and )?a [\w-]+ \d+)+')
_ITEM = re.compile(r'a [\w-]+ \d+')


def header(seconds: int | None, step: int | None, request: int | None) -> str:
  """'[hh:mm:ss] step N, request xxxxxxxx. ' (the parts that are not None)."""
  out = ''
  if seconds is not None:
    t = seconds % 86400
    out += f'[{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}] step {step}, '
  if request is not None:
    out += f'request {request:08x}. '
  return out


def garble(text: str, rng: np.random.Generator, *, shuffle: bool = True, chatter: float = 0.1,
           jitter: float = 0.05) -> str:
  """`text` with its listings shuffled, maybe a chatter sentence added, and
  case and space jitter (the module docstring's noise, without the header)."""
  if shuffle:
    def shuffled(m: re.Match) -> str:
      items = _ITEM.findall(m.group(0))
      items = [items[j] for j in rng.permutation(len(items))]
      return ', '.join(items[:-1]) + ', and ' + items[-1]
    text = _LISTING.sub(shuffled, text)
  if rng.random() < chatter:
    text += ' ' + _CHATTER[int(rng.integers(len(_CHATTER)))]
  if jitter:
    words = text.split(' ')
    flip, double = rng.random((2, len(words))) < jitter
    words = [w[:1].upper() + w[1:] if f else w for w, f in zip(words, flip)]
    text = words[0] + ''.join(('  ' if d else ' ') + w for w, d in zip(words[1:], double))
  return text


class NoisyEnv(base.BatchEnv):
  """A built-in world with noisy observations and state keys (module docstring).

  Args:
    inner: the wrapped world, 'household-small' or 'shop-small'.
    clock: prefix a clock and the step counter.
    request_ids: prefix a random request id.
    shuffle: list items and the key's admissible actions in a random order.
    chatter: probability of an irrelevant sentence per text, in [0, 1].
    jitter: probability of a case flip per word and a doubled space per
      space, in [0, 1].
    noise_seed: seeds every draw of the noise (tasks come from task seeds).
  """

  NORMALIZERS = (
      (r'[A-Z]', '<lower>'),                                     # case jitter
      (r'  +', ' '),                 # doubled spaces (' {2,}' alike; re finds '  ' faster)
      (r'\[\d\d:\d\d:\d\d\] step \d+, ', ''),                    # clock and counter
      (r'request [0-9a-f]{8}\. ', ''),                           # request id
      (' (?:' + '|'.join(re.escape(s.lower()) for s in _CHATTER) + ')', ''),
      (r', and a ', ', a '),                                     # listing order
      (r'a [\w-]+ \d+(?:, a [\w-]+ \d+)+', '<sort:, >'),
      (r'(?s).+', '<sort:\n>'),                                  # key lines' order
  )

  def __init__(self, inner: str = 'household-small', *, clock: bool = True,
               request_ids: bool = True, shuffle: bool = True, chatter: float = 0.1,
               jitter: float = 0.05, noise_seed: int = 0):
    if inner not in _INNER:
      raise ValueError(f'inner must be one of {", ".join(_INNER)}; got {inner!r}.')
    for name, p in (('chatter', chatter), ('jitter', jitter)):
      if not 0.0 <= p <= 1.0:
        raise ValueError(f'{name} must be a probability in [0, 1]; got {p!r}.')
    cls, preset = _INNER[inner]
    self._inner = cls(**preset)
    self.name = inner.replace('-small', '-noisy')
    self.max_steps = self._inner.max_steps
    self._clock, self._ids, self._shuffle = clock, request_ids, shuffle
    self._chatter, self._jitter, self._noise_seed = chatter, jitter, noise_seed
    self._seeds: list[int] = []
    self._history: list[int] = []       # crc32 of each instance's actions so far
    self._time: list[int] = []          # each instance's clock, in seconds
    self._steps: list[int] = []

  def reset(self, seeds: Sequence[int]) -> list[base.TimeStep]:
    steps = self._inner.reset(seeds)
    self._seeds = [int(s) for s in seeds]
    self._history = [0] * len(steps)
    self._time = [int(np.random.default_rng([self._noise_seed, s]).integers(6 * 3600, 20 * 3600))
                  for s in self._seeds]
    self._steps = [0] * len(steps)
    return [self._garble(i, s) for i, s in enumerate(steps)]

  def step(self, actions: Sequence[str | None]) -> list[base.TimeStep | None]:
    out = self._inner.step(actions)
    for i, (action, s) in enumerate(zip(actions, out)):
      if s is not None:
        self._history[i] = zlib.crc32(base.normalize_action(action).encode(), self._history[i])
        self._steps[i] += 1
        out[i] = self._garble(i, s)
    return out

  def _garble(self, i: int, s: base.TimeStep) -> base.TimeStep:
    """The noisy view of instance i's step `s`."""
    rng = np.random.default_rng([self._noise_seed, self._seeds[i], self._steps[i],
                                 self._history[i]])
    self._time[i] += int(rng.integers(1, 60))
    head = header(self._time[i] if self._clock else None,
                  self._steps[i] if self._clock else None,
                  int(rng.integers(0, 2**32)) if self._ids else None)
    # The inner key is the observation behind the last change, a newline and
    # the admissible actions one per line (household and shop alike).
    actions = '\n' + '\n'.join(s.admissible)
    body = s.state_key[:-len(actions)] if s.state_key.endswith(actions) else s.state_key
    lines = list(s.admissible)
    if self._shuffle:
      rng.shuffle(lines)
    key = head + self._text(body, rng) + ''.join('\n' + a for a in lines)
    return base.TimeStep(head + self._text(s.observation, rng), s.task, s.admissible,
                         s.reward, s.done, s.won, s.valid, key, true_state_key=s.state_key)

  def _text(self, text: str, rng: np.random.Generator) -> str:
    return garble(text, rng, shuffle=self._shuffle, chatter=self._chatter, jitter=self._jitter)

  def oracle_actions(self) -> list[str | None]:
    return self._inner.oracle_actions()

  def task_type(self, index: int) -> str:
    return self._inner.task_type(index)

  def vocabulary(self) -> list[str]:
    words = set(self._inner.vocabulary())
    words.update(w for s in _CHATTER + (header(0, 0, 0),) for w in base.split_words(s))
    words.update(w[:1].upper() + w[1:] for w in list(words))     # case jitter
    words.update({f'{n:02d}' for n in range(60)} | {str(n) for n in range(100)})
    return sorted(words)

  def close(self) -> None:
    self._inner.close()
