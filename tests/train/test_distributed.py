"""Scale-out and fault tolerance of the trainer.

Device meshes, several processes, preemption (SIGTERM), kill -9, damaged
checkpoints and non-finite updates. Runs on more than one device or process
go through `python -m experiments.train` in subprocesses (the pytest process
has one CPU device; fake devices come from XLA_FLAGS), every one under
`timeout -s KILL` so that nothing can hang the suite: `jax.distributed`
installs a SIGTERM handler, so a plain terminate may not end a stuck process.

All runs share one 2-iteration micro setting (`RUN`). With seed 1 and
one-token actions the untrained policy now and then says a valid one-word
action ('look', 'inventory', 'help'), so the invalid-action penalty gives
non-zero advantages in both iterations and the parameters really move
(checked by the `reference` fixture): a layout bug cannot hide behind a zero
gradient.
"""

import collections
import dataclasses
import glob
import logging as py_logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import ml_collections as mlc
import numpy as np
import orbax.checkpoint as ocp
import pytest
from tensorboard.backend.event_processing import event_file_loader
from tensorboardX.proto import event_pb2

from configs import household_small_g2po
from g2po_jax import envs
from g2po_jax.train import checkpoint as ckpt_lib
from g2po_jax.train import config as config_lib
from g2po_jax.train import loop
from tests.train.common import micro_config
from tests.train.test_loop import assert_trees_equal
from tests.train.test_loop import read_scalars

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A seed where both iterations' groups differ (some one-token action is
# admissible: look, help, inventory), so advantages are not all zero; on
# household's ALFWorld content seeds 0-3 gave all-zero advantages.
RUN = dict(seed=4, num_iterations=2, env__max_steps=8, rollout__max_new_tokens=1,
           optim__lr=1e-4, optim__warmup_steps=0, ckpt__every=1)
# One mini-batch per iteration (at most 64 samples): the only case where
# several processes see the same mini-batches as one process (see
# experiments/results/SCALE_OUT.md).
ONE_MINIBATCH = dict(RUN, ppo__minibatch_size=64)
# Different layouts sum in different orders. Adam turns that rounding into
# update differences of a few % of the learning rate (1e-4) on weights whose
# gradient is nearly 0 (measured: 1.7e-6 on 1 of 4192 embedding weights).
# A layout bug changes updates by about the learning rate.
ATOL, RTOL = 5e-6, 1e-5
TIMEOUT = 300          # seconds; a healthy run here takes well under a minute


# ---------------------------------------------------------------- helpers

def _flat(c: mlc.ConfigDict, prefix: str = '') -> dict[str, object]:
  out = {}
  for key, value in c.items():
    if isinstance(value, mlc.ConfigDict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = value
  return out


def cli_config(c: mlc.ConfigDict) -> list[str]:
  """--config flags that turn household_small_g2po's runlocal config into `c`."""
  base = _flat(household_small_g2po.get_config('runlocal'))
  flags = ['--config=configs/household_small_g2po.py:runlocal']
  for key, value in _flat(c).items():
    if key not in base:
      raise ValueError(f'{key} is not in the base config')
    if value != base[key]:
      flags.append(f'--config.{key}={value}')
  return flags


def command(workdir, c: mlc.ConfigDict, *extra: str) -> list[str]:
  return ['timeout', '-s', 'KILL', str(TIMEOUT), sys.executable, '-m', 'experiments.train',
          *cli_config(c), f'--workdir={workdir}', *extra]


def environment(devices: int = 1) -> dict[str, str]:
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  if devices > 1:
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                        f' --xla_force_host_platform_device_count={devices}').strip()
  return env


def start(workdir, c: mlc.ConfigDict, *extra: str, devices: int = 1,
          log: str | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
  """Starts one training process; its output goes to `log` (default workdir.log)."""
  with open(log or f'{workdir}.log', 'w') as out:
    # Its own process group: `signal_run` reaches the trainer under `timeout`.
    return subprocess.Popen(command(workdir, c, *extra), cwd=REPO,
                            env={**environment(devices), **(env or {})},
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def signal_run(proc: subprocess.Popen, sig: int) -> None:
  """Sends `sig` to a run started by `start` (`timeout` and the trainer)."""
  os.killpg(proc.pid, sig)


def finish(proc: subprocess.Popen) -> int:
  try:
    return proc.wait(TIMEOUT + 30)
  finally:
    if proc.poll() is None:
      signal_run(proc, signal.SIGKILL)
      proc.wait()


def read_log(path: str) -> str:
  with open(path) as f:
    return f.read()


def train_cli(workdir, c: mlc.ConfigDict, *extra: str, devices: int = 1) -> str:
  """Runs one training process to the end; returns its log."""
  rc = finish(start(workdir, c, *extra, devices=devices))
  log = read_log(f'{workdir}.log')
  assert rc == 0, f'exit code {rc}:\n{log[-3000:]}'
  return log


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start_two_processes(workdir, c: mlc.ConfigDict, port: int,
                        slurm: bool = False) -> list[subprocess.Popen]:
  """A 2-process run on localhost: gloo CPU collectives, 2 fake devices each.

  With `slurm`, the processes get `--distributed` and find each other from
  the variables `srun` sets (a one-node, two-task job step).
  """
  procs = []
  for i in range(2):
    if slurm:
      flags = ['--distributed']
      env = dict(SLURM_JOB_ID='1', SLURM_STEP_NODELIST='localhost', SLURM_NTASKS='2',
                 SLURM_PROCID=str(i), SLURM_LOCALID=str(i), SLURM_STEP_NUM_NODES='1',
                 JAX_COORDINATOR_PORT=str(port))
    else:
      flags = [f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
               f'--process_id={i}']
      env = {}
    procs.append(start(workdir, c, *flags, devices=2, log=f'{workdir}.{i}.log', env=env))
  return procs


def wait_for(condition, procs, what: str, timeout: float = TIMEOUT) -> None:
  """Polls `condition` every 10 ms; fails if a process exits first."""
  deadline = time.monotonic() + timeout
  while not condition():
    if any(p.poll() is not None for p in procs):
      raise AssertionError(f'a process exited before {what}')
    if time.monotonic() > deadline:
      raise AssertionError(f'timed out waiting for {what}')
    time.sleep(0.01)


def steps_on_disk(workdir) -> list[int]:
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def read_state(workdir, step: int | None = None) -> dict:
  """The train state of a checkpoint as {path: numpy array}, whatever the
  device layout it was saved from."""
  step = steps_on_disk(workdir)[-1] if step is None else step
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  ckptr = ocp.PyTreeCheckpointer()
  tree = ckptr.metadata(path).item_metadata.tree
  args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return ocp.tree.to_flat_dict(ckptr.restore(path, args=ocp.args.PyTreeRestore(
      restore_args=args)))


def saved_specs(workdir, step: int) -> dict:
  """{path: PartitionSpec tuple} each state array was saved with."""
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  tree = ocp.PyTreeCheckpointer().metadata(path).item_metadata.tree
  return {k: tuple(m.sharding.partition_spec)
          for k, m in ocp.tree.to_flat_dict(tree).items()}


def assert_states_close(actual: dict, expected: dict) -> None:
  assert actual.keys() == expected.keys()
  for key in expected:
    np.testing.assert_allclose(actual[key], expected[key], rtol=RTOL, atol=ATOL,
                               err_msg=str(key))


def params_moved(state: dict) -> float:
  """max |params - initial params| (the KL reference is the initial policy)."""
  return max(float(np.abs(v - state[('ref_params',) + k[1:]]).max())
             for k, v in state.items() if k[0] == 'params')


def digests(log: str) -> list[str]:
  return re.findall(r'parameter digest of process \d+ of \d+: (\w+)', log)


def assert_same_rollouts(workdir, reference) -> None:
  """Same sampled episodes: the rollout and graph metrics agree exactly."""
  a, b = read_scalars(workdir), read_scalars(reference)
  for tag in b:
    if tag.startswith(('rollout/', 'graph/')):
      assert a[tag] == b[tag], tag


# --------------------------------------------------------------- references

@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The uninterrupted 1-device run of RUN (workdir)."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  loop.train(micro_config(**RUN), workdir)
  scalars = read_scalars(workdir)
  assert min(scalars['adv/std'].values()) > 0.1, 'degenerate test: all advantages are 0'
  assert params_moved(read_state(workdir)) > 20 * ATOL, 'degenerate test: no update'
  return workdir


@pytest.fixture(scope='module')
def reference_one_minibatch(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('reference_one_minibatch'))
  loop.train(micro_config(**ONE_MINIBATCH), workdir)
  assert params_moved(read_state(workdir)) > 20 * ATOL, 'degenerate test: no update'
  return workdir


# ------------------------------------------------------------ device meshes

@pytest.mark.slow
@pytest.mark.parametrize('data,fsdp', [(8, 1), (2, 4)])
def test_eight_devices_match_one_device(data, fsdp, reference, tmp_path):
  workdir = str(tmp_path / f'mesh_{data}x{fsdp}')
  train_cli(workdir, micro_config(**RUN, mesh__data=data, mesh__fsdp=fsdp), devices=8)
  assert steps_on_disk(workdir) == [0, 1]
  assert_same_rollouts(workdir, reference)
  assert_states_close(read_state(workdir), read_state(reference))
  # Adam's moments and the KL reference are laid out like the parameters:
  # sharded over fsdp, not replicated on every device.
  specs = saved_specs(workdir, 1)
  assert specs[('params', 'embed', 'value')] == (None, 'fsdp')
  moments = [k for k in specs if k[0] == 'opt_state' and k[3] in ('mu', 'nu')]
  assert moments
  for key in moments:                     # ('opt_state', '1', '0', 'mu', *param path)
    assert specs[key] == specs[('params',) + key[4:]], key
  for key in (k for k in specs if k[0] == 'ref_params'):
    assert specs[key] == specs[('params',) + key[1:]], key


@pytest.mark.slow
def test_resume_on_a_different_mesh(reference, tmp_path):
  """A checkpoint from 8 devices (data=2 x fsdp=4) resumes on 1 device."""
  workdir = str(tmp_path / 'run')
  train_cli(workdir, micro_config(**dict(RUN, num_iterations=1), mesh__data=2, mesh__fsdp=4),
            devices=8)
  assert steps_on_disk(workdir) == [0]
  loop.train(micro_config(**RUN), workdir)
  assert steps_on_disk(workdir) == [0, 1]
  assert_same_rollouts(workdir, reference)
  assert_states_close(read_state(workdir), read_state(reference))


# -------------------------------------------------------- several processes

@pytest.mark.slow
def test_two_processes_match_one_process(reference_one_minibatch, tmp_path):
  workdir = str(tmp_path / 'two')
  procs = start_two_processes(workdir, micro_config(**ONE_MINIBATCH), free_port())
  codes = [finish(p) for p in procs]
  logs = [read_log(f'{workdir}.{i}.log') for i in range(2)]
  assert codes == [0, 0], '\n'.join(log[-3000:] for log in logs)
  assert 'process 1 of 2; 2 of 4 devices are local' in logs[1]
  for log in logs:
    assert 'iter 2/2' in log
  # Both processes hold the same parameters at the end.
  d0, d1 = digests(logs[0]), digests(logs[1])
  assert len(d0) == len(d1) == 1 and d0 == d1
  # Process 0 alone writes the logs and the run files.
  assert len(glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))) == 1
  assert os.path.exists(os.path.join(workdir, 'config.json'))
  assert steps_on_disk(workdir) == [0, 1]
  assert_same_rollouts(workdir, reference_one_minibatch)
  assert_states_close(read_state(workdir), read_state(reference_one_minibatch))


@pytest.mark.slow
def test_two_processes_stop_together_on_sigterm_and_resume_under_slurm(
    reference_one_minibatch, tmp_path):
  workdir = str(tmp_path / 'two')
  c = micro_config(**dict(ONE_MINIBATCH, ckpt__every=100))
  procs = start_two_processes(workdir, c, free_port())
  # Preempt one process in the middle of iteration 1 (the tokenizer is
  # written just before the loop; process 1's handler is up once it logs).
  wait_for(lambda: os.path.exists(os.path.join(workdir, 'tokenizer'))
           and 'SIGTERM will save' in read_log(f'{workdir}.1.log'), procs, 'iteration 1')
  signal_run(procs[1], signal.SIGTERM)
  codes = [finish(p) for p in procs]
  logs = [read_log(f'{workdir}.{i}.log') for i in range(2)]
  assert codes == [0, 0], '\n'.join(log[-3000:] for log in logs)
  for log in logs:
    assert 'preempted: checkpoint of iteration 1 saved' in log
    assert 'iter 2/2' not in log
  assert steps_on_disk(workdir) == [0]
  assert sorted(read_scalars(workdir)['train/loss']) == [1]

  # Resume as a SLURM job step would: --distributed finds the processes.
  procs = start_two_processes(workdir, c, free_port(), slurm=True)
  codes = [finish(p) for p in procs]
  logs = [read_log(f'{workdir}.{i}.log') for i in range(2)]
  assert codes == [0, 0], '\n'.join(log[-3000:] for log in logs)
  assert 'process 1 of 2; 2 of 4 devices are local' in logs[1]
  assert 'resumed' in logs[0] and 'iter 1/2' not in logs[0] and 'iter 2/2' in logs[0]
  assert digests(logs[0]) == digests(logs[1])
  assert steps_on_disk(workdir) == [0, 1]
  assert_same_rollouts(workdir, reference_one_minibatch)
  assert_states_close(read_state(workdir), read_state(reference_one_minibatch))


def scalar_events(logdir: str) -> collections.Counter:
  """(tag, step) -> how many scalar events of it the event files in logdir hold."""
  counts = collections.Counter()
  for path in glob.glob(os.path.join(logdir, '*tfevents*')):
    for raw in event_file_loader.RawEventFileLoader(path).Load():
      event = event_pb2.Event.FromString(raw)
      for value in event.summary.value:
        counts[value.tag, event.step] += 1
  return counts


# ------------------------------------------------------------ preemption

@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_is_exact(reference, tmp_path):
  workdir = str(tmp_path / 'run')
  # No periodic checkpoint before the last iteration: the one of iteration
  # 1 can only come from the SIGTERM.
  c = micro_config(**dict(RUN, ckpt__every=100))
  proc = start(workdir, c)
  wait_for(lambda: os.path.exists(os.path.join(workdir, 'tokenizer')), [proc], 'iteration 1')
  signal_run(proc, signal.SIGTERM)
  rc = finish(proc)
  log = read_log(f'{workdir}.log')
  assert rc == 0, log[-3000:]
  assert 'preempted: checkpoint of iteration 1 saved; exiting' in log
  assert steps_on_disk(workdir) == [0]
  assert sorted(read_scalars(workdir)['train/loss']) == [1]

  log = train_cli(workdir, c)
  assert 'resumed' in log and 'iter 1/2' not in log
  assert steps_on_disk(workdir) == [0, 1]
  assert_trees_equal(read_state(workdir), read_state(reference))
  a, b = read_scalars(workdir), read_scalars(reference)
  for tag in b:
    if not tag.startswith(('time/', 'throughput/')):
      assert a[tag] == b[tag], tag


@pytest.mark.slow
def test_kill_9_loses_only_the_iterations_since_the_last_checkpoint(reference, tmp_path):
  workdir = str(tmp_path / 'run')
  c = micro_config(**RUN)
  proc = start(workdir, c)
  wait_for(lambda: os.path.isdir(os.path.join(workdir, 'checkpoints', '0')), [proc],
           'checkpoint 0')
  signal_run(proc, signal.SIGKILL)
  assert finish(proc) == -signal.SIGKILL
  assert steps_on_disk(workdir) == [0], 'the run ended before the kill'

  log = train_cli(workdir, c)
  assert 'resumed' in log and 'iter 1/2' not in log and 'iter 2/2' in log
  assert not glob.glob(os.path.join(workdir, 'checkpoints', '*.orbax-checkpoint-tmp*'))
  assert_trees_equal(read_state(workdir), read_state(reference))
  assert read_scalars(workdir)['train/loss'][2] == read_scalars(reference)['train/loss'][2]
  # Every iteration's scalars are on disk exactly once: those of iteration 1
  # were written before its checkpoint, none of the killed iteration 2 remain.
  events = scalar_events(workdir)
  assert events == scalar_events(reference)
  assert set(events.values()) == {1}


# ------------------------------------------------------ damaged checkpoints

# A failed orbax restore leaves a callback on a closed asyncio loop (harmless).
_ORBAX_NOISE = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')


def _truncate_arrays(step_dir):
  files = glob.glob(os.path.join(step_dir, 'state', '**', 'd', '*'), recursive=True)
  assert files
  for path in files:
    os.truncate(path, os.path.getsize(path) // 2)


def _drop_state(step_dir):
  shutil.rmtree(os.path.join(step_dir, 'state'))


def _empty(step_dir):
  shutil.rmtree(step_dir)
  os.mkdir(step_dir)


def _half_written(workdir, reference) -> str:
  """Adds step 2 as orbax leaves a save cut short: never renamed to its step."""
  half = os.path.join(workdir, 'checkpoints', '2.orbax-checkpoint-tmp-1796075468')
  shutil.copytree(os.path.join(reference, 'checkpoints', '1'), half)
  os.remove(os.path.join(half, 'commit_success.txt'))
  _truncate_arrays(half)
  return half


def _abstract_state(workdir) -> dict:
  path = os.path.join(workdir, 'checkpoints', '0', 'state')
  tree = ocp.PyTreeCheckpointer().metadata(path).item_metadata.tree
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)


@_ORBAX_NOISE
@pytest.mark.parametrize('damage', [_truncate_arrays, _drop_state, _empty])
def test_unreadable_latest_checkpoint_falls_back_to_the_one_before(damage, reference,
                                                                   tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  checkpoints = os.path.join(workdir, 'checkpoints')
  damage(os.path.join(checkpoints, '1'))
  half = _half_written(workdir, reference)
  ckpt = ckpt_lib.Checkpointer(checkpoints, keep=3)
  with caplog.at_level(py_logging.WARNING):
    state, record = ckpt.restore_latest(_abstract_state(workdir))
  ckpt.close()
  assert record['iteration'] == 0
  assert_trees_equal(ocp.tree.to_flat_dict(jax.device_get(state)), read_state(reference, 0))
  assert 'checkpoint 1 in' in caplog.text and 'unreadable' in caplog.text
  # orbax deletes the half-written one in the background (awaited by the
  # next save; see test_run_resumes_past_damaged_checkpoints).
  assert set(os.listdir(checkpoints)) - {os.path.basename(half)} == {'0', '1.unreadable'}


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(reference, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  for step in ('0', '1'):
    _drop_state(os.path.join(workdir, 'checkpoints', step))
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), keep=3)
  with pytest.raises(RuntimeError, match='none of the checkpoints'):
    ckpt.restore_latest(_abstract_state(reference))
  ckpt.close()


@_ORBAX_NOISE
def test_run_resumes_past_damaged_checkpoints(reference, tmp_path):
  """The trainer restores step 0, saves step 1 again and ends where an
  uninterrupted run ends."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  _truncate_arrays(os.path.join(workdir, 'checkpoints', '1'))
  _half_written(workdir, reference)
  loop.train(micro_config(**RUN), workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['0', '1', '1.unreadable']
  assert_trees_equal(read_state(workdir), read_state(reference))
  a, b = read_scalars(workdir), read_scalars(reference)
  assert a['train/loss'][2] == b['train/loss'][2]


# ------------------------------------------------------- non-finite updates

def test_count_bad_steps():
  assert loop.count_bad_steps(0, np.array([True, True])) == (0, 0)
  assert loop.count_bad_steps(2, np.array([False, True, False])) == (1, 3)
  assert loop.count_bad_steps(1, np.array([True, False, False, True])) == (0, 2)
  assert loop.count_bad_steps(1, np.array([False, False])) == (3, 3)


class _NanRewards:
  """An environment whose rewards are NaN (a broken reward function)."""

  def __init__(self, env):
    self._env = env

  def __getattr__(self, name):
    return getattr(self._env, name)

  def step(self, actions):
    return [None if s is None else dataclasses.replace(s, reward=float('nan'))
            for s in self._env.step(actions)]


def test_nonfinite_updates_are_skipped_counted_and_stop_the_run(reference, tmp_path,
                                                                monkeypatch):
  make = envs.make
  monkeypatch.setattr(envs, 'make', lambda *a, **k: _NanRewards(make(*a, **k)))
  workdir = str(tmp_path / 'run')
  # 4 mini-batches per iteration: iteration 1 skips 4 updates in a row (< 6),
  # iteration 2 reaches 6 and stops the run.
  with pytest.raises(FloatingPointError, match=r'ppo.max_bad_steps=6'):
    loop.train(micro_config(**RUN, ppo__max_bad_steps=6), workdir)
  assert read_scalars(workdir)['train/nonfinite_updates'] == {1: 4.0, 2: 4.0}
  assert steps_on_disk(workdir) == [0]            # nothing saved after the stop
  state = read_state(workdir, 0)
  assert state[('step',)] == 0
  assert params_moved(state) == 0.0               # skipped: the initial policy
  initial = {k: v for k, v in read_state(reference, 0).items() if k[0] == 'ref_params'}
  for key, value in initial.items():
    np.testing.assert_array_equal(state[key], value)


# ---------------------------------------------------------- the entry point

def test_cli_wants_all_three_process_flags(tmp_path):
  proc = subprocess.run(
      command(tmp_path, micro_config(), '--num_processes=2'), cwd=REPO, env=environment(),
      capture_output=True, text=True, timeout=TIMEOUT)
  assert proc.returncode != 0
  assert '--coordinator_address, --num_processes and --process_id go together' in proc.stderr



def test_workdir_must_be_a_filesystem_path(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(config_lib.ConfigError, match='filesystem path'):
    loop.train(micro_config(), 'gs://bucket/run')
  assert not os.listdir(tmp_path)                 # no local 'gs:' directory
