"""ALFWorld games made offline from the scene layouts the alfworld wheel ships.

Host only: never imports jax. Writes games in the layout of ALFWorld's
official `json_2.1.1` download, `<split>/<task folder>/<trial>/game.tw-pddl`
beside a `traj_data.json`, so one loader reads both.

What a game is made of, all from the wheel: the receptacles of a scene and
the spot the agent stands at to use each (`alfworld/gen/layouts/
FloorPlan*-openable.json`), the object types present in the scene
(`*-objects.json`), which receptacle holds which object type, which objects
can be cleaned, heated, cooled or switched on (`alfworld.gen.constants`), the
goal formulas and task wordings (`alfworld.gen.goal_library`), and the PDDL
domain and grammar (`alfworld.info`). Object placement is ours (seeded): each
placeable type of the scene gets 1 to 3 instances, each put in a random
receptacle that can hold it; lamps stand on a random table, desk, dresser or
shelf. No instance of the task's object starts in a receptacle of the task's
target type, so no task is solved at the start.

Splits follow ALFWorld's seen / unseen idea: training games use ALFRED's
training scenes (FloorPlan 7-30, 207-230, 307-330, 407-430), evaluation games
its test scenes (1-6, 201-206, 301-306, 401-406), written to `train/` and
`valid_unseen/`. A game is kept only if the engine's planner finds a plan and
that plan wins when played.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing as mp
import os
import shutil
from collections.abc import Sequence

import numpy as np

from g2po_jax.envs import alfworld_engine

TASK_TYPES = ('pick_and_place_simple', 'look_at_obj_in_light',
              'pick_clean_then_place_in_recep', 'pick_heat_then_place_in_recep',
              'pick_cool_then_place_in_recep', 'pick_two_obj_and_place')
SPLIT_DIRS = {'train': 'train', 'eval': 'valid_unseen'}

# Task type -> (the receptacle type that changes the object, the property).
_TOOLS = {'pick_clean_then_place_in_recep': ('SinkBasin', 'Cleanable'),
          'pick_heat_then_place_in_recep': ('Microwave', 'Heatable'),
          'pick_cool_then_place_in_recep': ('Fridge', 'Coolable')}
_LAMPS = ('DeskLamp', 'FloorLamp')
_LAMP_STANDS = ('CoffeeTable', 'Desk', 'DiningTable', 'Dresser', 'Shelf',
                'SideTable', 'TVStand')
_MAX_COPIES = 3            # instances per object type, as ALFRED's generator
_GRID_M = 0.25             # ALFRED's navigation grid step, in metres
_ATTEMPTS = 50             # samples per game before giving up on it


@dataclasses.dataclass(frozen=True)
class Scene:
  """What a FloorPlan holds.

  Attributes:
    number: the FloorPlan number.
    room: 'Kitchen', 'LivingRoom', 'Bedroom' or 'Bathroom'.
    receptacles: (ALFRED id, type, location name) of each fixed receptacle.
    object_types: the pickable object types present that some receptacle of
      the scene can hold, sorted.
    lamp_types: the lamp types present, sorted.
  """
  number: int
  room: str
  receptacles: tuple[tuple[str, str, str], ...]
  object_types: tuple[str, ...]
  lamp_types: tuple[str, ...]


def _constants():
  alfworld_engine.require_alfworld()
  from alfworld.gen import constants
  return constants


def _mangle(name: str) -> str:
  """An ALFRED id as a PDDL name, the way ALFRED's own generator writes it."""
  for old, new in (('-', '_minus_'), ('|', '_bar_'), ('+', '_plus_'),
                   ('.', '_dot_'), (',', '_comma_')):
    name = name.replace(old, new)
  return name


@functools.cache
def load_scene(number: int) -> Scene:
  """Reads FloorPlan `number`'s layout files from the alfworld wheel."""
  c = _constants()
  layouts = os.path.join(os.path.dirname(c.__file__), 'layouts')
  with open(os.path.join(layouts, f'FloorPlan{number}-openable.json')) as f:
    points = json.load(f)
  with open(os.path.join(layouts, f'FloorPlan{number}-objects.json')) as f:
    present = set(json.load(f))
  fixed = c.RECEPTACLES - c.MOVABLE_RECEPTACLES_SET
  receptacles = []
  for rid, (x, z, rotation, horizon) in sorted(points.items()):
    parts = rid.split('|')
    # Basins are parts of sinks and bathtubs: 'Sink|..|SinkBasin'.
    rtype = parts[-1] if parts[-1].endswith('Basin') else parts[0]
    if rtype in fixed:
      location = (f'loc|{round(x / _GRID_M)}|{round(z / _GRID_M)}|'
                  f'{int(rotation) // 90}|{int(horizon)}')
      receptacles.append((rid, rtype, location))
  rtypes = {r[1] for r in receptacles}
  holdable = {o for r in rtypes for o in c.VAL_RECEPTACLE_OBJECTS.get(r, ())}
  objects = (c.OBJECTS_SET - fixed) & present & holdable
  room = next(name for name, numbers in c.SCENE_TYPE.items() if number in numbers)
  return Scene(number, room, tuple(receptacles),
               tuple(sorted(objects - set(_LAMPS))),
               tuple(sorted(set(_LAMPS) & present)))


def split_scenes(split: str) -> tuple[int, ...]:
  """The FloorPlans of a split: ALFRED's training or test scenes."""
  c = _constants()
  numbers = {'train': c.TRAIN_SCENE_NUMBERS, 'eval': c.TEST_SCENE_NUMBERS}[split]
  layouts = os.path.join(os.path.dirname(c.__file__), 'layouts')
  return tuple(n for n in sorted(numbers)
               if os.path.exists(os.path.join(layouts, f'FloorPlan{n}-openable.json')))


@dataclasses.dataclass(frozen=True)
class Task:
  """What to do: the goal's parameters, as in ALFRED's `pddl_params`."""
  task_type: str
  object_target: str
  parent_target: str         # '' for look_at_obj_in_light
  toggle_target: str         # '' unless look_at_obj_in_light


@dataclasses.dataclass(frozen=True)
class Game:
  """A sampled game: where, what to do, the task's words, what lies where."""
  scene: Scene
  task: Task
  text: str
  placed: tuple[tuple[str, str, str], ...]   # (object id, type, receptacle id)


def _sample_task(task_type: str, scene: Scene,
                 rng: np.random.Generator) -> Task | None:
  """A task this scene can host, or None."""
  c = _constants()
  if task_type not in c.GOALS_VALID or scene.room not in c.GOALS_VALID[task_type]:
    return None
  rtypes = sorted({r[1] for r in scene.receptacles})
  if task_type == 'look_at_obj_in_light':
    if (not scene.lamp_types or not scene.object_types
        or not set(rtypes) & set(_LAMP_STANDS)):
      return None
    return Task(task_type, str(rng.choice(scene.object_types)), '',
                str(rng.choice(scene.lamp_types)))
  objects = list(scene.object_types)
  tool = _TOOLS.get(task_type)
  if tool is not None:
    if tool[0] not in rtypes:
      return None
    objects = [o for o in objects if o in c.VAL_ACTION_OBJECTS[tool[1]]]
    rtypes = [r for r in rtypes if r != tool[0]]
  pairs = [(o, r) for o in objects for r in rtypes
           if o in c.VAL_RECEPTACLE_OBJECTS.get(r, ())]
  if not pairs:
    return None
  obj, recep = pairs[rng.integers(len(pairs))]
  return Task(task_type, obj, recep, '')


def _task_text(task: Task, rng: np.random.Generator) -> str:
  from alfworld.gen import goal_library
  templates = goal_library.gdict[task.task_type]['templates']
  return templates[rng.integers(len(templates))].format(
      obj=task.object_target.lower(), recep=task.parent_target.lower(),
      toggle=task.toggle_target.lower(), mrecep='')


def _place_objects(task: Task, scene: Scene, rng: np.random.Generator):
  """(object id, type, receptacle id) of every object of a new game."""
  c = _constants()
  placed = []
  for otype in scene.object_types:
    low = 2 if (otype == task.object_target and
                task.task_type == 'pick_two_obj_and_place') else 1
    homes = [r for r in scene.receptacles
             if otype in c.VAL_RECEPTACLE_OBJECTS.get(r[1], ())
             and not (otype == task.object_target and r[1] == task.parent_target)]
    if not homes:
      continue
    for k in range(rng.integers(low, _MAX_COPIES + 1)):
      placed.append((f'{otype}|{k + 1}', otype, homes[rng.integers(len(homes))][0]))
  stands = [r for r in scene.receptacles if r[1] in _LAMP_STANDS]
  for lamp in scene.lamp_types if stands else ():
    placed.append((f'{lamp}|1', lamp, stands[rng.integers(len(stands))][0]))
  return placed


def _problem(name: str, game: Game) -> str:
  """The PDDL problem of a game: the scene, the objects, the goal."""
  c = _constants()
  task, scene, placed = game.task, game.scene, game.placed
  from alfworld.gen import goal_library
  m = _mangle
  location = {rid: m(loc) for rid, _, loc in scene.receptacles}
  otypes = sorted({o[1] for o in placed})
  rtypes = sorted({r[1] for r in scene.receptacles})
  start = 'loc_bar_start'       # a spot apart from every receptacle's
  objects = (['agent1 - agent']
             + [f'{m(o)} - object' for o, _, _ in placed]
             + [f'{m(r)} - receptacle' for r, _, _ in scene.receptacles]
             + [f'{l} - location' for l in sorted({start, *location.values()})]
             + [f'{t}Type - otype' for t in otypes]
             + [f'{t}Type - rtype' for t in rtypes])
  init = [f'(atLocation agent1 {start})']
  for rid, rtype, _ in scene.receptacles:
    init += [f'(receptacleType {m(rid)} {rtype}Type)',
             f'(receptacleAtLocation {m(rid)} {location[rid]})']
    if rtype in c.OPENABLE_CLASS_SET:
      init.append(f'(openable {m(rid)})')
  properties = {'cleanable': 'Cleanable', 'heatable': 'Heatable',
                'coolable': 'Coolable', 'sliceable': 'Sliceable'}
  for oid, otype, rid in placed:
    o = m(oid)
    init += [f'(objectType {o} {otype}Type)', f'(inReceptacle {o} {m(rid)})',
             f'(objectAtLocation {o} {location[rid]})']
    if otype in _LAMPS:
      init.append(f'(toggleable {o})')
      continue
    init.append(f'(pickupable {o})')
    init += [f'({p} {o})' for p, group in properties.items()
             if otype in c.VAL_ACTION_OBJECTS[group]]
    if otype in c.MOVABLE_RECEPTACLES_SET:
      init.append(f'(isReceptacleObject {o})')
  init += [f'(canContain {r}Type {o}Type)' for r in rtypes for o in otypes
           if o in c.VAL_RECEPTACLE_OBJECTS.get(r, ())]
  goal = goal_library.gdict[task.task_type]['pddl'].format(
      obj=task.object_target, recep=task.parent_target,
      toggle=task.toggle_target, mrecep='')
  # The goal library writes typed variables with '#' and closes the define.
  return (f'(define (problem plan_{name})\n(:domain alfred)\n(:objects\n  '
          + '\n  '.join(objects) + '\n)\n(:init\n  ' + '\n  '.join(init)
          + '\n)\n' + goal.replace('#', '-'))


def _write_game(directory: str, name: str, game: Game) -> str:
  """Writes game.tw-pddl and traj_data.json; returns the game file's path."""
  task, scene = game.task, game.scene
  from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH
  os.makedirs(directory, exist_ok=True)
  with open(ALFRED_PDDL_PATH) as f:
    domain = f.read()
  with open(ALFRED_TWL2_PATH) as f:
    grammar = f.read().replace('UNKNOWN GOAL', game.text)
  data = {'pddl_domain': domain, 'grammar': grammar,
          'pddl_problem': _problem(name, game), 'solvable': None}
  traj = {'task_id': name, 'task_type': task.task_type,
          'scene': {'floor_plan': f'FloorPlan{scene.number}',
                    'scene_num': scene.number},
          'pddl_params': {'object_target': task.object_target,
                          'parent_target': task.parent_target,
                          'toggle_target': task.toggle_target,
                          'mrecep_target': '', 'object_sliced': False},
          'turk_annotations': {'anns': [{'task_desc': game.text}]}}
  path = os.path.join(directory, 'game.tw-pddl')
  with open(path, 'w') as f:
    json.dump(data, f)
  with open(os.path.join(directory, 'traj_data.json'), 'w') as f:
    json.dump(traj, f, indent=1)
  return path


def _solved_by_plan(engine: alfworld_engine.Engine, path: str) -> list[str]:
  """The engine's plan for the game at `path` if playing it wins, else []."""
  engine.reset(path, seed=0)
  plan = engine.plan()
  for command in plan:
    if command not in engine.admissible:
      return []
    _, _, won = engine.step(command)
    if won:
      return plan
  return []


def sample_game(split: str, task_type: str, index: int, seed: int,
                attempt: int) -> Game | None:
  """Try `attempt` at game `index` of (split, task type); None if the drawn
  scene cannot host the task type. A pure function of its arguments."""
  rng = np.random.default_rng([seed, list(SPLIT_DIRS).index(split),
                               TASK_TYPES.index(task_type), index, attempt])
  scenes = split_scenes(split)
  scene = load_scene(int(scenes[rng.integers(len(scenes))]))
  task = _sample_task(task_type, scene, rng)
  if task is None:
    return None
  placed = tuple(_place_objects(task, scene, rng))
  return Game(scene, task, _task_text(task, rng), placed)


def _make_one(args: tuple[str, str, str, int, int]) -> str | None:
  """Writes game `index` of (split, task type); returns its path or None."""
  out, split, task_type, index, seed = args
  for attempt in range(_ATTEMPTS):
    game = sample_game(split, task_type, index, seed, attempt)
    if game is None:
      continue
    target = game.task.parent_target or game.task.toggle_target
    folder = (f'{task_type}-{game.task.object_target}-None-{target}-'
              f'{game.scene.number}')
    directory = os.path.join(out, SPLIT_DIRS[split], folder, f'trial_{index:05d}')
    path = _write_game(directory, f'{split}_{task_type}_{index}', game)
    plan = _solved_by_plan(_engine(), path)
    if plan:
      with open(path) as f:
        data = json.load(f)
      data.update(solvable=True, walkthrough=plan)
      with open(path, 'w') as f:
        json.dump(data, f)
      return path
    shutil.rmtree(directory)
  return None


@functools.cache
def _engine() -> alfworld_engine.Engine:
  """One engine per (generator) process."""
  return alfworld_engine.Engine()


def write_games(out: str, split: str, per_type: int, seed: int = 0,
                task_types: Sequence[str] = TASK_TYPES,
                num_workers: int = 1) -> list[str]:
  """Writes `per_type` solvable games of each task type for one split.

  Args:
    out: the data directory; games go under `out/train` or `out/valid_unseen`.
    split: 'train' or 'eval' (disjoint scenes).
    per_type: games per task type.
    seed: the generator's seed; the same seed writes the same games.
    task_types: which task types (default: all six).
    num_workers: processes checking games with the engine's planner.
  Returns:
    The paths of the games written, sorted.
  Raises:
    ValueError: unknown split or task type, or per_type < 1.
    RuntimeError: the alfworld extra is missing, or a game could not be made.
  """
  if split not in SPLIT_DIRS:
    raise ValueError(f"split must be 'train' or 'eval'; got {split!r}.")
  unknown = [t for t in task_types if t not in TASK_TYPES]
  if unknown:
    raise ValueError(f'unknown task types {unknown}; choose from {TASK_TYPES}.')
  if per_type < 1:
    raise ValueError(f'per_type must be >= 1; got {per_type}.')
  alfworld_engine.require_alfworld()
  jobs = [(out, split, t, i, seed) for t in task_types for i in range(per_type)]
  if num_workers > 1:
    with mp.get_context('spawn').Pool(num_workers) as pool:
      paths = pool.map(_make_one, jobs, chunksize=1)
  else:
    paths = [_make_one(job) for job in jobs]
  failed = [job[2:4] for job, path in zip(jobs, paths) if path is None]
  if failed:
    raise RuntimeError(f'no solvable game found in {_ATTEMPTS} samples for '
                       f'(task type, index) {failed}.')
  return sorted(paths)
