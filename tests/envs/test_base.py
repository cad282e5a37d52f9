"""Tests of the environment protocol helpers and the registry."""

import dataclasses
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

from g2po_jax import envs
from g2po_jax import graph
from g2po_jax.envs import base
from tests.envs.common import play


def test_train_and_eval_seeds_are_disjoint_and_map_back():
  train = envs.split_seeds('train', 5000)
  evaluation = envs.split_seeds('eval', 5000)
  assert train.dtype == evaluation.dtype == np.int64
  assert not set(train.tolist()) & set(evaluation.tolist())
  assert {envs.seed_split(int(s)) for s in train} == {'train'}
  assert {envs.seed_split(int(s)) for s in evaluation} == {'eval'}


def test_split_seeds_start_continues_the_range():
  whole = envs.split_seeds('eval', 10)
  np.testing.assert_array_equal(envs.split_seeds('eval', 4, start=6), whole[6:])


def test_last_seeds_of_the_splits_stay_apart():
  last_train = envs.split_seeds('train', 1, start=base._SPLIT_SIZE - 1)
  first_eval = envs.split_seeds('eval', 1)
  assert last_train[0] < first_eval[0]
  assert envs.seed_split(int(last_train[0])) == 'train'


@pytest.mark.parametrize('split, count, start, message', [
    ('test', 3, 0, 'split'),
    ('train', -1, 0, 'seed indices'),
    ('train', 2, base._SPLIT_SIZE - 1, 'seed indices'),
    ('eval', 1, -5, 'seed indices'),
])
def test_split_seeds_rejects_bad_arguments(split, count, start, message):
  with pytest.raises(ValueError, match=message):
    envs.split_seeds(split, count, start)


@pytest.mark.parametrize('seed', [-1, 2 * base._SPLIT_SIZE])
def test_seed_split_rejects_seeds_outside_the_splits(seed):
  with pytest.raises(ValueError, match='no split'):
    envs.seed_split(seed)


@pytest.mark.parametrize('text, words', [
    ('go to cabinet 3.', ['go', 'to', 'cabinet', '3', '.']),
    ("There's nothing special about pen 2.",
     ['There', "'", 's', 'nothing', 'special', 'about', 'pen', '2', '.']),
    ('-= Welcome =-\n\nYou see a X, and a Y.',
     ['-', '=', 'Welcome', '=', '-', 'You', 'see', 'a', 'X', ',', 'and', 'a',
      'Y', '.']),
    ('  look:   around (receptacle)\n',
     ['look', ':', 'around', '(', 'receptacle', ')']),
    ('', []),
])
def test_split_words(text, words):
  assert envs.split_words(text) == words


def test_make_unknown_name_lists_the_known_ones():
  with pytest.raises(ValueError, match='household-small'):
    envs.make('alfworld-typo')


def test_make_applies_the_preset_and_the_overrides():
  env = envs.make('household-small', max_steps=7)
  assert env.name == 'household-small' and env.max_steps == 7
  assert envs.make('household').name == 'household'


def test_timestep_is_immutable():
  ts = base.TimeStep('obs', 'task', ('look',), 0.0, False, False, True, 'key')
  with pytest.raises(AttributeError):
    ts.reward = 1.0


def test_timestep_keys_are_the_text_keys_of_its_state_texts():
  ts = base.TimeStep('obs', 'task', ('look',), 0.0, False, False, True, 'key')
  assert ts.key == ts.true_key == graph.text_key('key')
  noisy = base.TimeStep('obs', 'task', ('look',), 0.0, False, False, True, 'key 9:41',
                        true_state_key='key')
  assert (noisy.key, noisy.true_key) == (graph.text_key('key 9:41'), ts.key)
  assert dataclasses.replace(ts, state_key='other').key == graph.text_key('other')
  with pytest.raises(ValueError, match='a state text must be a str'):
    base.TimeStep('obs', 'task', ('look',), 0.0, False, False, True, None)


@pytest.mark.parametrize('name', ['household-small', 'shop-small', 'household-noisy',
                                  'shop-noisy'])
def test_every_environment_keys_its_states_when_it_builds_them(name):
  """Reset and step (valid and invalid actions) carry `text_key` of the state
  texts, and the keys survive a pickle (worker pools, several processes)."""
  rng = np.random.default_rng(0)
  with envs.make(name) as env:
    seeds = np.repeat(envs.split_seeds('train', 3), 2)
    policy = lambda t, live: [None if ts.done else 'fly' if rng.random() < 0.2
                              else str(rng.choice(ts.admissible)) for ts in live]
    history, _ = play(env, seeds, policy, max_steps=6)
  steps = [ts for step in history for ts in step if ts is not None]
  for ts in steps:
    true_text = ts.state_key if ts.true_state_key is None else ts.true_state_key
    assert (ts.key, ts.true_key) == (graph.text_key(ts.state_key), graph.text_key(true_text))
  assert (name.endswith('noisy')) == any(ts.key != ts.true_key for ts in steps)
  copies = pickle.loads(pickle.dumps(steps))
  assert [(c.key, c.true_key) for c in copies] == [(ts.key, ts.true_key) for ts in steps]


def test_envs_and_household_do_not_import_jax():
  code = ('import sys, g2po_jax.envs, g2po_jax.envs.household; '
          "assert 'jax' not in sys.modules, 'jax was imported'")
  subprocess.run([sys.executable, '-c', code], check=True,
                 cwd=pathlib.Path(__file__).parents[2])
