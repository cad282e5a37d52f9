"""Tests for `g2po_jax/envs/noisy.py`."""

import re

import numpy as np
import pytest

from g2po_jax import envs
from g2po_jax import graph
from g2po_jax.envs import base
from g2po_jax.envs import noisy

_SEEDS = [int(s) for s in base.split_seeds('train', 4) for _ in range(3)]


def _run(name: str, **kwargs):
  """Both worlds side by side under the same actions (a noisy oracle's)."""
  env, inner = envs.make(name, **kwargs), envs.make(name.replace('noisy', 'small'))
  rng = np.random.default_rng(0)
  pairs = [(env.reset(_SEEDS), inner.reset(_SEEDS))]
  for _ in range(8):
    actions = [None if s.done else best if rng.random() < 0.6 else str(rng.choice(s.admissible))
               for s, best in zip(pairs[-1][0], env.oracle_actions())]
    assert env.oracle_actions() == inner.oracle_actions()
    out, ref = env.step(actions), inner.step(actions)
    pairs.append(([o if o is not None else s for o, s in zip(out, pairs[-1][0])],
                  [o if o is not None else s for o, s in zip(ref, pairs[-1][1])]))
  return pairs


@pytest.mark.parametrize('name', ['household-noisy', 'shop-noisy'])
def test_the_world_is_the_inner_world_and_its_key_is_the_true_state(name):
  for noisy_steps, clean_steps in _run(name):
    for s, c in zip(noisy_steps, clean_steps):
      assert (s.task, s.admissible, s.reward, s.done, s.won, s.valid) == (
          c.task, c.admissible, c.reward, c.done, c.won, c.valid)
      assert s.true_state_key == c.state_key and c.true_state_key is None
      assert s.state_key != c.state_key and s.observation != c.observation


@pytest.mark.parametrize('name', ['household-noisy', 'shop-noisy'])
def test_noise_is_a_function_of_the_task_and_the_actions(name):
  first, again = _run(name), _run(name)
  texts = lambda run: [(s.observation, s.state_key) for steps, _ in run for s in steps]
  assert texts(first) == texts(again)
  other = _run(name, noise_seed=1)
  assert texts(other) != texts(first)
  # Attempts at one task that acted alike so far read the same texts.
  steps = first[0][0]
  assert steps[0].observation == steps[1].observation == steps[2].observation


def test_each_kind_of_noise_and_switching_it_off():
  step = envs.make('household-noisy', chatter=1.0, jitter=0.0).reset(_SEEDS[:1])[0]
  assert re.match(r'\[\d\d:\d\d:\d\d\] step 0, request [0-9a-f]{8}\. ', step.observation)
  assert any(s in step.observation for s in noisy._CHATTER)
  quiet = envs.make('household-noisy', clock=False, request_ids=False, shuffle=False,
                    chatter=0.0, jitter=0.0).reset(_SEEDS[:1])[0]
  clean = envs.make('household-small').reset(_SEEDS[:1])[0]
  assert quiet.observation == clean.observation and quiet.state_key == clean.state_key


def test_the_normalizers_give_the_true_state_back():
  normalize = graph.make_normalizer(noisy.NoisyEnv.NORMALIZERS)
  for name in ('household-noisy', 'shop-noisy'):
    seen = {}
    for noisy_steps, _ in _run(name):
      for s in noisy_steps:
        seen.setdefault(normalize(s.state_key), set()).add(s.true_state_key)
    assert all(len(v) == 1 for v in seen.values())          # never merges two states
    trues = {t for v in seen.values() for t in v}
    assert len(seen) == len(trues)                           # never splits one


def test_vocabulary_covers_the_noise_but_request_ids():
  env = envs.make('household-noisy', chatter=1.0, jitter=0.3)
  vocab = set(env.vocabulary())
  step = env.reset(_SEEDS[:1])[0]
  unknown = set(base.split_words(step.observation)) - vocab
  assert len(unknown) == 1 and re.fullmatch(r'[0-9a-f]{8}', unknown.pop())


@pytest.mark.parametrize('kwargs, message', [
    (dict(inner='twx-coin'), 'inner must be one of'),
    (dict(chatter=1.5), r'chatter must be a probability in \[0, 1\]'),
    (dict(jitter=-0.1), r'jitter must be a probability in \[0, 1\]'),
])
def test_bad_options(kwargs, message):
  with pytest.raises(ValueError, match=message):
    noisy.NoisyEnv(**kwargs)
