"""Tests of ALFWorld on its real engine (needs the alfworld extra; `make test`
installs it). Games are generated once per test session, 2 per task type
and split."""

import collections
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from g2po_jax import envs
from g2po_jax.envs import alfworld, alfworld_engine, alfworld_games, base
from tests.envs.common import play

needs_alfworld = pytest.mark.skipif(
    importlib.util.find_spec('alfworld') is None,
    reason="needs the alfworld extra: pip install -e '.[alfworld]'")

PER_TYPE = 2


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """Generated games of both splits (about a minute on 2 cores)."""
  root = str(tmp_path_factory.mktemp('alfworld'))
  for split in ('train', 'eval'):
    alfworld_games.write_games(root, split, PER_TYPE, seed=0, num_workers=2)
  return root


@pytest.fixture(scope='module')
def env(data_dir):
  with alfworld.AlfWorldEnv(data_dir=data_dir, num_workers=2) as e:
    yield e


def _all_seeds(env):
  return [*envs.split_seeds('train', len(env.games('train'))),
          *envs.split_seeds('eval', len(env.games('eval')))]


@needs_alfworld
def test_every_task_type_in_both_splits_on_disjoint_scenes(data_dir):
  scenes = {}
  for split, folder in alfworld_games.SPLIT_DIRS.items():
    games = alfworld.list_games(data_dir, folder)
    counts = collections.Counter(task_type for _, task_type in games)
    assert counts == {t: PER_TYPE for t in alfworld_games.TASK_TYPES}
    scenes[split] = set()
    for game_file, _ in games:
      with open(os.path.join(os.path.dirname(game_file), 'traj_data.json')) as f:
        scenes[split].add(json.load(f)['scene']['scene_num'])
  assert scenes['train'] and scenes['eval']
  assert not scenes['train'] & scenes['eval']
  assert not (set(alfworld_games.split_scenes('train'))
              & set(alfworld_games.split_scenes('eval')))


@needs_alfworld
@pytest.mark.slow
def test_oracle_solves_every_generated_game_and_vocabulary_covers_it(env):
  seeds = _all_seeds(env)
  history, final = play(env, seeds, lambda t, live: env.oracle_actions())
  won = collections.defaultdict(list)
  for i, ts in enumerate(final):
    won[env.task_type(i)].append(ts.won and ts.done)
  assert set(won) == set(alfworld_games.TASK_TYPES)
  for task_type, results in won.items():
    assert np.mean(results) >= 0.95, task_type
  rewards = np.array([[ts.reward if ts else 0.0 for ts in step]
                      for step in history[1:]])                  # [T, B]
  np.testing.assert_array_equal(rewards.sum(0), 1.0)        # once, on the win
  assert env.oracle_actions() == [None] * len(seeds)
  vocab = set(env.vocabulary())
  words = {w for step in history for ts in step if ts is not None
           for text in (ts.observation, ts.task, *ts.admissible)
           for w in base.split_words(text)}
  assert words <= vocab, sorted(words - vocab)


@needs_alfworld
@pytest.mark.slow
def test_copies_agree_across_workers_and_a_second_env_replays_exactly(env, data_dir):
  """Copy 2k of a task lives on worker 0, copy 2k+1 on worker 1: the same
  actions (noisy oracle, nonsense) give identical texts, keys and rewards.
  A separate env (other processes, one worker) replays them exactly."""
  seeds = np.repeat([*envs.split_seeds('train', 3), *envs.split_seeds('eval', 2)], 2)
  rng, log = np.random.default_rng(0), []

  def same_action_per_pair(t, live):
    actions = []
    for ts, a in zip(live[::2], env.oracle_actions()[::2]):
      if a is not None and t % 7 == 3:
        a = 'dance wildly'
      elif a is not None and rng.random() < 0.3:
        a = ts.admissible[rng.integers(len(ts.admissible))]
      actions += [a, a]
    log.append(actions)
    return actions

  expected, _ = play(env, seeds, same_action_per_pair, max_steps=20)
  for step in expected:
    assert step[0::2] == step[1::2]
  with alfworld.AlfWorldEnv(data_dir=data_dir, num_workers=1) as second:
    replayed, _ = play(second, seeds, lambda t, live: log[t], max_steps=20)
  assert replayed == expected


@needs_alfworld
def test_bad_actions_say_nothing_happens_and_keep_the_state(env):
  start = env.reset([0] * 6)
  admissible = start[0].admissible
  go = next(a for a in admissible if a.startswith('go to '))
  out = env.step(['', 'go to ' * 2000, 'ouvrir le réfrigérateur ✓',
                  'take moon from sky', 'put it down', f'  {go.upper()} '])
  for ts in out[:5]:
    assert (ts.observation, ts.valid, ts.reward, ts.done, ts.won) == (
        'Nothing happens.', False, 0.0, False, False)
    assert ts.state_key == start[0].state_key
    assert ts.admissible == admissible and ts.task == start[0].task
  assert out[5].valid and out[5].observation.startswith('You arrive at ')
  # The instances still play on after invalid actions, as the fresh one did.
  assert env.step([go, None, None, None, None, None])[0] == out[5]


@needs_alfworld
@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_batch_completes(data_dir):
  with alfworld.AlfWorldEnv(data_dir=data_dir, num_workers=2) as env:
    seeds = [0, 0, 1, 1]          # copies on worker 0 and worker 1
    live = env.reset(seeds)
    for t in range(12):
      if t in (3, 8):
        victim = env._pool.procs[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(timeout=10)
      actions = env.oracle_actions()
      if all(a is None for a in actions):
        break
      out = env.step(actions)
      assert out[0::2] == out[1::2]
      live = [o if o is not None else ts for o, ts in zip(out, live)]
    assert env._pool.procs[0].pid != victim.pid
    assert all(ts.won for ts in live)


@needs_alfworld
def test_official_layout_directory(data_dir, tmp_path, monkeypatch):
  """A json_2.1.1 tree: found from data_dir or $ALFWORLD_DATA; skips what
  ALFWorld's loader skips."""
  official = tmp_path / 'json_2.1.1'
  for split, folder in (('train', 'train'), ('eval', 'valid_unseen')):
    games = alfworld.list_games(data_dir, folder)[:2]
    for k, (game_file, _) in enumerate(games):
      shutil.copytree(os.path.dirname(game_file),
                      official / folder / f'task-{k}' / 'trial_T0')
  # Skipped: a movable-receptacle task, an unsolvable game.
  shutil.copytree(official / 'train' / 'task-0',
                  official / 'train' / 'pick_and_place_with_movable_recep-1')
  unsolvable = official / 'train' / 'task-1' / 'trial_T0' / 'game.tw-pddl'
  game = json.loads(unsolvable.read_text())
  unsolvable.write_text(json.dumps({**game, 'solvable': False}))
  assert len(alfworld.list_games(str(official), 'train')) == 1
  monkeypatch.setenv('ALFWORLD_DATA', str(tmp_path))
  assert alfworld.resolve_data_dir(None) == str(official)
  with envs.make('alfworld', num_workers=1) as env:
    assert env.data_dir == str(official)
    assert len(env.games('eval')) == 2
    first = env.reset(envs.split_seeds('eval', 2))
    assert all(ts.observation.startswith('-= Welcome to TextWorld, ALFRED! =-')
               for ts in first)
    assert first[0].task in first[0].observation


@needs_alfworld
def test_first_use_generates_the_default_set_once(data_dir, tmp_path, monkeypatch):
  """No data_dir, no $ALFWORLD_DATA: the default set is written to the cache
  on first use (here copied from the session's games) and reused after."""
  calls = []

  def write_games(out, split, per_type, seed, num_workers):
    del seed, num_workers
    calls.append((split, per_type))
    folder = alfworld_games.SPLIT_DIRS[split]
    shutil.copytree(os.path.join(data_dir, folder), os.path.join(out, folder))

  monkeypatch.setattr(alfworld_games, 'write_games', write_games)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  monkeypatch.delenv('ALFWORLD_DATA', raising=False)
  root = alfworld.resolve_data_dir(None)
  assert root == str(tmp_path / 'g2po_jax' / 'alfworld')
  assert calls == list(alfworld.DEFAULT_PER_TYPE.items())
  assert len(alfworld.list_games(root, 'valid_unseen')) == 6 * PER_TYPE
  assert alfworld.resolve_data_dir(None) == root and len(calls) == 2
  assert os.listdir(tmp_path / 'g2po_jax') == ['alfworld']   # no partial left


@needs_alfworld
def test_generation_is_deterministic_from_the_seed():
  def first_game(seed):
    games = (alfworld_games.sample_game('train', 'pick_two_obj_and_place', 0,
                                        seed, attempt) for attempt in range(50))
    game = next(g for g in games if g is not None)
    return alfworld_games._problem('p', game), game.text
  assert first_game(3) == first_game(3)
  assert first_game(3) != first_game(4)


@pytest.mark.parametrize('kwargs, message', [
    (dict(eval_split='test'), 'eval_split'),
    (dict(num_workers=0), 'num_workers'),
])
def test_bad_parameters_raise_before_starting_workers(kwargs, message):
  with pytest.raises(ValueError, match=message):
    alfworld.AlfWorldEnv(**kwargs)


@needs_alfworld
def test_data_dir_without_train_folder_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match='no train/ folder'):
    alfworld.AlfWorldEnv(data_dir=str(tmp_path))


def test_missing_extra_is_a_clear_error(monkeypatch):
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'alfworld' else real(name, *a))
  with pytest.raises(RuntimeError, match=r"pip install -e '\.\[alfworld\]'"):
    alfworld_engine.require_alfworld()
  with pytest.raises(RuntimeError, match=r"pip install -e '\.\[alfworld\]'"):
    envs.make('alfworld')


def test_module_does_not_import_jax():
  code = ('import sys, g2po_jax.envs.alfworld, g2po_jax.envs.alfworld_games; '
          'assert "jax" not in sys.modules')
  subprocess.run([sys.executable, '-c', code], check=True,
                 cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
