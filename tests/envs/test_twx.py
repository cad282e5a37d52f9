"""Tests of the TextWorldExpress adapter (needs Java; `make test` installs it)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from g2po_jax import envs
from g2po_jax.envs import base, twx
from g2po_jax.graph import text_key
from tests.envs.common import play

GAMES = ('cookingworld', 'twc', 'coin')


@pytest.fixture(scope='module')
def game_envs():
  """One two-worker env per game, started on first use (a JVM takes ~1 s)."""
  started = {}

  def get(game):
    if game not in started:
      started[game] = twx.TWXEnv(game=game, num_workers=2)
    return started[game]

  yield get
  for env in started.values():
    env.close()


def _noisy(rng, env, noise=0.3, log=None):
  """Oracle actions, each replaced by a random admissible one w.p. `noise`.

  Appends (oracle actions, chosen actions) of every step to `log` if given.
  """
  def policy(t, live):
    oracle = env.oracle_actions()
    actions = [None if a is None else
               ts.admissible[rng.integers(len(ts.admissible))]
               if rng.random() < noise else a for a, ts in zip(oracle, live)]
    if log is not None:
      log.append((oracle, actions))
    return actions
  return policy


def _children(pid):
  """Pids of the live processes whose parent is `pid` (Linux /proc)."""
  kids = []
  for entry in os.listdir('/proc'):
    try:
      with open(f'/proc/{entry}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
      continue
    if fields[1] == str(pid) and fields[0] != 'Z':
      kids.append(int(entry))
  return kids


def _alive(pid):
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:
    return False


@pytest.mark.parametrize('game', GAMES)
def test_oracle_wins_every_task(game_envs, game):
  env = game_envs(game)
  seeds = np.concatenate([envs.split_seeds('train', 12),
                          envs.split_seeds('eval', 8)])
  history, final = play(env, seeds, lambda t, live: env.oracle_actions())
  assert all(ts.won and ts.done for ts in final)
  assert env.oracle_actions() == [None] * len(seeds)
  rewards = np.array([[ts.reward if ts else 0.0 for ts in step]
                      for step in history[1:]])                  # [T, B]
  np.testing.assert_array_equal(rewards.sum(0), 1.0)        # once, on the win
  assert all(ts is None or ts.valid for step in history for ts in step)


@pytest.mark.parametrize('game', GAMES)
def test_copies_on_different_workers_stay_identical(game_envs, game):
  """Copy 2k of a task lives in worker 0's JVM, copy 2k+1 in worker 1's.

  The same actions (noisy oracle, some nonsense) give the same texts, keys
  and oracle plans in both processes.
  """
  env = game_envs(game)
  seeds = np.repeat([*envs.split_seeds('train', 3),
                     *envs.split_seeds('eval', 2)], 2)
  rng, oracles = np.random.default_rng(0), []

  def same_action_per_pair(t, live):
    oracle = env.oracle_actions()
    oracles.append(oracle)
    actions = []
    for ts, a in zip(live[::2], oracle[::2]):
      if a is not None and t % 5 == 3:
        a = 'dance wildly'
      elif a is not None and rng.random() < 0.3:
        a = ts.admissible[rng.integers(len(ts.admissible))]
      actions += [a, a]
    return actions

  history, _ = play(env, seeds, same_action_per_pair, max_steps=25)
  for step in history:
    assert step[0::2] == step[1::2]
  for oracle in oracles:
    assert oracle[0::2] == oracle[1::2]
  assert len({ts.state_key for ts in history[0]}) == len(seeds) // 2


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='reads /proc')
def test_a_second_env_replays_exactly_then_closes_cleanly(game_envs):
  """Separate env objects (other JVMs, one worker instead of two) agree on
  texts, keys and oracle plans; close() then stops the worker and its JVM."""
  seeds = [*envs.split_seeds('train', 3), *envs.split_seeds('eval', 2)]
  first, log = game_envs('twc'), []
  expected, _ = play(first, seeds, _noisy(np.random.default_rng(0), first,
                                           log=log), max_steps=25)
  second, oracle = twx.TWXEnv(game='twc', num_workers=1), []
  replayed, _ = play(second, seeds, lambda t, live: (
      oracle.append(second.oracle_actions()) or log[t][1]), max_steps=25)
  assert replayed == expected
  assert oracle == [o for o, _ in log]

  worker = second._pool.procs[0].pid
  jvms = _children(worker)
  assert len(jvms) == 1 and _alive(jvms[0])
  second.close()
  second.close()                                         # idempotent
  assert not _alive(worker) and not _alive(jvms[0])
  with pytest.raises(RuntimeError, match='closed'):
    second.reset([0])


def test_batch_size_and_position_do_not_change_a_task(game_envs):
  env = game_envs('cookingworld')
  first = env.reset([7, 8, 9])
  again = env.reset([9, 7])
  assert again == [first[2], first[0]]


def test_invalid_actions_say_nothing_happens_and_keep_the_state(game_envs):
  env = game_envs('cookingworld')
  start = env.reset([3, 3, 3, 3])
  take = next(a for a in start[0].admissible if a.startswith('take '))
  out = env.step(['fly to the moon', '', 'TAKE ' + take[5:], f'  {take} '])
  for ts in out[:3]:
    assert (ts.observation, ts.valid, ts.reward, ts.done, ts.won) == (
        'Nothing happens.', False, 0.0, False, False)
    assert ts.state_key == start[0].state_key
    assert ts.admissible == start[0].admissible
    assert ts.task == start[0].task
  assert out[3].valid and out[3].state_key != start[3].state_key
  # The instances still play on after invalid actions.
  assert env.step([take, None, None, None])[0] == out[3]


def test_no_effect_actions_keep_the_key(game_envs):
  env = game_envs('cookingworld')
  start = env.reset([5])[0]
  for action in ('inventory', 'look around', 'examine stove'):
    ts = env.step([action])[0]
    assert ts.valid and ts.state_key == start.state_key
    assert ts.key == ts.true_key == start.key == text_key(start.state_key)


def test_bad_calls_raise_value_errors(game_envs):
  env = game_envs('cookingworld')
  env.reset([1, 2])
  with pytest.raises(ValueError, match='one entry per instance'):
    env.step(['look around'])
  with pytest.raises(ValueError, match=r'actions\[1\]'):
    env.step(['look around', 3])
  with pytest.raises(ValueError, match='no split'):
    env.reset([-1])
  with pytest.raises(ValueError, match='empty'):
    env.reset([])


def test_stepping_a_finished_instance_raises(game_envs):
  env = game_envs('coin')
  _, final = play(env, [0], lambda t, live: env.oracle_actions())
  assert final[0].done
  with pytest.raises(ValueError, match='instance 0 is done'):
    env.step(['look around'])


def test_train_and_eval_tasks_differ(game_envs):
  """Eval seeds use TWX's 'test' fold: other objects, never a train task."""
  env = game_envs('twc')
  train = env.reset(envs.split_seeds('train', 20))
  evaluation = env.reset(envs.split_seeds('eval', 20))
  assert not {ts.state_key for ts in train} & {ts.state_key for ts in evaluation}


@pytest.mark.parametrize('kwargs, message', [
    (dict(game='zork'), 'game must be one of'),
    (dict(game='coin', num_ingredients=2), "unknown coin parameter 'num_ingredients'"),
    (dict(game='twc', num_locations=4), r'num_locations \(TWX numLocations\)'),
    (dict(game='cookingworld', num_ingredients=True), 'num_ingredients'),
    (dict(game='cookingworld', include_doors=1), 'include_doors must be a bool'),
    (dict(num_workers=0), 'num_workers'),
])
def test_bad_parameters_raise_before_starting_java(kwargs, message):
  with pytest.raises(ValueError, match=message):
    twx.TWXEnv(**kwargs)


def test_missing_java_is_a_clear_error(monkeypatch):
  monkeypatch.setenv('PATH', '')
  with pytest.raises(RuntimeError, match='Java runtime'):
    twx.TWXEnv(game='coin')


def test_vocabulary_covers_every_text(game_envs):
  env = game_envs('cookingworld')
  vocab = env.vocabulary()
  assert vocab == sorted(set(vocab))
  history, _ = play(env, envs.split_seeds('eval', 6, start=100),
                     _noisy(np.random.default_rng(1), env, noise=0.5),
                     max_steps=30)
  words = {w for step in history for ts in step if ts is not None
           for text in (ts.observation, ts.task, *ts.admissible, ts.state_key)
           for w in base.split_words(text)}
  assert words <= set(vocab), sorted(words - set(vocab))


def test_module_does_not_import_jax():
  code = 'import sys, g2po_jax.envs.twx; assert "jax" not in sys.modules'
  subprocess.run([sys.executable, '-c', code], check=True,
                 cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
