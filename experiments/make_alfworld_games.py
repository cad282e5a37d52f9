r"""Writes ALFWorld games from the alfworld wheel's scene layouts, offline.

  python -m experiments.make_alfworld_games --out=/tmp/alfworld --per_type=20 --split=train
  python -m experiments.make_alfworld_games --out=/tmp/alfworld --per_type=5 --split=eval

Games of all six task types, in the layout of ALFWorld's json_2.1.1 download
(train/ from ALFRED's training scenes, valid_unseen/ from its test scenes), each
kept only if the engine's planner solves it; see g2po_jax/envs/alfworld_games.py.
Play them with `envs.make('alfworld', data_dir=OUT)` (config: env.kwargs.data_dir).
Needs the alfworld extra: pip install -e '.[alfworld]'.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from g2po_jax.envs import alfworld_games

_OUT = flags.DEFINE_string('out', None, 'Data directory to write into.')
_PER_TYPE = flags.DEFINE_integer('per_type', 20, 'Games per task type.')
_SPLIT = flags.DEFINE_enum('split', 'train', ['train', 'eval'],
                           'train: training scenes; eval: unseen scenes.')
_SEED = flags.DEFINE_integer('seed', 0, 'Generator seed (same seed, same games).')
_WORKERS = flags.DEFINE_integer('workers', 2, 'Processes checking games.')
flags.mark_flag_as_required('out')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    paths = alfworld_games.write_games(_OUT.value, _SPLIT.value, _PER_TYPE.value,
                                       seed=_SEED.value, num_workers=_WORKERS.value)
  except (ValueError, RuntimeError) as e:
    sys.exit(f'error: {e}')
  logging.info('wrote %d %s games under %s', len(paths), _SPLIT.value, _OUT.value)


if __name__ == '__main__':
  app.run(main)
