r"""Writes g2po_jax/envs/household_content.json from the alfworld wheel.

  python -m experiments.make_household_content          # rewrites the file
  python -m experiments.make_household_content --check  # fails if it is stale

The built-in household world (g2po_jax/envs/household.py) draws its rooms
from ALFWorld's 120 scenes without importing alfworld at run time; this script
is where its content comes from. It reads the scenes the way the real-engine
game generator does (`alfworld_games.load_scene`: the receptacles of
`FloorPlan*-openable.json`, the object types of `*-objects.json` that some
receptacle of the scene can hold, the lamps) and the tables of
`alfworld.gen.constants`, and writes, with names lower-cased as the engine
writes them:

  scenes        per FloorPlan: number, room kind, ALFRED split, receptacle
                types with counts, object types, lamp types
  can_contain   receptacle type -> the object types it can hold
                (VAL_RECEPTACLE_OBJECTS, restricted to the scenes' receptacle
                and object types)
  heatable, coolable, cleanable, toggleable   (VAL_ACTION_OBJECTS)
  openable      (OPENABLE_CLASS_SET, restricted to the scenes' receptacles)
  movable       pickable receptacles (MOVABLE_RECEPTACLES_SET)
  lamp_stands   receptacle types a lamp may stand on (as alfworld_games)
  task_rooms    task type -> the room kinds ALFRED poses it in (GOALS_VALID)

Needs the alfworld extra: pip install -e '.[alfworld]'.
"""

import json
import os
import sys

from absl import app
from absl import flags

from g2po_jax.envs import alfworld_games

_CHECK = flags.DEFINE_bool('check', False,
                           'Exit 1 if the committed file differs from the wheel.')

OUT = os.path.join(os.path.dirname(alfworld_games.__file__),
                   'household_content.json')

# ALFWorld's task names -> household's (g2po_jax.envs.household.TASK_TYPES).
_TASK_NAMES = {
    'pick_and_place_simple': 'pick_and_place',
    'pick_clean_then_place_in_recep': 'pick_clean_then_place',
    'pick_heat_then_place_in_recep': 'pick_heat_then_place',
    'pick_cool_then_place_in_recep': 'pick_cool_then_place',
    'look_at_obj_in_light': 'look_at_obj_in_light',
    'pick_two_obj_and_place': 'pick_two_obj_and_place',
}


def _low(names) -> list[str]:
  return sorted({n.lower() for n in names})


def content() -> dict:
  """Everything household.py needs, as plain JSON-able values."""
  c = alfworld_games._constants()
  split_of = {n: split for split in ('train', 'eval')
              for n in alfworld_games.split_scenes(split)}
  scenes, rtypes, otypes, lamps = [], set(), set(), set()
  for number in sorted(split_of):
    s = alfworld_games.load_scene(number)
    counts: dict[str, int] = {}
    for _, rtype, _ in s.receptacles:
      counts[rtype.lower()] = counts.get(rtype.lower(), 0) + 1
    scenes.append({'number': number, 'room': s.room.lower(),
                   'split': split_of[number],
                   'receptacles': dict(sorted(counts.items())),
                   'objects': _low(s.object_types), 'lamps': _low(s.lamp_types)})
    rtypes |= {r[1] for r in s.receptacles}
    otypes |= set(s.object_types)
    lamps |= set(s.lamp_types)
  actions = c.VAL_ACTION_OBJECTS
  return {
      'source': 'alfworld 0.4.2 wheel: gen/layouts, gen/constants '
                '(experiments/make_household_content.py)',
      'can_contain': {r.lower(): _low(set(c.VAL_RECEPTACLE_OBJECTS[r]) & otypes)
                      for r in sorted(rtypes, key=str.lower)},
      'heatable': _low(set(actions['Heatable']) & otypes),
      'coolable': _low(set(actions['Coolable']) & otypes),
      'cleanable': _low(set(actions['Cleanable']) & otypes),
      'toggleable': _low(set(actions['Toggleable']) & lamps),
      'openable': _low(c.OPENABLE_CLASS_SET & rtypes),
      'movable': _low(c.MOVABLE_RECEPTACLES_SET & otypes),
      'lamp_stands': _low(set(alfworld_games._LAMP_STANDS) & rtypes),
      'task_rooms': {ours: _low(c.GOALS_VALID[theirs])
                     for theirs, ours in _TASK_NAMES.items()},
      'scenes': scenes,
  }


def render(data: dict) -> str:
  """JSON with one line per table entry and per scene (diffs stay readable)."""
  lines = ['{']
  items = list(data.items())
  for i, (key, value) in enumerate(items):
    end = ',' if i < len(items) - 1 else ''
    if isinstance(value, dict):
      inner = [f'  {json.dumps(k)}: {json.dumps(v)}' for k, v in value.items()]
      lines += [f'{json.dumps(key)}: {{', ',\n'.join(inner), f'}}{end}']
    elif key == 'scenes':
      inner = [f'  {json.dumps(s)}' for s in value]
      lines += [f'{json.dumps(key)}: [', ',\n'.join(inner), f']{end}']
    else:
      lines.append(f'{json.dumps(key)}: {json.dumps(value)}{end}')
  return '\n'.join(lines) + '\n}\n'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  text = render(content())
  assert json.loads(text) == content()
  if _CHECK.value:
    with open(OUT) as f:
      if f.read() != text:
        sys.exit(f'{OUT} is stale: rerun '
                 'python -m experiments.make_household_content')
    print(f'{OUT} matches the wheel.')
    return
  with open(OUT, 'w') as f:
    f.write(text)
  print(f'wrote {OUT} ({len(text)} bytes)')


if __name__ == '__main__':
  app.run(main)
