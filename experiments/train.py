r"""Trains a policy with RL: the one entry point for every estimator.

  python -m experiments.train --config=configs/household_small_g2po.py --workdir=runs/g2po
  python -m experiments.train --config=configs/household_small_g2po.py \
      --config.credit.name=gigpo --config.seed=1 --workdir=runs/gigpo_s1
  tensorboard --logdir runs

An existing --workdir resumes from its newest readable checkpoint.

Several processes (hosts), one command each (see experiments/results/SCALE_OUT.md):

  # explicit: the same command on every host, process_id = 0 .. N-1
  python -m experiments.train --config=... --workdir=<shared dir> \
      --coordinator_address=host0:1234 --num_processes=N --process_id=i
  # detected from the environment (TPU pod slice, SLURM, Open MPI, ...)
  python -m experiments.train --config=... --workdir=<shared dir> --distributed
"""

import sys

from absl import app
from absl import flags
from absl import logging
import jax

from g2po_jax.train import checkpoint as ckpt_lib
from g2po_jax.train import config as config_lib
from g2po_jax.train import loop
from g2po_jax.train import metrics as metrics_lib
from g2po_jax.train import workdir as workdir_lib

_CONFIG = flags.DEFINE_string('config', None, 'Experiment config file, optionally with :ARG '
                              '(configs/x.py:runlocal); set any key with --config.KEY=VALUE.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where logs and checkpoints go (with several '
                               'processes: one directory every process can read and write).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Run as one of several processes: jax.distributed.initialize() '
    'with the cluster detected from the environment (Cloud TPU pod slice, SLURM, Open MPI, '
    'Kubernetes) or JAX_COORDINATOR_ADDRESS. Not needed with --coordinator_address.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0 for a multi-process run; give '
    '--num_processes and --process_id too. Disables the environment detection.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the run.', lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process: 0 .. num_processes - 1.',
                                   lower_bound=0)
flags.mark_flags_as_required(['config', 'workdir'])


def init_distributed() -> None:
  """Joins the multi-process run the flags describe (no flags: one process).

  Must run before anything touches the JAX backend (importing our modules
  does not): the devices of every process form the global `jax.devices()`
  that the mesh is built from.
  """
  explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if all(v is None for v in explicit):
    if _DISTRIBUTED.value:
      jax.distributed.initialize()
    return
  if any(v is None for v in explicit):
    raise app.UsageError('--coordinator_address, --num_processes and --process_id go together; '
                         'or use --distributed alone to detect them from the environment.')
  if _PROCESS_ID.value >= _NUM_PROCESSES.value:
    raise app.UsageError(f'--process_id={_PROCESS_ID.value} must be below '
                         f'--num_processes={_NUM_PROCESSES.value}.')
  # 'deactivate': with explicit flags, a SLURM/MPI environment must not
  # override them (it would also restrict each process to one local GPU).
  jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                             cluster_detection_method='deactivate')


def main(args):
  argv, overrides = args
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  metrics_lib.console_logging()
  try:
    c = config_lib.load(_CONFIG.value, overrides)
    init_distributed()
    if jax.process_count() > 1:
      logging.info('process %d of %d; %d of %d devices are local', jax.process_index(),
                   jax.process_count(), jax.local_device_count(), jax.device_count())
    loop.train(c, _WORKDIR.value)
  except workdir_lib.WorkdirError as e:
    sys.exit(f'workdir error: {e}')
  except config_lib.ConfigError as e:
    sys.exit(f'config error: {e}')
  except ckpt_lib.CheckpointError as e:
    sys.exit(f'checkpoint error: {e}')
  except FloatingPointError as e:  # too many non-finite updates in a row
    sys.exit(f'stopped: {e}')


if __name__ == '__main__':
  app.run(main, flags_parser=config_lib.parse_flags)
