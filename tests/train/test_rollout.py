"""Tests of g2po_jax/train/rollout.py's state keys: the environments' own keys
(`TimeStep.key`), and no state text kept under exact matching."""

import dataclasses
import gc
import weakref

import jax
import numpy as np
import pytest

from g2po_jax import envs
from g2po_jax import graph
from g2po_jax import protocol
from g2po_jax import sampling
from g2po_jax import tokenizers
from g2po_jax.train import rollout


class _Text(str):
  """A state text whose lifetime a test can watch (a plain str takes no weakref)."""


class _Watched(envs.BatchEnv):
  """Wraps an env: each state text it returns is a fresh, watched object.

  Records, per instance, the text keys of the states (and true states) it
  returned, computed here from the texts.
  """

  def __init__(self, inner: envs.BatchEnv):
    self.inner, self.name = inner, inner.name
    self.refs: list[weakref.ref] = []
    self.keys: list[list[int]] = []
    self.true_keys: list[list[int]] = []

  def _watch(self, steps):
    out = []
    for i, ts in enumerate(steps):
      if ts is not None:
        ts = dataclasses.replace(ts, state_key=_Text(ts.state_key))
        self.refs.append(weakref.ref(ts.state_key))
        true_text = ts.state_key if ts.true_state_key is None else ts.true_state_key
        self.keys[i].append(graph.text_key(str(ts.state_key)))
        self.true_keys[i].append(graph.text_key(str(true_text)))
      out.append(ts)
    return out

  def live_texts(self) -> int:
    gc.collect()
    return sum(ref() is not None for ref in self.refs)

  def reset(self, seeds):
    self.keys = [[] for _ in seeds]
    self.true_keys = [[] for _ in seeds]
    return self._watch(self.inner.reset(seeds))

  def step(self, actions):
    return self._watch(self.inner.step(actions))

  def oracle_actions(self):
    return self.inner.oracle_actions()

  def vocabulary(self):
    return self.inner.vocabulary()


def _collect(name: str, state_keys: graph.Matcher = graph.exact_keys):
  """(rollouts, the watched env, most state texts alive at any sampling) of
  4 tasks x 2 attempts of a noisy oracle."""
  env = _Watched(envs.make(name))
  tok = tokenizers.WordTokenizer.from_vocabulary(env.vocabulary())
  rng = np.random.default_rng(0)
  most_alive = [0]

  def sample_fn(ids, lengths, key, rows):
    del ids, lengths, key
    most_alive[0] = max(most_alive[0], env.live_texts())
    oracle = env.oracle_actions()
    replies = [oracle[i] if rng.random() < 0.7 else 'look' for i in rows]
    encoded = [tok.encode(r) + [tok.eos_id] for r in replies]
    n = 32                                  # max_new_tokens: one width for every call
    tokens = np.full((len(rows), n), tok.pad_id, np.int32)
    mask = np.zeros((len(rows), n), bool)
    for j, seq in enumerate(encoded):
      tokens[j, :len(seq)], mask[j, :len(seq)] = seq, True
    return sampling.Samples(tokens, np.zeros((len(rows), n), np.float32), mask,
                            np.ones(len(rows), bool))

  seeds = np.repeat(envs.split_seeds('train', 4), 2)
  r = rollout.collect(env, seeds, sample_fn, tok, protocol.make_protocol('line', env.name),
                      jax.random.key(0), max_steps=8, history=1, prompt_len=512,
                      success_reward=10.0, state_keys=state_keys)
  return r, env, most_alive[0]


@pytest.mark.parametrize('name', ['household-small', 'household-noisy', 'shop-small'])
def test_keys_are_the_text_keys_of_the_states(name):
  r, env, _ = _collect(name)
  for i, length in enumerate(r.lengths):
    keys = np.array(env.keys[i], np.uint64)
    np.testing.assert_array_equal(r.state_key[i, :length], keys[:length])
    np.testing.assert_array_equal(r.next_key[i, :length], keys[1:length + 1])
    np.testing.assert_array_equal(r.true_key[i, :length], env.true_keys[i][:length])
    assert not r.state_key[i, length:].any() and not r.true_key[i, length:].any()
  assert name.endswith('noisy') == (r.state_key != r.true_key).any()


@pytest.mark.parametrize('name', ['household-small', 'household-noisy'])
def test_exact_matching_on_source_keys_is_exact_matching_on_the_texts(name):
  """The default reads the TimeSteps' keys; a matcher that is not
  `graph.exact_keys` itself gets the texts. Same keys either way."""
  from_keys, _, _ = _collect(name)
  from_texts, _, _ = _collect(name, lambda texts, group: graph.exact_keys(texts, group))
  for field in ('state_key', 'next_key', 'true_key', 'mask'):
    np.testing.assert_array_equal(getattr(from_keys, field), getattr(from_texts, field))


def test_exact_matching_keeps_no_state_text():
  r, env, most_alive = _collect('household-small')
  b = len(r.seeds)
  assert most_alive <= b                    # only the current states' texts
  assert env.live_texts() == 0              # and none in the rollouts
  # A matcher that reads texts keeps them until the batch is keyed.
  r, env, most_alive = _collect('household-small', graph.make_matcher('normalized'))
  assert most_alive > 2 * b
  assert env.live_texts() == 0
