r"""How close the built-in household world's content is to the real ALFWorld's.

  python -m experiments.household_vs_alfworld                    # this checkout
  python -m experiments.household_vs_alfworld --root=/work/main  # another one
  python -m experiments.household_vs_alfworld --seeds=500 --md=/tmp/c.md

The reference is read from the alfworld wheel directly (not from household's
content file): the 120 scenes as the real-engine game generator reads them
(`alfworld_games.load_scene`), the tables of `alfworld.gen.constants`, and the
engine's vocabulary (`alfworld._vocabulary`: the grammar, every ALFRED type
name, the task templates). For each preset, over `--seeds` tasks (training
seeds) played by a noisy oracle (`--noise` random admissible actions):

  receptacle / object types   share of the real types that occur (lamps
                              count as objects)
  receptacles per room        min / median / max, and per real room kind
  objects per room            min / median / max (real: the generator's
                              1-3 copies of each object type of the scene)
  mixed rooms                 rooms holding receptacle types that only occur
                              in two different real room kinds (e.g. a
                              fridge and a bed); rooms whose receptacle types
                              are a subset of no single real scene
  rule breaks                 offered `move` / `heat` / `cool` / `clean`
                              commands (every admissible list of every step)
                              that ALFWorld's canContain / Heatable /
                              Coolable / Cleanable tables and tools forbid
  vocabulary                  words of the real engine's vocabulary missing
                              from household's

`--root` measures the household.py of another checkout (e.g. main, before a
change); the reference always comes from this checkout and the wheel.
Needs the alfworld extra: pip install -e '.[alfworld]'.
"""

import collections
import importlib
import re
import sys

from absl import app
from absl import flags
import numpy as np

_ROOT = flags.DEFINE_string('root', None,
                            'Checkout whose g2po_jax/envs/household.py to '
                            'measure (default: this one).')
_SEEDS = flags.DEFINE_integer('seeds', 500, 'Tasks per preset.')
_NOISE = flags.DEFINE_float('noise', 0.5, 'Random-action rate of the oracle.')
_MD = flags.DEFINE_string('md', None, 'Also write the report here.')

_TOOLS = {'heat': ('microwave', 'Heatable'), 'cool': ('fridge', 'Coolable'),
          'clean': ('sinkbasin', 'Cleanable')}


def _reference():
  """The real content: scenes, tables and vocabulary, from the wheel."""
  from g2po_jax.envs import alfworld, alfworld_games
  c = alfworld_games._constants()
  numbers = sorted(set(alfworld_games.split_scenes('train'))
                   | set(alfworld_games.split_scenes('eval')))
  scenes = [alfworld_games.load_scene(n) for n in numbers]
  rooms = []
  for s in scenes:
    rooms.append((s.room.lower(),
                  collections.Counter(r[1].lower() for r in s.receptacles)))
  # Objects per room as the real generator places them (no planner check).
  objects = []
  for i in range(100):
    for task_type in alfworld_games.TASK_TYPES:
      for attempt in range(50):
        game = alfworld_games.sample_game('train', task_type, i, 0, attempt)
        if game is not None:
          objects.append(len(game.placed))
          break
  low = lambda names: {n.lower() for n in names}
  return dict(
      rooms=rooms,
      rtypes=set().union(*(set(r) for _, r in rooms)),
      otypes=set().union(*(low(s.object_types) | low(s.lamp_types)
                           for s in scenes)),
      objects=objects,
      can_contain={r.lower(): low(o) for r, o in c.VAL_RECEPTACLE_OBJECTS.items()},
      able={v: low(c.VAL_ACTION_OBJECTS[p]) for v, (_, p) in _TOOLS.items()},
      vocabulary=set(alfworld._vocabulary()))


def _household(root):
  if root:
    sys.path.insert(0, root)
    for name in [m for m in sys.modules if m.startswith('g2po_jax')]:
      del sys.modules[name]
  module = importlib.import_module('g2po_jax.envs.household')
  base = importlib.import_module('g2po_jax.envs.base')
  if root:
    sys.path.remove(root)
  return module, base


def _play(module, base, preset, seeds, noise):
  """(receptacle types per room, object types per room, offered commands)."""
  env = module.HouseholdEnv(preset)
  seeds = [int(s) for s in base.split_seeds('train', seeds)]
  live = env.reset(seeds)
  rooms = [list(sc.rtype) for sc in env._scenes]
  objects = [list(sc.otype) for sc in env._scenes]
  offered = collections.Counter()
  rng = np.random.default_rng(0)
  for ts in live:
    offered.update(ts.admissible)
  for _ in range(env.max_steps):
    oracle = env.oracle_actions()
    actions = [None if ts.done else
               ts.admissible[rng.integers(len(ts.admissible))]
               if rng.random() < noise else oracle[i]
               for i, ts in enumerate(live)]
    if all(a is None for a in actions):
      break
    out = env.step(actions)
    live = [o if o is not None else ts for o, ts in zip(out, live)]
    for o in out:
      if o is not None:
        offered.update(o.admissible)
  return rooms, objects, offered, env.vocabulary()


_COMMAND = re.compile(r'(move|heat|cool|clean) (\w+) \d+ (?:to|with) (\w+) \d+')


def _breaks(offered, ref):
  """Offered commands the real tables forbid: {verb: (broken, offered)}."""
  out = {v: [0, 0] for v in ('move', 'heat', 'cool', 'clean')}
  examples = collections.Counter()
  for command, n in offered.items():
    m = _COMMAND.fullmatch(command)
    if not m:
      continue
    verb, obj, recep = m.groups()
    if verb == 'move':
      ok = obj in ref['can_contain'].get(recep, ())
    else:
      ok = recep == _TOOLS[verb][0] and obj in ref['able'][verb]
    out[verb][1] += n
    if not ok:
      out[verb][0] += n
      examples[f'{verb} {obj} -> {recep}'] += n
  return out, examples


def _stats(xs):
  return f'{min(xs)} / {int(np.median(xs))} / {max(xs)}'


def _report(root, seeds, noise) -> str:
  ref = _reference()
  kinds = sorted({k for k, _ in ref['rooms']})
  kind_types = {k: set().union(*(set(r) for kk, r in ref['rooms'] if kk == k))
                for k in kinds}
  exclusive = {k: kind_types[k] - set().union(*(kind_types[j] for j in kinds
                                                if j != k)) for k in kinds}
  scene_sets = [set(r) for _, r in ref['rooms']]
  module, base = _household(root)
  lines = [f'Household content vs the real ALFWorld scenes (alfworld 0.4.2 '
           f'wheel, {len(ref["rooms"])} scenes); household from '
           f'{root or "this checkout"}, {seeds} training seeds per preset, '
           f'noisy oracle at {noise}.', '']
  sizes = [sum(r.values()) for _, r in ref['rooms']]
  lines += ['| | real | ' + ' | '.join(['household-small', 'household']) + ' |',
            '|---|---|---|---|']
  rows = collections.defaultdict(list)
  rows['receptacle types present'].append(f'{len(ref["rtypes"])}')
  rows['object types present (lamps included)'].append(f'{len(ref["otypes"])}')
  rows['receptacles per room (min / median / max)'].append(_stats(sizes))
  rows['objects per room (min / median / max)'].append(_stats(ref['objects']))
  rows['rooms mixing kind-exclusive receptacle types'].append('0%')
  rows['rooms whose types fit no single real scene'].append('0%')
  for verb in ('move', 'heat', 'cool', 'clean'):
    rows[f'offered `{verb}` commands breaking the real rules'].append('0%')
  rows['real vocabulary words missing'].append('0')
  rows['real scene type names missing from the vocabulary'].append('0')
  rows['vocabulary size'].append(f'{len(ref["vocabulary"])}')
  notes = []
  for preset in ('small', 'full'):
    rooms, objects, offered, vocab = _play(module, base, preset, seeds, noise)
    rtypes = set().union(*map(set, rooms))
    otypes = set().union(*map(set, objects))
    mixed = sum(sum(bool(set(r) & exclusive[k]) for k in kinds) >= 2
                for r in rooms)
    unfit = sum(not any(set(r) <= s for s in scene_sets) for r in rooms)
    broken, examples = _breaks(offered, ref)
    missing = sorted(ref['vocabulary'] - set(vocab))
    name = 'household-small' if preset == 'small' else 'household'
    rows['receptacle types present'].append(
        f'{len(rtypes & ref["rtypes"])} of {len(ref["rtypes"])}'
        + (f' (+{len(rtypes - ref["rtypes"])} not real)'
           if rtypes - ref['rtypes'] else ''))
    rows['object types present (lamps included)'].append(
        f'{len(otypes & ref["otypes"])} of {len(ref["otypes"])}'
        + (f' (+{len(otypes - ref["otypes"])} not real)'
           if otypes - ref['otypes'] else ''))
    rows['receptacles per room (min / median / max)'].append(
        _stats([len(r) for r in rooms]))
    rows['objects per room (min / median / max)'].append(
        _stats([len(o) for o in objects]))
    rows['rooms mixing kind-exclusive receptacle types'].append(
        f'{100 * mixed / len(rooms):.0f}%')
    rows['rooms whose types fit no single real scene'].append(
        f'{100 * unfit / len(rooms):.0f}%')
    for verb in ('move', 'heat', 'cool', 'clean'):
      bad, total = broken[verb]
      rows[f'offered `{verb}` commands breaking the real rules'].append(
          f'{100 * bad / max(total, 1):.1f}% ({bad} of {total})')
    rows['real vocabulary words missing'].append(f'{len(missing)}')
    names = sorted((ref['rtypes'] | ref['otypes']) - set(vocab))
    rows['real scene type names missing from the vocabulary'].append(
        f'{len(names)} of {len(ref["rtypes"] | ref["otypes"])}')
    rows['vocabulary size'].append(f'{len(vocab)}')
    listed = lambda types: ', '.join(sorted(types)) or 'none'
    notes.append(f'- {name}: real receptacle types absent: '
                 f'{listed(ref["rtypes"] - rtypes)}; not real: '
                 f'{listed(rtypes - ref["rtypes"])}.')
    notes.append(f'- {name}: real object types absent: '
                 f'{listed(ref["otypes"] - otypes)}; not real: '
                 f'{listed(otypes - ref["otypes"])}.')
    top = ', '.join(f'{k} ({n})' for k, n in examples.most_common(6))
    notes.append(f'- {name}: most offered rule breaks: {top or "none"}.')
    numbers = [w for w in missing if w.isdigit()]
    others = [w for w in missing if not w.isdigit() and w not in names]
    notes.append(f'- {name}: real vocabulary words missing: the type names '
                 f'{" ".join(names) or "none"}; {len(numbers)} numbers '
                 f'({" ".join(sorted(numbers, key=int)[:3])} ...); '
                 f'{len(others)} other words (the grammar file\'s own syntax '
                 f'and names, ALFRED types in no scene, texts household never '
                 f'writes): {" ".join(others)}.')
  for key, values in rows.items():
    lines.append(f'| {key} | ' + ' | '.join(values) + ' |')
  real_kinds = '; '.join(
      f'{k} {_stats([sum(r.values()) for kk, r in ref["rooms"] if kk == k])}'
      for k in kinds)
  lines += ['', f'Real receptacles per room by kind (min / median / max): '
            f'{real_kinds}.', ''] + notes
  return '\n'.join(lines) + '\n'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  text = _report(_ROOT.value, _SEEDS.value, _NOISE.value)
  print(text)
  if _MD.value:
    with open(_MD.value, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  app.run(main)
