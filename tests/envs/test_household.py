"""Tests of the built-in ALFWorld-like household world."""

import collections
import hashlib
import importlib.util
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from g2po_jax import envs
from g2po_jax.envs import household

PRESETS = ('small', 'full')
NOTHING = 'Nothing happens.'
# The real content, as the generator wrote it from the alfworld wheel.
_CONTENT = json.loads(pathlib.Path(household.__file__).with_name(
    'household_content.json').read_text())
_REAL = {s['number']: s for s in _CONTENT['scenes']}


def _run(env, seeds, rng_seed=0, noise=0.3, extra=()):
  """Noisy-oracle episodes; returns every TimeStep, reset included.

  `extra` actions are sent to every instance at step 0 and 1 (then the
  noisy oracle takes over), to mix in invalid and non-admissible input.
  """
  rng = np.random.default_rng(rng_seed)
  live = env.reset(seeds)
  seen = list(live)
  for t in range(env.max_steps):
    oracle = env.oracle_actions()
    actions = []
    for i, ts in enumerate(live):
      if ts.done:
        actions.append(None)
      elif t < 2 and extra:
        actions.append(extra[(i + t) % len(extra)])
      elif rng.random() < noise:
        actions.append(ts.admissible[rng.integers(len(ts.admissible))])
      else:
        actions.append(oracle[i])
    if all(a is None for a in actions):
      break
    out = env.step(actions)
    seen += [ts for ts in out if ts is not None]
    live = [o if o is not None else ts for o, ts in zip(out, live)]
  return seen


def _digest(preset):
  """A fingerprint of many noisy episodes' texts (for cross-process checks)."""
  env = household.HouseholdEnv(preset)
  h = hashlib.sha256()
  for ts in _run(env, list(range(40)) * 2, extra=('look', 'xyzzy', 'help')):
    h.update(repr(ts).encode())
  return h.hexdigest()


def _world(env, i):
  return env._scenes[i], env._worlds[i]


# ----------------------------------------------------------------------------
# Determinism and groups.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('preset', PRESETS)
def test_same_seed_and_actions_give_the_same_texts_and_keys(preset):
  env = household.HouseholdEnv(preset)
  a = _run(env, [3, 7, 11], rng_seed=5)
  b = _run(env, [3, 7, 11], rng_seed=5)
  assert a == b


def test_group_copies_are_identical_and_independent():
  env = household.HouseholdEnv('small')
  first = env.reset([42] * 4)
  assert len(set(first)) == 1
  oracle = env.oracle_actions()[0]
  # Copies 0 and 1 follow the oracle; 2 goes elsewhere; 3 waits.
  other = next(a for a in first[2].admissible
               if a.startswith('go to') and a != oracle)
  out = env.step([oracle, oracle, other, None])
  assert out[0] == out[1]
  assert out[2].state_key != out[0].state_key and out[3] is None
  assert env.step([None, None, None, 'look'])[3].state_key == first[3].state_key


def test_texts_do_not_depend_on_the_process_hash_seed():
  root = pathlib.Path(__file__).parents[2]
  code = ('from tests.envs.test_household import _digest; '
          "print(_digest('small'), _digest('full'))")
  digests = set()
  for hash_seed in ('1', '2'):
    out = subprocess.run([sys.executable, '-c', code], cwd=root, check=True,
                         capture_output=True, text=True,
                         env={'PYTHONHASHSEED': hash_seed, 'PATH': ''})
    digests.add(out.stdout.strip())
  assert digests == {f"{_digest('small')} {_digest('full')}"}


def test_presets_decorrelate_the_same_seed():
  small = household.HouseholdEnv('small').reset(range(20))
  full = household.HouseholdEnv('full').reset(range(20))
  assert sum(s.task == f.task for s, f in zip(small, full)) < 5


def test_eval_tasks_are_unseen_in_training():
  env = household.HouseholdEnv('small')

  def tasks(split):
    env.reset(envs.split_seeds(split, 2000))
    return {(sc.intro, tuple(sorted(zip(sc.onames, w.where))))
            for sc, w in zip(env._scenes, env._worlds)}

  train, evaluation = tasks('train'), tasks('eval')
  assert len(train) == len(evaluation) == 2000
  assert not train & evaluation


def test_task_types_are_drawn_uniformly():
  env = household.HouseholdEnv('small')
  env.reset(range(1200))
  counts = {t: 0 for t in household.TASK_TYPES}
  for i in range(1200):
    counts[env.task_type(i)] += 1
  assert min(counts.values()) > 150, counts


# ----------------------------------------------------------------------------
# The oracle.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('preset', PRESETS)
@pytest.mark.parametrize('task_type', household.TASK_TYPES)
def test_oracle_wins_every_task_on_its_last_step(preset, task_type):
  env = household.HouseholdEnv(preset, task_types=[task_type])
  seeds = envs.split_seeds('train', 40, start=1000)
  env.reset(seeds)
  plans = [len(household._plan(*_world(env, i))) for i in range(len(seeds))]
  steps = np.zeros(len(seeds), int)
  done = np.zeros(len(seeds), bool)
  while not done.all():
    actions = env.oracle_actions()
    assert [a is None for a in actions] == done.tolist()
    for i, ts in enumerate(env.step(actions)):
      if ts is not None:
        steps[i] += 1
        done[i] = ts.done
        assert ts.valid and ts.done == ts.won
        assert ts.reward == (1.0 if ts.won else 0.0)
    assert steps.max() <= max(plans)
  np.testing.assert_array_equal(steps, plans)
  assert {env.task_type(i) for i in range(len(seeds))} == {task_type}


def _signature(w):
  return (w.loc, w.held, tuple(w.where), tuple(w.is_open), tuple(w.flags),
          w.lamp_on)


def _shortest(sc, w, limit):
  """Breadth-first search over every world-changing action (the env's own
  rules): the fewest actions that win, or None if more than `limit`."""
  frontier, seen = [w], {_signature(w)}
  for depth in range(1, limit + 1):
    nxt = []
    for state in frontier:
      for action in state.admissible:
        child = state.copy()
        _, _, changed = household._apply(sc, child, action)
        if not changed:
          continue
        if household._goal_met(sc, child):
          return depth
        sig = _signature(child)
        if sig not in seen:
          seen.add(sig)
          household._refresh(sc, child)
          nxt.append(child)
    frontier = nxt
  return None


def _random_states(preset, num, seed, **kwargs):
  """(scene, world) pairs after 0-8 steps of a 50%-noisy oracle."""
  env = household.HouseholdEnv(preset, **kwargs)
  rng = np.random.default_rng(seed)
  live = env.reset(envs.split_seeds('eval', num, start=seed * num))
  for _ in range(int(rng.integers(0, 9))):
    oracle = env.oracle_actions()
    live = [None if ts is None or ts.done else ts for ts in live]
    out = env.step([None if ts is None else oracle[i] if rng.random() < 0.5
                    else ts.admissible[rng.integers(len(ts.admissible))]
                    for i, ts in enumerate(live)])
    live = [o if o is not None else ts for o, ts in zip(out, live)]
  return [_world(env, i) for i in range(num) if not env._worlds[i].won]


def _check_optimal(states):
  for sc, w in states:
    plan = household._plan(sc, w)
    assert _shortest(sc, w, len(plan)) == len(plan), (sc.task, plan)
    replay = w.copy()
    for action in plan:
      assert not replay.won
      _, valid, changed = household._apply(sc, replay, action)
      assert valid and changed, action
      replay.won = household._goal_met(sc, replay)
      household._refresh(sc, replay)
    assert replay.won


def test_oracle_plans_are_shortest_from_random_states():
  _check_optimal(_random_states('small', 12, seed=0, num_receptacles=6,
                                num_distractors=2))


@pytest.mark.parametrize('task_type, many', [
    ('pick_clean_then_place', lambda sc: len(sc.tools) > 1),   # 2 sinkbasins
    ('look_at_obj_in_light', lambda sc: len(sc.lamps) > 1)])   # 2 lamps
def test_oracle_plans_are_shortest_with_two_tools_or_lamps(task_type, many):
  states = [(sc, w) for seed in range(6)
            for sc, w in _random_states('small', 16, seed=seed,
                                        num_receptacles=6, num_distractors=2,
                                        task_types=[task_type]) if many(sc)]
  assert len(states) >= 5
  _check_optimal(states)


@pytest.mark.slow
@pytest.mark.parametrize('seed', range(1, 9))
@pytest.mark.parametrize('preset, kwargs', [
    ('small', {}), ('full', dict(num_receptacles=9, num_distractors=3))])
def test_oracle_plans_are_shortest_from_many_random_states(preset, kwargs, seed):
  _check_optimal(_random_states(preset, 16, seed=seed, **kwargs))


@pytest.mark.parametrize('preset', PRESETS)
def test_noisy_oracle_recovers_and_wins(preset):
  env = household.HouseholdEnv(preset)
  seen = _run(env, envs.split_seeds('train', 200), noise=0.3)
  wins = sum(ts.won for ts in seen)
  assert wins >= 195                      # a few may run out of steps


# ----------------------------------------------------------------------------
# Actions, wording, keys.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('bad', [
    'xyzzy', '', '   ', 'go to', 'go to nowhere 9', 'put apple 1 in fridge 1',
    'take moon from sky', 'drop', 'wait', 'examine desklamp 1',
    'look around', 'close fridge 1'])
def test_invalid_actions_do_nothing(bad):
  env = household.HouseholdEnv('small')
  (first,) = env.reset([5])
  (ts,) = env.step([bad])
  assert ts.observation == NOTHING and not ts.valid
  assert not ts.done and not ts.won and ts.reward == 0.0
  assert ts.state_key == first.state_key and ts.admissible == first.admissible


def test_actions_are_normalized_before_matching():
  env = household.HouseholdEnv('small')
  (first,) = env.reset([5])
  target = first.admissible[0]
  (ts,) = env.step(['  ' + target.upper().replace(' ', '   ') + ' '])
  assert ts.valid and ts.observation.startswith('You arrive at ')


def _scripted(env, seed, actions):
  env.reset([seed])
  return [env.step([a])[0] for a in actions]


def _find(preset, predicate, **kwargs):
  """The first seed whose scene satisfies `predicate(scene, world)`."""
  env = household.HouseholdEnv(preset, **kwargs)
  for seed in range(500):
    env.reset([seed])
    if predicate(*_world(env, 0)):
      return env, seed
  raise AssertionError('no such scene in 500 seeds')


def test_intro_lists_every_receptacle_sorted_by_type_then_number_down():
  env = household.HouseholdEnv('full')
  (ts,) = env.reset([0])
  m = re.fullmatch(r'-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the '
                   r'middle of a room\. Looking quickly around you, you see '
                   r'(.*)\.\n\nYour task is to: (.*)', ts.observation)
  assert m and m.group(2) == ts.task
  items = m.group(1).split(', ')
  assert items[-1].startswith('and a ')
  names = [i.removeprefix('and ').removeprefix('a ') for i in items]
  assert len(names) == sum(_REAL[_world(env, 0)[0].scene]['receptacles']
                           .values())    # the whole real scene
  keys = [(n.split()[0], -int(n.split()[1])) for n in names]
  assert keys == sorted(keys)
  assert ts.admissible == tuple(sorted({f'go to {n}' for n in names}
                                       | {'help', 'inventory', 'look'}))
  assert ts.state_key == ts.observation + '\n' + '\n'.join(ts.admissible)


def test_closed_receptacles_hide_contents_until_opened():
  env, seed = _find('small', lambda sc, w: any(
      sc.openable[r] and w.contents[r] for r in range(len(sc.names))))
  sc, w = _world(env, 0)
  r = next(r for r in range(len(sc.names)) if sc.openable[r] and w.contents[r])
  name = sc.names[r]
  arrive, opened, closed, again = _scripted(
      env, seed, [f'go to {name}', f'open {name}', f'close {name}',
                  f'examine {name}'])
  assert arrive.observation == f'You arrive at {name}. The {name} is closed.'
  assert not any(a.startswith('take ') for a in arrive.admissible)
  assert f'open {name}' in arrive.admissible
  items = sorted(w.contents[r], key=lambda o: sc.orank[o])
  listed = household._listing([sc.onames[o] for o in items])
  assert opened.observation == (f'You open the {name}. The {name} is open. In '
                                f'it, you see {listed}.')
  assert {f'take {sc.onames[o]} from {name}' for o in items} <= set(
      opened.admissible)
  assert closed.observation == f'You close the {name}.'
  assert again.observation == f'The {name} is closed.'


@pytest.mark.parametrize('names, text', [
    ([], 'nothing'), (['pen 1'], 'a pen 1'),
    (['egg 2', 'egg 1'], 'a egg 2, and a egg 1'),
    (['cd 1', 'mug 3', 'pen 2'], 'a cd 1, a mug 3, and a pen 2')])
def test_listing(names, text):
  assert household._listing(names) == text


def test_heat_take_move_examine_wording_and_grammar():
  env, seed = _find('small', lambda sc, w: True,
                    task_types=['pick_heat_then_place'])
  sc, w = _world(env, 0)
  plan = household._plan(sc, w)
  take = next(a for a in plan if a.startswith('take '))
  obj = take.split(' from ')[0].removeprefix('take ')
  env.reset([seed])
  for action in plan[:plan.index(take) + 1]:
    (ts,) = env.step([action])
  assert ts.observation == f'You pick up the {obj} from the ' \
      f'{take.split(" from ")[1]}.'
  assert not any(a.startswith('take ') for a in ts.admissible)
  assert f'examine {obj}' in ts.admissible
  (ts,) = env.step(['go to microwave 1'])      # closed: heat is still offered
  assert ts.observation == 'You arrive at microwave 1. The microwave 1 is closed.'
  assert f'heat {obj} with microwave 1' in ts.admissible
  assert not any(a.startswith('move ') for a in ts.admissible)
  (ts,) = env.step([f'heat {obj} with microwave 1'])
  assert ts.observation == f'You heat the {obj} using the microwave 1.'
  (ex,) = env.step([f'examine {obj}'])
  vessel = obj.split()[0] in household._VESSELS
  assert ex.observation == (f'This is a normal {obj}. In it, you see nothing.'
                            if vessel else f'This is a hot {obj}.')
  (inv,) = env.step(['inventory'])
  assert inv.observation == f'You are carrying: a {obj}.'
  assert ex.state_key == inv.state_key == ts.state_key


def test_move_only_where_the_held_type_fits():
  env, seed = _find('full', lambda sc, w: True)
  sc, w = _world(env, 0)
  plan = household._plan(sc, w)
  env.reset([seed])
  for action in plan[:[a.startswith('take ') for a in plan].index(True) + 1]:
    env.step([action])
  held = env._worlds[0].held
  for r, name in enumerate(sc.names):
    (ts,) = env.step([f'go to {name}'])
    if ts.observation == NOTHING:        # already there
      continue
    if sc.openable[r]:
      (ts,) = env.step([f'open {name}'])
    can = sc.otype[held] in household._CAN_CONTAIN[sc.rtype[r]]
    assert (f'move {sc.onames[held]} to {name}' in ts.admissible) == can


def test_lamp_rules_and_win_on_arrival_with_the_lamp_on():
  env, seed = _find(
      'small', lambda sc, w: all(w.where[o] != sc.lamp_at for o in sc.targets),
      task_types=['look_at_obj_in_light'])
  sc, w = _world(env, 0)
  lamp, holder = sc.onames[sc.lamp], sc.names[sc.lamp_at]
  env.reset([seed])
  (at,) = env.step([f'go to {holder}'])
  assert lamp in at.observation
  assert f'use {lamp}' in at.admissible
  assert not any(a.startswith(f'take {lamp}') for a in at.admissible)
  (on,) = env.step([f'use {lamp}'])
  assert on.observation == f'You turn on the {lamp}.' and not on.won
  (again,) = env.step([f'use {lamp}'])    # no new effect: same key
  assert again.observation == on.observation and again.valid
  assert again.state_key == on.state_key
  (ts,) = env.step([f'examine {lamp}'])
  assert ts.observation == NOTHING and not ts.valid
  plan = household._plan(*_world(env, 0))
  assert plan[-1] == f'go to {holder}'
  for action in plan:
    (ts,) = env.step([action])
  assert ts.won and ts.reward == 1.0 and ts.observation.startswith(
      f'You arrive at {holder}.')


def test_look_help_and_examine_keep_the_key():
  env = household.HouseholdEnv('small')
  (first,) = env.reset([9])
  (look,) = env.step(['look'])
  assert look.observation == ('You are in the middle of a room. Looking '
                              'quickly around you, you see nothing.')
  (hlp,) = env.step(['help'])
  assert hlp.observation.startswith('Available commands:\n  look:')
  assert hlp.observation.endswith('using a sharp object\n')
  assert len(hlp.observation.splitlines()) == 14
  (inv,) = env.step(['inventory'])
  assert inv.observation == 'You are not carrying anything.'
  assert first.state_key == look.state_key == hlp.state_key == inv.state_key
  (go,) = env.step([first.admissible[0]])
  (look,) = env.step(['look'])
  name = first.admissible[0].removeprefix('go to ')
  assert look.observation == f'You are facing the {name}. Next to it, you ' \
      'see nothing.'
  (ex,) = env.step([f'examine {name}'])
  assert go.observation == f'You arrive at {name}. {ex.observation}'
  assert go.state_key == look.state_key == ex.state_key
  assert go.state_key == go.observation + '\n' + '\n'.join(go.admissible)


def test_admissible_lists_are_sorted_and_unique():
  for ts in _run(household.HouseholdEnv('full'), range(30)):
    assert list(ts.admissible) == sorted(set(ts.admissible))
    assert {'help', 'inventory', 'look'} <= set(ts.admissible)


# ----------------------------------------------------------------------------
# Vocabulary, configuration, input checks.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('preset, kwargs', [
    ('small', {}), ('full', {}),
    ('full', dict(num_distractors=60)),
    ('small', dict(num_receptacles=20)),
    ('small', dict(task_types=['look_at_obj_in_light']))])
def test_vocabulary_covers_every_text(preset, kwargs):
  env = household.HouseholdEnv(preset, **kwargs)
  vocab = env.vocabulary()
  assert vocab == sorted(set(vocab))
  words = set(envs.split_words(household._HELP))
  for ts in _run(env, range(60), noise=0.5,
                 extra=('help', 'inventory', 'look', 'xyzzy')):
    for text in (ts.observation, ts.task, ts.state_key, *ts.admissible):
      words.update(envs.split_words(text))
  assert words <= set(vocab), sorted(words - set(vocab))


def test_small_vocabulary_is_small():
  # Every real type is reachable in small rooms too; only numbers are fewer.
  small = household.HouseholdEnv('small').vocabulary()
  assert len(small) < 200 and set(small) < set(
      household.HouseholdEnv('full').vocabulary())


@pytest.mark.parametrize('kwargs, name', [
    (dict(preset='tiny'), 'preset'),
    (dict(num_receptacles=4), 'num_receptacles'),
    (dict(num_receptacles=100), 'num_receptacles'),
    (dict(num_distractors=-1), 'num_distractors'),
    (dict(task_types=[]), 'task_types'),
    (dict(task_types=['pick_and_plaice']), 'task_types'),
    (dict(max_steps=0), 'max_steps')])
def test_bad_config_names_the_argument(kwargs, name):
  with pytest.raises(ValueError, match=name):
    household.HouseholdEnv(**kwargs)


def test_knobs_size_the_rooms():
  env = household.HouseholdEnv('full', num_receptacles=12, num_distractors=4,
                               task_types='pick_and_place,look_at_obj_in_light')
  env.reset(range(30))
  for i in range(30):
    sc, w = _world(env, i)
    size = sum(_REAL[sc.scene]['receptacles'].values())
    assert len(sc.names) == min(12, size)
    assert len(sc.onames) == 4 + 1 + len(sc.lamps)   # distractors, target
    assert sc.kind in ('pick_and_place', 'look_at_obj_in_light')


def test_bad_step_input():
  env = household.HouseholdEnv('small')
  with pytest.raises(ValueError, match='seeds'):
    env.reset([-3])
  env.reset([1, 2])
  with pytest.raises(ValueError, match='one entry per instance'):
    env.step(['look'])
  with pytest.raises(ValueError, match=r'actions\[1\]'):
    env.step(['look', 3])
  env.reset([1])
  for action in household._plan(*_world(env, 0)):
    env.step([action])
  assert env.oracle_actions() == [None]
  with pytest.raises(ValueError, match='done'):
    env.step(['look'])


# ----------------------------------------------------------------------------
# The content is ALFWorld's: its scenes, types and rules.
# ----------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec('alfworld') is None,
                    reason='needs the alfworld extra')
def test_content_file_matches_the_alfworld_wheel():
  from experiments import make_household_content
  assert _CONTENT == make_household_content.content()


@pytest.fixture(scope='module', params=PRESETS)
def rooms(request):
  env = household.HouseholdEnv(request.param)
  env.reset(envs.split_seeds('train', 600))
  return request.param, list(zip(env._scenes, env._worlds))


def test_every_room_is_drawn_from_one_real_scene_of_its_kind(rooms):
  preset, tasks = rooms
  kinds = collections.defaultdict(list)
  for real in _CONTENT['scenes']:
    kinds[real['room']].append(collections.Counter(real['receptacles']))
  for sc, w in tasks:
    real = _REAL[sc.scene]
    assert sc.room == real['room']
    counts = collections.Counter(sc.rtype)
    assert not counts - collections.Counter(real['receptacles'])
    if preset == 'full':
      assert counts == collections.Counter(real['receptacles'])
    # Hence every room's types fit one real room of one kind: no kitchen
    # receptacles beside bedroom ones.
    assert any(set(counts) <= set(c) for c in kinds[sc.room])
    # Numbers run 1..n within each type.
    for t, n in counts.items():
      assert {name for name in sc.names if name.split()[0] == t} == {
          f'{t} {k}' for k in range(1, n + 1)}
    objects = collections.Counter(sc.otype[o] for o in range(len(sc.otype))
                                  if not sc.is_lamp[o])
    assert set(objects) <= set(real['objects'])
    assert max(objects.values()) <= 3                  # as ALFRED's generator
    assert sorted(sc.otype[o] for o in sc.lamps) == (
        real['lamps'] if set(sc.rtype) & set(_CONTENT['lamp_stands']) else [])
    for o, r in enumerate(w.where):           # where objects start
      if sc.is_lamp[o]:
        assert sc.rtype[r] in _CONTENT['lamp_stands']
      else:
        assert sc.otype[o] in _CONTENT['can_contain'][sc.rtype[r]]


def test_room_sizes_are_real():
  sizes = [sum(s['receptacles'].values()) for s in _CONTENT['scenes']]
  assert (min(sizes), max(sizes)) == (3, 47)      # the alfworld 0.4.2 scenes
  for preset, most in (('small', 7), ('full', max(sizes))):
    env = household.HouseholdEnv(preset)
    env.reset(envs.split_seeds('train', 300))
    got = [len(sc.names) for sc in env._scenes]
    assert min(got) >= min(sizes) and max(got) <= most
  assert max(got) > 30 and np.median(got) < 25     # full: ALFWorld's spread


def test_tasks_only_in_rooms_that_host_them(rooms):
  _, tasks = rooms
  tools = {'pick_heat_then_place': ('microwave', 'heatable'),
           'pick_cool_then_place': ('fridge', 'coolable'),
           'pick_clean_then_place': ('sinkbasin', 'cleanable')}
  for sc, _ in tasks:
    assert sc.room in _CONTENT['task_rooms'][sc.kind]
    if sc.kind in tools:
      tool, able = tools[sc.kind]
      assert tool in sc.rtype and sc.target in _CONTENT[able]
    if sc.kind == 'look_at_obj_in_light':
      assert sc.lamp >= 0 and sc.rtype[sc.lamp_at] in _CONTENT['lamp_stands']
    else:
      assert sc.goal_receps and sc.target in _CONTENT['can_contain'][
          sc.rtype[sc.goal_receps[0]]]


_COMMAND = re.compile(r'(move|heat|cool|clean) (\w+) \d+ (?:to|with) (\w+) \d+')


@pytest.mark.parametrize('preset', PRESETS)
def test_offered_commands_follow_the_real_tables(preset):
  tools = {'heat': ('microwave', 'heatable'), 'cool': ('fridge', 'coolable'),
           'clean': ('sinkbasin', 'cleanable')}
  env = household.HouseholdEnv(preset)
  seen = collections.Counter()
  for ts in _run(env, envs.split_seeds('train', 150), noise=0.5):
    for action in ts.admissible:
      m = _COMMAND.fullmatch(action)
      if not m:
        continue
      verb, obj, recep = m.groups()
      seen[verb] += 1
      if verb == 'move':
        assert obj in _CONTENT['can_contain'][recep], action
      else:
        assert recep == tools[verb][0], action
        assert obj in _CONTENT[tools[verb][1]], action
  assert min(seen.values()) > 20, seen


def test_every_real_type_is_reachable():
  real_r = {t for s in _CONTENT['scenes'] for t in s['receptacles']}
  real_o = {t for s in _CONTENT['scenes'] for t in s['objects'] + s['lamps']}
  assert (len(real_r), len(real_o)) == (25, 56)
  for preset in PRESETS:
    env = household.HouseholdEnv(preset)
    env.reset(envs.split_seeds('train', 2000))
    assert {t for sc in env._scenes for t in sc.rtype} == real_r, preset
    assert {t for sc in env._scenes for t in sc.otype} == real_o, preset
    words = set(env.vocabulary())
    assert real_r | real_o <= words, preset
