r"""Trains a policy with RL: the one entry point for every estimator.

  python -m experiments.train --config=configs/household_small_g2po.py --workdir=runs/g2po
  python -m experiments.train --config=configs/household_small_g2po.py \
      --config.credit.name=gigpo --config.seed=1 --workdir=runs/gigpo_s1
  tensorboard --logdir runs

An existing --workdir resumes from its newest readable checkpoint.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from g2po_jax.train import config as config_lib
from g2po_jax.train import loop

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where logs and checkpoints go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  # Orbax narrates every save at INFO; keep the console to our progress lines.
  logging.get_absl_handler().addFilter(lambda record: 'orbax' not in record.pathname)
  try:
    loop.train(_CONFIG.value, _WORKDIR.value)
  except config_lib.ConfigError as e:
    sys.exit(f'config error: {e}')


def run():
  """app.run, with a one-line message for a config override that does not exist."""
  try:
    app.run(main)
  except (AttributeError, KeyError) as e:
    if 'config' in str(e).lower() or 'key' in str(e).lower():
      sys.exit(f'config error: {e}')
    raise


if __name__ == '__main__':
  run()
