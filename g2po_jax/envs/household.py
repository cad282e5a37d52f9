"""An ALFWorld-like household world, pure Python. Host only: never imports jax.

One room of ALFWorld holds numbered receptacles (`cabinet 3`, `countertop 1`,
`fridge 1`, ...), each at its own spot, and typed, numbered objects. The
content is ALFWorld's, read from the alfworld wheel by
experiments/make_household_content.py into household_content.json (this
module never imports alfworld): each task is drawn in one of ALFWorld's 120
scenes (kitchens, living rooms, bedrooms, bathrooms: 3 to 47 receptacles of
25 types, 54 object types, desk and floor lamps), and objects go where
ALFWorld's can-contain table allows. Openable receptacles (cabinet, drawer,
fridge, microwave, safe) start closed and hide their contents.

The wording and rules are ALFWorld's (the alfworld 0.4.2 engine), so prompts,
tokenizers and policies carry over: `go to R`, `open R`, `close R`,
`take O from R`, `move O to R`, `heat O with microwave 1`,
`cool O with fridge 1`, `clean O with sinkbasin 1`, `use desklamp 1`,
`examine X`, `look`, `inventory`, `help`. Heat, cool and clean work on
ALFWorld's heatable, coolable and cleanable types, at a microwave, fridge or
sinkbasin. The agent holds at most one object. Any action that is not
admissible answers `Nothing happens.` and changes nothing. Lists are sorted by
type name, then by number descending.

Tasks (one per seed, type drawn uniformly from the enabled ones, then a scene
that can host it, as in ALFWorld: heat and cool in kitchens, clean in kitchens
and bathrooms, look_at in living rooms and bedrooms with a lamp):
pick_and_place ("put a mug in shelf."), pick_clean_then_place,
pick_heat_then_place, pick_cool_then_place ("put a cool apple in
countertop."), look_at_obj_in_light ("look at book under the desklamp.") and
pick_two_obj_and_place ("put two cd in drawer."). Goals name types: any
object of the type in any receptacle of the type (both in the same one for
pick_two). The win lands on the step that reaches the goal; reward is 1.0
there and 0.0 elsewhere, and done == won. Tasks are a pure function of
(preset, seed); seeds are not tied to scenes (both splits draw from all 120).

State key (spec section 12): after an action that changes the world, the key
is the observation, a newline, and the admissible actions one per line (they
are sorted). An action that leaves the world as it was keeps the previous key:
every invalid action (`Nothing happens.`), and also `look`, `inventory`,
`examine`, `help`, and a `use`, `heat`, `cool` or `clean` with no new effect.
These are self-loops in the state graph. Measured with 8 attempts per task by
a noisy oracle (30% random actions, 128 tasks), giving them keys of their own
instead would split world states over several nodes: visits per node 4.7 ->
3.3 and single-visit steps 8% -> 17% on household-small, 3.3 -> 3.0 and
18% -> 22% on household (measured on the content before it followed
ALFWorld's scenes).

The oracle (`oracle_actions`) replans from the current state, so it also
serves as a noisy oracle. Its plans are shortest: it knows where every object
is and compares every plan shape that can win (free the hand, take a target,
treat it, put it in a goal receptacle or carry it to the lamp), which tests
check against breadth-first search over the full state.

Presets ('small' is household-small, 'full' is household; keywords override).
Receptacles and objects per room (min / median / max), oracle plan lengths
and admissible actions at the start, over 1000 training seeds:

  preset  receptacles  distractors  objects       max_steps  oracle steps
  small   3 / 7 / 7    3            4 / 4 / 7     25         3-11 (mean 6.2)
  full    3 / 15 / 47  30           21 / 31 / 34  50         3-11 (mean 6.1)

  preset  admissible at the start (mean)  vocabulary
  small   9.9                             181 words
  full    20.5                            202 words

A full room is the whole scene (ALFWorld's sizes; the median is above the
scenes' 12 because heat and cool tasks only occur in kitchens, the largest
rooms). A small room keeps 7 of the scene's receptacles (all of a smaller
scene), always those the task needs. Both presets reach every real type (the
small vocabulary lacks only the large numbers). Objects: the task's, then
distractors of the scene's types (at most 3 of a type, as ALFRED's
generator), then one of each lamp type of the scene on a desk, dresser,
shelf, table or TV stand. The oracle knows where things are, so its plans are
as short in the full rooms as in the small ones; an agent must search.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib.resources
import itertools
import json
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from g2po_jax.envs import base

TASK_TYPES = (
    'pick_and_place',
    'pick_clean_then_place',
    'pick_heat_then_place',
    'pick_cool_then_place',
    'look_at_obj_in_light',
    'pick_two_obj_and_place',
)

# ----------------------------------------------------------------------------
# The world's tables, from ALFWorld (household_content.json, written by
# experiments/make_household_content.py from the alfworld wheel).
# ----------------------------------------------------------------------------


class _Room(NamedTuple):
  """One of ALFWorld's scenes (an AI2-THOR FloorPlan)."""
  number: int                              # the FloorPlan number
  kind: str                                # kitchen, livingroom, bedroom, bathroom
  receptacles: tuple[tuple[str, int], ...]  # (type, count), by type
  objects: tuple[str, ...]                 # the pickable object types present
  lamps: tuple[str, ...]                   # desklamp and/or floorlamp, or none


def _load_content() -> dict:
  text = importlib.resources.files(__package__).joinpath(
      'household_content.json').read_text()
  return json.loads(text)


_CONTENT = _load_content()
_ROOMS = tuple(_Room(s['number'], s['room'], tuple(s['receptacles'].items()),
                     tuple(s['objects']), tuple(s['lamps']))
               for s in _CONTENT['scenes'])
# Receptacle type -> the object types it can hold (ALFWorld's canContain).
_CAN_CONTAIN = {r: frozenset(o) for r, o in _CONTENT['can_contain'].items()}
_OPENABLE = frozenset(_CONTENT['openable'])
_LAMP_STANDS = frozenset(_CONTENT['lamp_stands'])
# Movable receptacles: ALFWorld describes them as "normal" whatever was done.
_VESSELS = frozenset(_CONTENT['movable'])
_TASK_ROOMS = {k: frozenset(v) for k, v in _CONTENT['task_rooms'].items()}
_MAX_COPIES = 3        # instances of one object type, as ALFRED's generator
_MAX_ROOM = max(sum(n for _, n in room.receptacles) for room in _ROOMS)

_HOT, _COLD, _CLEAN = 1, 2, 4


class _Treatment(NamedTuple):
  tool: str                 # the receptacle type that does it
  works_on: frozenset       # object types it applies to
  sets: int                 # flag bits it sets ...
  clears: int               # ... and clears


# As ALFWorld's PDDL: HeatObject needs a microwave, CoolObject a fridge,
# CleanObject a sinkbasin (not a bathtubbasin).
_TREATMENTS = {
    'heat': _Treatment('microwave', frozenset(_CONTENT['heatable']), _HOT, _COLD),
    'cool': _Treatment('fridge', frozenset(_CONTENT['coolable']), _COLD, _HOT),
    'clean': _Treatment('sinkbasin', frozenset(_CONTENT['cleanable']), _CLEAN, 0),
}
_TOOL_VERB = {t.tool: verb for verb, t in _TREATMENTS.items()}
_TASK_VERB = {'pick_clean_then_place': 'clean', 'pick_heat_then_place': 'heat',
              'pick_cool_then_place': 'cool'}


def _pairs(room: _Room, kind: str) -> list[tuple[str, str]]:
  """(target type, goal type) pairs of the task types this room can host.

  As ALFWorld's generator: look_at_obj_in_light pairs any object type of the
  scene with a lamp of the scene (which needs a lamp stand); the others pair
  an object type (heatable, coolable or cleanable for those tasks, and the
  room has the tool) with a receptacle type that can hold it, not the tool,
  and the object type must fit elsewhere too (no target starts in a goal
  receptacle). Only the room kinds ALFRED poses the task in host it.
  """
  if room.kind not in _TASK_ROOMS[kind]:
    return []
  types = [t for t, _ in room.receptacles]
  if kind == 'look_at_obj_in_light':
    if not _LAMP_STANDS & set(types):
      return []
    return [(o, lamp) for o in room.objects for lamp in room.lamps]
  verb = _TASK_VERB.get(kind)
  if verb and _TREATMENTS[verb].tool not in types:
    return []
  able = _TREATMENTS[verb].works_on if verb else frozenset(room.objects)
  tool = _TREATMENTS[verb].tool if verb else None
  return [(o, y) for o in room.objects if o in able for y in types
          if y != tool and o in _CAN_CONTAIN[y]
          and any(o in _CAN_CONTAIN[t] for t in types if t != y)]


@functools.cache
def _hosts(kind: str) -> tuple[int, ...]:
  """Indices into _ROOMS of the rooms that can host task type `kind`."""
  return tuple(i for i, room in enumerate(_ROOMS) if _pairs(room, kind))


# ----------------------------------------------------------------------------
# Texts, as format strings (vocabulary() reads its words from these).
# ----------------------------------------------------------------------------

_INTRO = ('-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a '
          'room. Looking quickly around you, you see {}.\n\nYour task is to: {}')
_NOTHING = 'Nothing happens.'
_ARRIVE = 'You arrive at {}. {}'
_CLOSED = 'The {} is closed.'
_OPEN_VIEW = 'The {} is open. In it, you see {}.'
_SURFACE_VIEW = 'On the {}, you see {}.'
_OPENED = 'You open the {}. {}'
_CLOSED_IT = 'You close the {}.'
_TAKEN = 'You pick up the {} from the {}.'
_MOVED = 'You move the {} to the {}.'
_TREATED = {'heat': 'You heat the {} using the {}.',
            'cool': 'You cool the {} using the {}.',
            'clean': 'You clean the {} using the {}.'}
_LAMP_ON = 'You turn on the {}.'
_LOOK_MIDDLE = ('You are in the middle of a room. Looking quickly around you, '
                'you see nothing.')
_LOOK_AT = 'You are facing the {}. Next to it, you see nothing.'
_CARRYING = 'You are carrying: a {}.'
_EMPTY_HANDS = 'You are not carrying anything.'
_PLAIN = "There's nothing special about {}."
_NORMAL = 'This is a normal {}. In it, you see nothing.'
# examine text for (hot, cold, clean) flags
_FLAGGED = {_HOT: 'This is a hot {}.', _COLD: 'This is a cold {}.',
            _CLEAN: 'This is a clean {}.',
            _HOT | _CLEAN: 'This is a hot and clean {}.',
            _COLD | _CLEAN: 'This is a cool and clean {}.'}
_HELP = (
    'Available commands:\n'
    '  look:                             look around your current location\n'
    '  inventory:                        check your current inventory\n'
    '  go to (receptacle):               move to a receptacle\n'
    '  open (receptacle):                open a receptacle\n'
    '  close (receptacle):               close a receptacle\n'
    '  take (object) from (receptacle):  take an object from a receptacle\n'
    '  move (object) to (receptacle):  place an object in or on a receptacle\n'
    '  examine (something):              examine a receptacle or an object\n'
    '  use (object):                     use an object\n'
    '  heat (object) with (receptacle):  heat an object using a receptacle\n'
    '  clean (object) with (receptacle): clean an object using a receptacle\n'
    '  cool (object) with (receptacle):  cool an object using a receptacle\n'
    '  slice (object) with (object):     slice an object using a sharp object\n')
_TASK_TEXTS = {
    'pick_and_place': ('put a {} in {}.', 'put some {} on {}.'),
    'pick_clean_then_place': ('put a clean {} in {}.',
                              'clean some {} and put it in {}.'),
    'pick_heat_then_place': ('put a hot {} in {}.',
                             'heat some {} and put it in {}.'),
    'pick_cool_then_place': ('put a cool {} in {}.',
                             'cool some {} and put it in {}.'),
    'look_at_obj_in_light': ('look at {} under the {}.',
                             'examine the {} with the {}.'),
    'pick_two_obj_and_place': ('put two {} in {}.',
                               'find two {} and put them in {}.'),
}
_GO, _OPEN, _CLOSE, _EXAMINE = 'go to {}', 'open {}', 'close {}', 'examine {}'
_TAKE, _MOVE, _TREAT, _USE = ('take {} from {}', 'move {} to {}',
                              '{} {} with {}', 'use {}')
_LIST_WORDS = 'a {}, a {}, and a {}'


def _listing(names: Sequence[str]) -> str:
  """ALFWorld's list: 'nothing', 'a X', 'a X, and a Y', 'a X, a Y, and a Z'."""
  if not names:
    return 'nothing'
  if len(names) == 1:
    return f'a {names[0]}'
  return ', '.join(f'a {n}' for n in names[:-1]) + f', and a {names[-1]}'


# ----------------------------------------------------------------------------
# Configuration and presets.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Config:
  """Everything that shapes the rooms of one environment."""
  name: str
  salt: int                     # decorrelates presets that share task seeds
  # Receptacles per room: None keeps the drawn scene whole (ALFWorld's
  # sizes); n keeps n of a larger scene's, always those the task needs.
  num_receptacles: int | None
  num_distractors: int
  task_types: tuple[str, ...]
  max_steps: int


_MIN_ROOM = 5     # the task needs at most 4: home, goal or lamp, tool, ...
_PRESETS = {
    'small': _Config(name='household-small', salt=0x5A11, num_receptacles=7,
                     num_distractors=3, task_types=TASK_TYPES, max_steps=25),
    'full': _Config(name='household', salt=0xF011, num_receptacles=None,
                    num_distractors=30, task_types=TASK_TYPES, max_steps=50),
}


def _configure(preset: str, num_receptacles: int | None,
               num_distractors: int | None, task_types: Sequence[str] | None,
               max_steps: int | None) -> _Config:
  """The preset with the given overrides, validated."""
  if preset not in _PRESETS:
    raise ValueError(f'preset must be one of {sorted(_PRESETS)}; got {preset!r}.')
  cfg = _PRESETS[preset]
  if num_receptacles is not None:
    if (not isinstance(num_receptacles, int)
        or not _MIN_ROOM <= num_receptacles <= _MAX_ROOM):
      raise ValueError(f'num_receptacles must be an int in [{_MIN_ROOM}, '
                       f'{_MAX_ROOM}] (ALFWorld\'s largest room); got '
                       f'{num_receptacles!r}.')
    cfg = dataclasses.replace(cfg, num_receptacles=num_receptacles)
  if num_distractors is not None:
    if not isinstance(num_distractors, int) or num_distractors < 0:
      raise ValueError(f'num_distractors must be an int >= 0; got '
                       f'{num_distractors!r}.')
    cfg = dataclasses.replace(cfg, num_distractors=num_distractors)
  if task_types is not None:
    if isinstance(task_types, str):
      task_types = task_types.split(',')
    unknown = [t for t in task_types if t not in TASK_TYPES]
    if unknown or not task_types:
      raise ValueError(f'task_types must be a non-empty list drawn from '
                       f'{TASK_TYPES}; got {task_types!r}.')
    cfg = dataclasses.replace(cfg, task_types=tuple(task_types))
  if max_steps is not None:
    if not isinstance(max_steps, int) or max_steps < 1:
      raise ValueError(f'max_steps must be an int >= 1; got {max_steps!r}.')
    cfg = dataclasses.replace(cfg, max_steps=max_steps)
  return cfg


# ----------------------------------------------------------------------------
# A task instance: the static scene and the mutable world.
# ----------------------------------------------------------------------------


class _Scene:
  """What never changes within an episode: names, rules, the task."""

  __slots__ = (
      'room', 'scene', 'names', 'rtype', 'openable', 'accepts', 'tool', 'goto',
      'examine', 'open', 'close', 'onames', 'otype', 'orank', 'lamps',
      'is_lamp', 'lamp', 'lamp_at', 'kind', 'target', 'flag', 'verb', 'tools',
      'targets', 'goal_receps', 'task', 'intro')

  room: str                        # the room kind (kitchen, bathroom, ...)
  scene: int                       # the ALFWorld FloorPlan it is drawn from
  names: tuple[str, ...]           # [R] receptacle names, in listing order
  rtype: tuple[str, ...]           # [R]
  openable: tuple[bool, ...]       # [R]
  accepts: tuple[frozenset, ...]   # [R] object types each can hold
  tool: tuple[str | None, ...]     # [R] 'heat', 'cool', 'clean' or None
  goto: tuple[str, ...]            # [R] 'go to R' (and so on below)
  examine: tuple[str, ...]
  open: tuple[str, ...]
  close: tuple[str, ...]
  onames: tuple[str, ...]          # [O] object names
  otype: tuple[str, ...]           # [O]
  orank: tuple[int, ...]           # [O] position in listing order
  lamps: tuple[int, ...]           # the lamps' object indices (maybe none)
  is_lamp: tuple[bool, ...]        # [O]
  lamp: int                        # the task's lamp (look_at), else -1
  lamp_at: int                     # the receptacle it stands on, else -1
  kind: str                        # task type
  target: str                      # object type the task is about
  flag: int                        # flags the target must have (0: none)
  verb: str | None                 # 'heat', 'cool', 'clean' or None
  tools: tuple[int, ...]           # receptacles of the verb's tool type
  targets: tuple[int, ...]         # objects of the target type
  goal_receps: tuple[int, ...]     # receptacles of the goal type (place tasks)
  task: str
  intro: str


class _World:
  """What the agent's actions change, plus caches derived from it."""

  __slots__ = ('loc', 'held', 'where', 'contents', 'is_open', 'flags',
               'lamp_on', 'won', 'ops', 'admissible', 'key', 'plan')

  def __init__(self, where: list[int], contents: list[list[int]],
               num_receptacles: int):
    self.loc = -1                        # -1: the middle of the room
    self.held = -1                       # object index or -1
    self.where = where                   # [O] receptacle of each object, -1 held
    self.contents = contents             # [R] object indices in each
    self.is_open = [False] * num_receptacles
    self.flags = [0] * len(where)        # [O] _HOT | _COLD | _CLEAN bits
    self.lamp_on: frozenset[int] = frozenset()   # lamps turned on
    self.won = False
    self.ops: dict[str, tuple] = {}      # admissible action -> operation
    self.admissible: tuple[str, ...] = ()
    self.key = ''
    self.plan: list[str] | None = None   # oracle plan, next action last

  def copy(self) -> _World:
    w = _World(list(self.where), [list(c) for c in self.contents],
               len(self.is_open))
    w.loc, w.held, w.lamp_on, w.won = self.loc, self.held, self.lamp_on, self.won
    w.is_open, w.flags = list(self.is_open), list(self.flags)
    # ops is replaced, never mutated, by _refresh: sharing it is safe.
    w.ops, w.admissible, w.key = self.ops, self.admissible, self.key
    w.plan = None if self.plan is None else list(self.plan)
    return w


def _make_task(cfg: _Config, seed: int) -> tuple[_Scene, _World]:
  """Builds the room and task of one seed, a pure function of (cfg, seed).

  Draws the task type, then one of ALFWorld's scenes that can host it, then
  the task's object and goal (as ALFWorld's generator does), then the room:
  the scene's receptacles, or `cfg.num_receptacles` of them that include
  what the task needs. Objects go where the can-contain table allows; the
  task's object never starts in a goal receptacle.
  """
  rng = np.random.default_rng([cfg.salt, seed])

  def pick(seq):
    return seq[int(rng.integers(len(seq)))]

  kind = pick(cfg.task_types)
  verb = _TASK_VERB.get(kind)
  room = _ROOMS[pick(_hosts(kind))]
  target, goal = pick(_pairs(room, kind))
  task = pick(_TASK_TEXTS[kind]).format(target, goal)

  # The room: every receptacle of the scene, or a subset keeping one of each
  # that the task needs (a home for its object, the goal, the tool, a stand
  # for its lamp) and drawing the rest uniformly from the scene's.
  pool = [t for t, n in room.receptacles for _ in range(n)]
  size = len(pool)
  if cfg.num_receptacles is not None and cfg.num_receptacles < size:
    size = cfg.num_receptacles
    if kind == 'look_at_obj_in_light':
      needs = [lambda t: t in _LAMP_STANDS, lambda t: target in _CAN_CONTAIN[t]]
    else:
      needs = [lambda t: t == goal,
               lambda t: t != goal and target in _CAN_CONTAIN[t]]
      if verb:
        needs.append(lambda t: t == _TREATMENTS[verb].tool)
    kept = []
    for need in needs:
      if not any(need(pool[i]) for i in kept):
        kept.append(pick([i for i, t in enumerate(pool)
                          if need(t) and i not in kept]))
    rest = [i for i in range(len(pool)) if i not in kept]
    kept += [rest[i] for i in rng.choice(len(rest), size - len(kept),
                                         replace=False)]
    pool = [pool[i] for i in kept]
  counts = collections.Counter(pool)
  receps = sorted(((t, n) for t, c in counts.items() for n in range(1, c + 1)),
                  key=lambda tn: (tn[0], -tn[1]))
  rtype = tuple(t for t, _ in receps)

  def spots(obj_type: str) -> list[int]:
    return [r for r, t in enumerate(rtype) if obj_type in _CAN_CONTAIN[t]
            and not (obj_type == target and t == goal)]

  # Objects: the task's, then distractors of the scene's types (at most
  # _MAX_COPIES of a type), then one of each lamp type of the scene.
  otype = [target] * (2 if kind == 'pick_two_obj_and_place' else 1)
  placeable = [t for t in room.objects if spots(t)]
  for _ in range(cfg.num_distractors):
    free = [t for t in placeable if otype.count(t) < _MAX_COPIES]
    if not free:
      break
    otype.append(pick(free))
  where = [pick(spots(t)) for t in otype]
  stands = [r for r, t in enumerate(rtype) if t in _LAMP_STANDS]
  lamps = []
  for lamp_type in room.lamps if stands else ():
    lamps.append(len(otype))
    otype.append(lamp_type)
    where.append(pick(stands))
  number = [0] * len(otype)
  for t in sorted(set(otype)):
    members = [o for o, ot in enumerate(otype) if ot == t]
    for o, n in zip(members, rng.permutation(len(members)) + 1):
      number[o] = int(n)
  order = sorted(range(len(otype)), key=lambda o: (otype[o], -number[o]))

  sc = _Scene()
  sc.room, sc.scene = room.kind, room.number
  sc.names = tuple(f'{t} {n}' for t, n in receps)
  sc.rtype = rtype
  sc.openable = tuple(t in _OPENABLE for t in rtype)
  sc.accepts = tuple(_CAN_CONTAIN[t] for t in rtype)
  sc.tool = tuple(_TOOL_VERB.get(t) for t in rtype)
  sc.goto = tuple(_GO.format(n) for n in sc.names)
  sc.examine = tuple(_EXAMINE.format(n) for n in sc.names)
  sc.open = tuple(_OPEN.format(n) for n in sc.names)
  sc.close = tuple(_CLOSE.format(n) for n in sc.names)
  sc.onames = tuple(f'{t} {n}' for t, n in zip(otype, number))
  sc.otype = tuple(otype)
  sc.orank = tuple(order.index(o) for o in range(len(otype)))
  sc.lamps = tuple(lamps)
  sc.is_lamp = tuple(o in lamps for o in range(len(otype)))
  sc.lamp = next((o for o in lamps if otype[o] == goal), -1)
  sc.lamp_at = where[sc.lamp] if sc.lamp >= 0 else -1
  sc.kind, sc.target, sc.verb = kind, target, verb
  sc.flag = _TREATMENTS[verb].sets if verb else 0
  sc.tools = tuple(r for r, t in enumerate(rtype)
                   if verb and t == _TREATMENTS[verb].tool)
  sc.targets = tuple(o for o, t in enumerate(otype) if t == target)
  sc.goal_receps = (() if kind == 'look_at_obj_in_light' else
                    tuple(r for r, t in enumerate(rtype) if t == goal))
  sc.task = task
  sc.intro = _INTRO.format(_listing(sc.names), task)

  contents = [[] for _ in rtype]
  for o, r in enumerate(where):
    contents[r].append(o)
  w = _World(where, contents, len(rtype))
  _refresh(sc, w)
  w.key = _key(sc.intro, w.admissible)
  return sc, w


# ----------------------------------------------------------------------------
# Rules: admissible actions, their effects, the goal.
# ----------------------------------------------------------------------------


def _key(observation: str, admissible: tuple[str, ...]) -> str:
  return observation + '\n' + '\n'.join(admissible)


def _refresh(sc: _Scene, w: _World) -> None:
  """Recomputes the admissible actions (ALFWorld's grammar) after a change."""
  ops = {'help': ('help',), 'inventory': ('inventory',), 'look': ('look',)}
  loc, held = w.loc, w.held
  for r, action in enumerate(sc.goto):
    if r != loc:
      ops[action] = ('go', r)
  if loc >= 0:
    ops[sc.examine[loc]] = ('describe',)
    reachable = True
    if sc.openable[loc]:
      reachable = w.is_open[loc]
      if reachable:
        ops[sc.close[loc]] = ('close',)
      else:
        ops[sc.open[loc]] = ('open',)
    here = sc.names[loc]
    if held < 0:
      if reachable:
        for o in w.contents[loc]:
          if not sc.is_lamp[o]:
            ops[_TAKE.format(sc.onames[o], here)] = ('take', o)
    else:
      name = sc.onames[held]
      if reachable and sc.otype[held] in sc.accepts[loc]:
        ops[_MOVE.format(name, here)] = ('move',)
      verb = sc.tool[loc]
      if verb and sc.otype[held] in _TREATMENTS[verb].works_on:
        ops[_TREAT.format(verb, name, here)] = ('treat', verb)
    for o in w.contents[loc]:
      if sc.is_lamp[o]:
        ops[_USE.format(sc.onames[o])] = ('use', o)
  if held >= 0:
    ops[_EXAMINE.format(sc.onames[held])] = ('inspect',)
  w.ops = ops
  w.admissible = tuple(sorted(ops))


def _describe(sc: _Scene, w: _World, r: int) -> str:
  """What `examine R` says; closed receptacles hide their contents."""
  name = sc.names[r]
  if sc.openable[r] and not w.is_open[r]:
    return _CLOSED.format(name)
  items = _listing([sc.onames[o] for o in
                    sorted(w.contents[r], key=sc.orank.__getitem__)])
  return (_OPEN_VIEW if sc.openable[r] else _SURFACE_VIEW).format(name, items)


def _inspect(sc: _Scene, w: _World, o: int) -> str:
  """What `examine O` says of the held object."""
  if sc.otype[o] in _VESSELS:
    return _NORMAL.format(sc.onames[o])
  return _FLAGGED.get(w.flags[o], _PLAIN).format(sc.onames[o])


def _apply(sc: _Scene, w: _World, action: str) -> tuple[str, bool, bool]:
  """Performs one normalized action in place.

  Returns:
    (observation, valid, changed): valid says the action was admissible;
    changed says the world differs afterwards (the caller then refreshes
    the admissible actions and the key).
  """
  op = w.ops.get(action)
  if op is None:
    return _NOTHING, False, False
  kind, loc = op[0], w.loc
  if kind == 'go':
    w.loc = op[1]
    return _ARRIVE.format(sc.names[w.loc], _describe(sc, w, w.loc)), True, True
  if kind == 'take':
    o = op[1]
    w.contents[loc].remove(o)
    w.where[o], w.held = -1, o
    return _TAKEN.format(sc.onames[o], sc.names[loc]), True, True
  if kind == 'move':
    o = w.held
    w.contents[loc].append(o)
    w.where[o], w.held = loc, -1
    return _MOVED.format(sc.onames[o], sc.names[loc]), True, True
  if kind == 'open':
    w.is_open[loc] = True
    return _OPENED.format(sc.names[loc], _describe(sc, w, loc)), True, True
  if kind == 'close':
    w.is_open[loc] = False
    return _CLOSED_IT.format(sc.names[loc]), True, True
  if kind == 'treat':
    verb, o = op[1], w.held
    treatment, old = _TREATMENTS[verb], w.flags[o]
    w.flags[o] = (old | treatment.sets) & ~treatment.clears
    return (_TREATED[verb].format(sc.onames[o], sc.names[loc]), True,
            w.flags[o] != old)
  if kind == 'use':
    o = op[1]
    changed, w.lamp_on = o not in w.lamp_on, w.lamp_on | {o}
    return _LAMP_ON.format(sc.onames[o]), True, changed
  if kind == 'look':
    text = _LOOK_AT.format(sc.names[loc]) if loc >= 0 else _LOOK_MIDDLE
    return text, True, False
  if kind == 'inventory':
    text = (_CARRYING.format(sc.onames[w.held]) if w.held >= 0
            else _EMPTY_HANDS)
    return text, True, False
  if kind == 'describe':
    return _describe(sc, w, loc), True, False
  if kind == 'inspect':
    return _inspect(sc, w, w.held), True, False
  return _HELP, True, False                                    # 'help'


def _goal_met(sc: _Scene, w: _World) -> bool:
  if sc.kind == 'look_at_obj_in_light':
    return (sc.lamp in w.lamp_on and w.loc == sc.lamp_at and w.held >= 0
            and sc.otype[w.held] == sc.target)
  need = 2 if sc.kind == 'pick_two_obj_and_place' else 1
  for r in sc.goal_receps:
    done = [o for o in w.contents[r] if sc.otype[o] == sc.target
            and w.flags[o] & sc.flag == sc.flag]
    if len(done) >= need:
      return True
  return False


# ----------------------------------------------------------------------------
# The oracle: shortest plans by enumerating the few plan shapes that can win.
# ----------------------------------------------------------------------------


class _Draft:
  """Writes one candidate plan, tracking where the agent is and what it opened."""

  __slots__ = ('sc', 'w', 'loc', 'held', 'opened', 'acts')

  def __init__(self, sc: _Scene, w: _World):
    self.sc, self.w, self.loc, self.held = sc, w, w.loc, w.held
    self.opened: set[int] = set()
    self.acts: list[str] = []

  def go(self, r: int) -> None:
    if self.loc != r:
      self.acts.append(self.sc.goto[r])
      self.loc = r

  def reach(self, r: int) -> None:
    """Goes to r and opens it if it is closed."""
    self.go(r)
    if self.sc.openable[r] and not self.w.is_open[r] and r not in self.opened:
      self.acts.append(self.sc.open[r])
      self.opened.add(r)

  def take(self, o: int) -> None:
    r = self.w.where[o]
    self.reach(r)
    self.acts.append(_TAKE.format(self.sc.onames[o], self.sc.names[r]))
    self.held = o

  def put(self, r: int) -> None:
    self.reach(r)
    self.acts.append(_MOVE.format(self.sc.onames[self.held], self.sc.names[r]))
    self.held = -1

  def treat(self) -> None:
    """Heats, cools or cleans the held object if the task needs it."""
    sc, o = self.sc, self.held
    if sc.verb and self.w.flags[o] & sc.flag != sc.flag:
      # Every tool is one `go to` away unless the agent stands at one; which
      # one does not matter afterwards (no goal is a tool).
      at = self.loc if self.loc in sc.tools else sc.tools[0]
      self.go(at)
      self.acts.append(_TREAT.format(sc.verb, sc.onames[o], sc.names[at]))

  def light(self) -> None:
    """Stands at the lamp with the held object and turns the lamp on."""
    self.go(self.sc.lamp_at)
    if self.sc.lamp not in self.w.lamp_on:
      self.acts.append(_USE.format(self.sc.onames[self.sc.lamp]))


def _representatives(sc: _Scene, w: _World, receps: Sequence[int],
                     special: set[int]) -> list[int]:
  """The receptacles of `receps` worth planning with.

  Keeps the special ones (the agent's spot, the targets' spots, the tool, the
  lamp, ...). The others differ only in whether they need an `open` first,
  so one open (or openless) and one closed representative suffice.
  """
  keep, classes = [], set()
  for r in receps:
    shut = sc.openable[r] and not w.is_open[r]
    if r in special or shut not in classes:
      keep.append(r)
      if r not in special:
        classes.add(shut)
  return keep


def _candidate_plans(sc: _Scene, w: _World) -> Iterator[list[str]]:
  """Every plan shape that can be shortest; _plan keeps the shortest.

  A plan frees the hand if needed (puts the held object somewhere), then
  for each target object needed: takes it, treats it (heat/cool/clean tasks)
  and puts it into the goal receptacle, or carries it to the lamp.
  """
  held = w.held
  holds_target = held >= 0 and sc.otype[held] == sc.target
  loose = [o for o in sc.targets if o != held]
  special = {w.loc, sc.lamp_at, *sc.tools, *(w.where[o] for o in loose)}
  goals = _representatives(sc, w, sc.goal_receps, special)
  drops: list[int | None] = [None]
  if held >= 0:
    fits = [r for r, ok in enumerate(sc.accepts) if sc.otype[held] in ok]
    drops = _representatives(sc, w, fits, special | set(goals))

  def start(drop: int | None) -> _Draft:
    d = _Draft(sc, w)
    if drop is not None:
      d.put(drop)
    return d

  if sc.kind == 'look_at_obj_in_light':
    if holds_target:
      d = _Draft(sc, w)
      d.light()
      yield d.acts
    for drop, o in itertools.product(drops, loose):
      d = start(drop)
      d.take(o)
      d.light()
      yield d.acts
  elif sc.kind == 'pick_two_obj_and_place':
    for y in goals:
      missing = 2 - sum(w.where[o] == y for o in loose)
      sources = [o for o in loose if w.where[o] != y]
      if holds_target:
        for order in itertools.permutations(sources, missing - 1):
          d = _Draft(sc, w)
          d.put(y)
          for o in order:
            d.take(o)
            d.put(y)
          yield d.acts
      for drop in drops:
        for order in itertools.permutations(sources, missing):
          d = start(drop)
          for o in order:
            d.take(o)
            d.put(y)
          yield d.acts
  else:
    if holds_target:
      for y in goals:
        d = _Draft(sc, w)
        d.treat()
        d.put(y)
        yield d.acts
    for drop, o, y in itertools.product(drops, loose, goals):
      d = start(drop)
      d.take(o)
      d.treat()
      d.put(y)
      yield d.acts


def _plan(sc: _Scene, w: _World) -> list[str]:
  """A shortest winning action sequence from the current state."""
  return min(_candidate_plans(sc, w), key=len)


# ----------------------------------------------------------------------------
# The batched environment.
# ----------------------------------------------------------------------------


class HouseholdEnv(base.BatchEnv):
  """A batch of household tasks (see the module docstring for the rules).

  Args:
    preset: 'small' (household-small) or 'full' (household).
    num_receptacles: at most this many receptacles per room (5 to 47): a
      larger scene keeps this many of its own, always those the task needs.
      'small' keeps 7; 'full' keeps whole scenes.
    num_distractors: objects placed besides the task's target(s) and the
      scene's lamps, of the scene's object types; fewer where the scene's
      types run out (at most 3 objects of a type).
    task_types: the task types drawn from (uniformly), a subset of TASK_TYPES
      (a list, or one comma-separated string as a command-line flag gives).
    max_steps: the episode limit published to trainers.
  """

  def __init__(self, preset: str = 'small', *,
               num_receptacles: int | None = None,
               num_distractors: int | None = None,
               task_types: Sequence[str] | None = None,
               max_steps: int | None = None):
    self._cfg = _configure(preset, num_receptacles, num_distractors,
                           task_types, max_steps)
    self.name = self._cfg.name
    self.max_steps = self._cfg.max_steps
    self._scenes: list[_Scene] = []
    self._worlds: list[_World] = []

  def reset(self, seeds: Sequence[int]) -> list[base.TimeStep]:
    made: dict[int, tuple[_Scene, _World]] = {}
    self._scenes, self._worlds = [], []
    for seed in seeds:
      if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'seeds must be non-negative ints; got {seed!r}.')
      seed = int(seed)
      if seed not in made:        # a group shares one build of its scene
        made[seed] = _make_task(self._cfg, seed)
      sc, w = made[seed]
      self._scenes.append(sc)
      self._worlds.append(w.copy())
    return [base.TimeStep(sc.intro, sc.task, w.admissible, 0.0, False, False,
                          True, w.key)
            for sc, w in zip(self._scenes, self._worlds)]

  def step(self, actions: Sequence[str | None]) -> list[base.TimeStep | None]:
    if len(actions) != len(self._worlds):
      raise ValueError(f'actions must have one entry per instance of the last '
                       f'reset ({len(self._worlds)}); got {len(actions)}.')
    out: list[base.TimeStep | None] = []
    for i, (raw, sc, w) in enumerate(zip(actions, self._scenes, self._worlds)):
      if raw is None:
        out.append(None)
        continue
      if not isinstance(raw, str):
        raise ValueError(f'actions[{i}] must be a str or None; got {raw!r}.')
      if w.won:
        raise ValueError(f'instance {i} is done; pass None as its action.')
      action = base.normalize_action(raw)
      observation, valid, changed = _apply(sc, w, action)
      if changed:
        w.won = _goal_met(sc, w)
        _refresh(sc, w)
        w.key = _key(observation, w.admissible)
        if w.plan and w.plan[-1] == action:
          w.plan.pop()          # the rest of a shortest plan is still shortest
        else:
          w.plan = None
      out.append(base.TimeStep(observation, sc.task, w.admissible,
                               1.0 if w.won else 0.0, w.won, w.won, valid,
                               w.key))
    return out

  def oracle_actions(self) -> list[str | None]:
    actions: list[str | None] = []
    for sc, w in zip(self._scenes, self._worlds):
      if w.won:
        actions.append(None)
        continue
      if not w.plan:
        w.plan = _plan(sc, w)[::-1]
      actions.append(w.plan[-1])
    return actions

  def oracle_plans(self) -> list[tuple[str, ...] | None]:
    actions = self.oracle_actions()        # (re)plans where needed
    return [None if a is None else tuple(reversed(w.plan))
            for a, w in zip(actions, self._worlds)]

  def task_type(self, index: int) -> str:
    """The task type (one of TASK_TYPES) of instance `index` of the batch."""
    return self._scenes[index].kind

  def vocabulary(self) -> list[str]:
    cfg = self._cfg
    texts = [_INTRO, _NOTHING, _ARRIVE, _CLOSED, _OPEN_VIEW, _SURFACE_VIEW,
             _OPENED, _CLOSED_IT, _TAKEN, _MOVED, _LAMP_ON, _LOOK_MIDDLE,
             _LOOK_AT, _CARRYING, _EMPTY_HANDS, _PLAIN, _NORMAL, _HELP,
             _LIST_WORDS, 'nothing', *_TREATED.values(), *_FLAGGED.values(),
             _GO, _OPEN, _CLOSE, _EXAMINE, _TAKE, _MOVE, _TREAT, _USE,
             *_TREATMENTS, 'look', 'inventory', 'help']
    texts += [t for kind in cfg.task_types for t in _TASK_TEXTS[kind]]
    words = {w for text in texts
             for w in base.split_words(text.format('', '', ''))}
    # The type names and numbers of every room the task types draw from.
    rooms = [_ROOMS[i] for kind in cfg.task_types for i in _hosts(kind)]
    most = _MAX_COPIES
    for room in rooms:
      words.update(room.objects, room.lamps)
      for t, n in room.receptacles:
        words.add(t)
        most = max(most, min(n, cfg.num_receptacles or n))
    words.update(str(n) for n in range(1, most + 1))
    return sorted(words)
