"""Tests for experiments/launch.py and `experiments/sweep.py --launch=tpu|slurm`.

The generated scripts are compared with golden files (tests/experiments/golden/,
with the test's temporary directory as @TMP@ and this checkout as @REPO@;
`UPDATE_GOLDEN=1` rewrites them), checked with `bash -n`, and run: the TPU
member script against a stand-in `gcloud` that runs each worker's command with
a local shell, the SLURM array script against a stand-in `srun` that starts
the processes of a one-node job step on this machine (with a fake trainer,
and in the slow test with the real one on 2 processes over gloo).
"""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap

from absl import flags
from absl.testing import flagsaver
import pytest

from experiments import launch
from experiments import sweep
from tests.train.test_distributed import free_port

REPO = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = pathlib.Path(__file__).parent / 'golden'
TIMEOUT = 300              # seconds for any one process a script starts
# An override with spaces, commas and a quote: one argv element on every host.
TRICKY = "/shared/sft policy,v2 'q'"

SWEEP_CONFIG = f'''
from configs import household_small_g2po

def get_config(arg=None):
  return household_small_g2po.get_config(arg)

def sweep(add):
  for seed in (0, 1):
    add({{'credit.name': 'g2po', 'seed': seed}})
  add({{'credit.name': 'grpo', 'model.init_from': {TRICKY!r}}})
'''

# A stand-in for `gcloud compute tpus tpu-vm ssh TPU --zone=Z --worker=W
# --command=C`: runs C with a login shell's `bash -c` once per worker (2
# workers), as ssh does on each TPU VM. GCLOUD_DOWN calls fail first, as for a
# slice that is preempted.
FAKE_GCLOUD = r'''#!/usr/bin/env bash
echo "$*" >> "$CALLS"
calls=$(wc -l < "$CALLS")
if ((calls <= ${GCLOUD_DOWN:-0})); then
  echo "ERROR: (gcloud.compute.tpus.tpu-vm.ssh) could not reach the slice" >&2
  exit 255
fi
for arg; do
  case $arg in
    --worker=*) worker=${arg#*=} ;;
    --command=*) command=${arg#*=} ;;
  esac
done
cd "$HOME" || exit 1
if [[ $worker == all ]]; then
  TPU_WORKER_ID=0 bash -c "$command" &
  TPU_WORKER_ID=1 bash -c "$command"
  status=$?
  wait $! || status=$?
  exit "$status"
fi
TPU_WORKER_ID=$worker exec bash -c "$command"
'''

# A stand-in for `srun`: the command as NODES x NTASKS_PER_NODE processes on
# this machine, with the variables srun sets for a one-node job step (what
# JAX's SLURM detection reads), each under `timeout -s KILL`.
FAKE_SRUN = r'''#!/usr/bin/env bash
echo "srun $*" >> "$CALLS"
nodes=1
per_node=1
while [[ $1 == -* ]]; do
  case $1 in
    --nodes=*) nodes=${1#*=} ;;
    --ntasks-per-node=*) per_node=${1#*=} ;;
  esac
  shift
done
n=$((nodes * per_node))
pids=()
for ((i = 0; i < n; i++)); do
  SLURM_STEP_NODELIST=localhost SLURM_STEP_NUM_NODES=1 SLURM_NTASKS=$n SLURM_PROCID=$i \
    SLURM_LOCALID=$i timeout -s KILL "$STUB_TIMEOUT" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit "$status"
'''

FAKE_SCONTROL = r'''#!/usr/bin/env bash
echo "scontrol $*" >> "$CALLS"
'''

# The interpreter the scripts are given: `-m experiments.train` runs
# FAKE_TRAINER, anything else (the finished check) the real Python.
FAKE_PYTHON = '''#!/bin/sh
if [ "$1" = -m ]; then shift 2; exec {python} {trainer} "$@"; fi
exec {python} "$@"
'''

# Each process (worker) records its argv as WORKDIR/argv.RUN.WORKER; its run
# k does what FAKE_RUNS[k] says: 'preempted' (exit 0 without the final
# checkpoint, as after a SIGTERM), 'fail' (exit 3) or 'finish' (the final
# checkpoint, exit 0).
FAKE_TRAINER = '''\
import json, os, sys
workdir = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--workdir=')][0]
worker = os.environ.get('TPU_WORKER_ID') or os.environ['SLURM_PROCID']
os.makedirs(workdir, exist_ok=True)
run = sum(n.startswith('argv.') and n.endswith(f'.{worker}') for n in os.listdir(workdir))
with open(os.path.join(workdir, f'argv.{run}.{worker}'), 'w') as f:
  json.dump(sys.argv[1:], f)
outcome = os.environ['FAKE_RUNS'].split(',')[run]
if outcome == 'fail':
  sys.exit(3)
if outcome == 'finish':
  os.makedirs(os.path.join(workdir, 'checkpoints', os.environ['FAKE_LAST_STEP']), exist_ok=True)
'''


@pytest.fixture
def repo_cwd(monkeypatch):
  monkeypatch.chdir(REPO)
  monkeypatch.syspath_prepend(str(REPO))


def _write(path: pathlib.Path, text: str, executable: bool = False) -> str:
  path.write_text(text)
  if executable:
    path.chmod(0o755)
  return str(path)


def _run_sweep(*args):
  return subprocess.run([sys.executable, '-m', 'experiments.sweep', *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120)


def _main(**flag_values: str | list[str]) -> None:
  """sweep.main in this process, as `--KEY=VALUE ...` on its command line runs it."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  with flagsaver.as_parsed(**flag_values):
    sweep.main(['sweep'])


def _generate(tmp_path, **launch_flags: str) -> tuple[pathlib.Path, list[sweep.Member]]:
  """Writes the sweep config, finishes member 0, runs sweep.py --launch=..."""
  config = _write(tmp_path / 'sweep_config.py', SWEEP_CONFIG)
  root = tmp_path / 'root'
  members = sweep.make_members(config, str(root), fixed={'num_iterations': '3'})
  os.makedirs(os.path.join(members[0].workdir, 'checkpoints', '2'))      # finished
  _main(config=config, workdir=str(root), set=['num_iterations=3'], **launch_flags)
  return root, members


def _check_golden(tmp_path, root: pathlib.Path, name: str) -> None:
  """Every generated script equals its golden file and parses (`bash -n`)."""
  launch_dir = root / launch.LAUNCH_DIR
  scripts = sorted(launch_dir.rglob('*.sh'))
  golden_dir = GOLDEN / name
  if os.environ.get('UPDATE_GOLDEN'):
    for p in scripts:
      dest = golden_dir / p.relative_to(launch_dir)
      dest.parent.mkdir(parents=True, exist_ok=True)
      dest.write_text(p.read_text().replace(str(tmp_path), '@TMP@').replace(str(REPO), '@REPO@'))
  expected = sorted(p.relative_to(golden_dir) for p in golden_dir.rglob('*.sh'))
  assert [p.relative_to(launch_dir) for p in scripts] == expected
  for p in scripts:
    golden = (golden_dir / p.relative_to(launch_dir)).read_text()
    assert p.read_text() == golden.replace('@TMP@', str(tmp_path)).replace('@REPO@', str(REPO)), p
    assert os.access(p, os.X_OK)
    check = subprocess.run(['bash', '-n', str(p)], capture_output=True, text=True)
    assert check.returncode == 0, f'{p}: {check.stderr}'


def _args_arrays(script: str) -> list[list[str]]:
  """The items of each ARGS=(...) array of a script, as bash reads them."""
  return [shlex.split(body) for body in re.findall(r'ARGS=\((.*?)\n *\)', script, re.DOTALL)]


# ---------------------------------------------------------------- golden files

def test_tpu_scripts_golden(tmp_path, repo_cwd, capsys):
  root, members = _generate(tmp_path, launch='tpu', tpus='slice-a,slice-b', zone='us-central2-b',
                            repo='g2po_jax')
  out = capsys.readouterr()
  _check_golden(tmp_path, root, 'tpu')
  launch_dir = root / launch.LAUNCH_DIR
  # The finished member is left out; the others alternate between the slices.
  assert sorted(os.listdir(launch_dir / 'tpu')) == [f'{m.name}.sh' for m in sorted(
      members[1:], key=lambda m: m.name)]
  assert 'run_member credit.name=g2po,seed=1' in (launch_dir / 'tpu_slice-a.sh').read_text()
  assert 'run_member credit.name=grpo,' in (launch_dir / 'tpu_slice-b.sh').read_text()
  for m in members[1:]:
    script = (launch_dir / 'tpu' / f'{m.name}.sh').read_text()
    # The retry loop, and the trainer with --distributed on every worker.
    assert 'while true; do' in script and 'on_slice all -m experiments.train "${ARGS[@]}"' in script
    assert _args_arrays(script) == [[*m.train_args, '--distributed']]
    record = json.loads(pathlib.Path(m.workdir, sweep.MEMBER_FILE).read_text())
    assert record['launch'] == str(launch_dir / 'tpu' / f'{m.name}.sh')
  assert f'--config.model.init_from={TRICKY}' in members[2].train_args
  assert 'nohup bash' in out.out and f'tensorboard --logdir {root}' in out.out
  assert '1 finished member(s) left out' in out.out
  assert not os.path.exists(os.path.join(members[0].workdir, sweep.MEMBER_FILE))


def test_slurm_script_golden(tmp_path, repo_cwd, capsys):
  root, members = _generate(tmp_path, launch='slurm', nodes='1', gpus_per_node='2',
                            partition='gpu', time='2-00:00:00', parallel='4',
                            repo='/shared/g2po_jax')
  out = capsys.readouterr()
  _check_golden(tmp_path, root, 'slurm')
  script = (root / launch.LAUNCH_DIR / launch.SLURM_SCRIPT).read_text()
  assert '#SBATCH --array=0-1%4' in script and '#SBATCH --requeue' in script
  assert '"$PYTHON" -m experiments.train "${ARGS[@]}"' in script
  # One array task per unfinished member, its trainer flags with --distributed.
  assert _args_arrays(script) == [[*m.train_args, '--distributed'] for m in members[1:]]
  for i, m in enumerate(members[1:]):
    assert f'  {i})\n    NAME={shlex.quote(m.name)}\n' in script
  assert f'sbatch {root}/launch/slurm.sh' in out.out


# ------------------------------------------------------------ invalid requests

@pytest.mark.parametrize('args, match', [
    (dict(workdir='runs/x', launch='tpu', tpu='a', zone='z-1'), 'absolute path'),
    (dict(launch='tpu', tpu='a'), 'wants --zone'),
    (dict(launch='tpu', tpu='a', tpus='b,c', zone='z'), '--tpu=NAME, or'),
    (dict(launch='tpu', tpus='b,C', zone='z'), "TPU VM names .*got 'C'"),
    (dict(launch='tpu', tpu='a', zone='z', nodes='2'), '--nodes is for --launch=slurm'),
    (dict(launch='slurm', nodes='2'), 'wants --nodes=N and --gpus_per_node'),
    (dict(launch='slurm', nodes='2', gpus_per_node='4', time='1 day'), '--time wants a value'),
    (dict(launch='slurm', nodes='2', gpus_per_node='4'),
     r'rollout.num_tasks \(2\) must be a multiple of the 8 processes'),
    (dict(repo='x'), '--repo is for --launch=tpu or slurm'),
])
def test_invalid_launch_requests(tmp_path, repo_cwd, args, match):
  with pytest.raises(sweep.SweepError, match=match):
    _main(**{'config': 'configs/household_small_g2po.py:runlocal',
             'workdir': str(tmp_path / 'root'), **args})
  assert not os.listdir(tmp_path)                     # nothing written


def test_nothing_to_launch(tmp_path, repo_cwd, capsys):
  config = _write(tmp_path / 'sweep_config.py', SWEEP_CONFIG)
  root = tmp_path / 'root'
  for m in sweep.make_members(config, str(root)):
    os.makedirs(os.path.join(m.workdir, 'checkpoints', str(m.num_iterations - 1)))
  _main(config=config, workdir=str(root), launch='slurm', nodes='1', gpus_per_node='2')
  assert 'all 3 members are finished; nothing to launch.' in capsys.readouterr().out
  assert not (root / launch.LAUNCH_DIR).exists()


def test_the_command_line_writes_the_scripts(tmp_path):
  config = _write(tmp_path / 'sweep_config.py', SWEEP_CONFIG)
  root = tmp_path / 'root'
  out = _run_sweep(f'--config={config}', f'--workdir={root}/', '--launch=tpu', '--tpu=s',
                   '--zone=z')
  assert out.returncode == 0, out.stderr
  assert sorted(os.listdir(root / launch.LAUNCH_DIR)) == ['tpu', 'tpu_s.sh']
  assert f'nohup bash {root}/launch/tpu_s.sh > {root}/launch/tpu_s.log 2>&1 &' in out.stdout
  bad = _run_sweep(f'--config={config}', f'--workdir={root}', '--launch=tpu', '--tpu=s')
  assert bad.returncode == 1 and 'sweep error: --launch=tpu wants --zone' in bad.stderr


def test_finished_check_is_the_sweep_rule(tmp_path):
  """The check the scripts run on the hosts, through a real interpreter."""
  def check(n):
    return subprocess.run([sys.executable, '-c', launch.FINISHED_CHECK, str(tmp_path), str(n)],
                          cwd=REPO, capture_output=True, text=True, check=True).stdout
  assert check(2) == 'unfinished\n'
  os.makedirs(tmp_path / 'checkpoints' / '1')
  assert check(2) == 'finished\n'
  (tmp_path / launch.DONE).write_text(json.dumps({'num_iterations': 5}))
  assert check(5) == 'finished\n' and check(4) == 'unfinished\n'


# ------------------------------------------------------ the scripts, run here

def _fakes(tmp_path) -> dict[str, str]:
  """Stand-ins on PATH, the fake interpreter, and the environment to run with."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  _write(bin_dir / 'gcloud', FAKE_GCLOUD, executable=True)
  _write(bin_dir / 'srun', FAKE_SRUN, executable=True)
  _write(bin_dir / 'scontrol', FAKE_SCONTROL, executable=True)
  trainer = _write(tmp_path / 'fake_trainer.py', FAKE_TRAINER)
  _write(tmp_path / 'fake_python', FAKE_PYTHON.format(python=sys.executable, trainer=trainer),
         executable=True)
  home = tmp_path / 'home'
  home.mkdir()
  return dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', HOME=str(home),
              CALLS=str(tmp_path / 'calls'), STUB_TIMEOUT=str(TIMEOUT), FAKE_LAST_STEP='2',
              JAX_PLATFORMS='cpu')


def _members_for_fakes(tmp_path) -> list[sweep.Member]:
  config = _write(tmp_path / 'sweep_config.py', SWEEP_CONFIG)
  return sweep.make_members(config, str(tmp_path / 'root'), fixed={'num_iterations': '3'})


def _argv_files(workdir: str) -> dict[str, list[str]]:
  return {n: json.loads(pathlib.Path(workdir, n).read_text())
          for n in sorted(os.listdir(workdir)) if n.startswith('argv.')}


def _run_script(path: str, env: dict[str, str], **extra) -> subprocess.CompletedProcess:
  return subprocess.run(['timeout', '-s', 'KILL', str(TIMEOUT), 'bash', path], cwd=REPO,
                        env={**env, **extra}, capture_output=True, text=True,
                        timeout=TIMEOUT + 30)


def test_tpu_member_runs_again_until_finished(tmp_path, repo_cwd):
  env = _fakes(tmp_path)
  m = _members_for_fakes(tmp_path)[2]                 # the override with spaces and commas
  scripts = launch.tpu_scripts([m], str(tmp_path / 'root'), ['slice-a'], 'zone-a', str(REPO),
                               str(tmp_path / 'fake_python'))
  member_script = launch.tpu_member_path(m.name)
  (path,) = launch.write_scripts(str(tmp_path / 'root'), {member_script: scripts[member_script]})
  # The slice is unreachable for 2 calls, then the member is preempted, fails,
  # and finishes on its third run.
  out = _run_script(path, env, GCLOUD_DOWN='2', RETRY_SECONDS='0', MAX_TRIES='3',
                    FAKE_RUNS='preempted,fail,finish')
  assert out.returncode == 0, out.stdout + out.stderr
  assert out.stdout.count(f'{m.name}: run ') == 3 and f'{m.name}: finished' in out.stdout
  assert out.stderr.count('no answer from slice-a') == 2
  argv = _argv_files(m.workdir)
  assert sorted(argv) == [f'argv.{run}.{w}' for run in range(3) for w in (0, 1)]
  for args in argv.values():                          # every worker, every run
    assert args == [*m.train_args, '--distributed']
  calls = pathlib.Path(env['CALLS']).read_text().splitlines()
  assert sum('--worker=all' in c for c in calls) == 3
  assert all('slice-a --zone=zone-a' in c for c in calls)
  # Finished: a new start only checks.
  again = _run_script(path, env, RETRY_SECONDS='0', FAKE_RUNS='fail')
  assert again.returncode == 0 and f'{m.name}: finished' in again.stdout
  assert len(pathlib.Path(env['CALLS']).read_text().splitlines()) == len(calls) + 1


def test_tpu_member_gives_up_after_max_tries(tmp_path, repo_cwd):
  env = _fakes(tmp_path)
  m = _members_for_fakes(tmp_path)[1]
  root = str(tmp_path / 'root')
  scripts = launch.tpu_scripts([m], root, ['slice-a'], 'zone-a', str(REPO),
                               str(tmp_path / 'fake_python'))
  paths = launch.write_scripts(root, scripts)
  queue = [p for p in paths if p.endswith('tpu_slice-a.sh')][0]
  out = _run_script(queue, env, RETRY_SECONDS='0', MAX_TRIES='2', FAKE_RUNS='fail,fail,fail')
  assert out.returncode == 1
  assert f'FAIL  {m.name}' in out.stdout and '1 of 1 member(s) did not finish' in out.stdout
  log = pathlib.Path(m.workdir, 'log.txt').read_text()
  assert 'not finished after 2 runs' in log
  assert len(_argv_files(m.workdir)) == 4             # 2 runs x 2 workers


@pytest.mark.parametrize('runs, code, requeued', [
    ('finish', 0, False),
    ('preempted', 0, True),     # SIGTERM before the time limit: checkpoint, exit 0
    ('fail', 3, False),
])
def test_slurm_task_finishes_requeues_or_fails(tmp_path, repo_cwd, runs, code, requeued):
  env = _fakes(tmp_path)
  members = _members_for_fakes(tmp_path)
  root = str(tmp_path / 'root')
  (path,) = launch.write_scripts(root, {launch.SLURM_SCRIPT: launch.slurm_script(
      members, root, nodes=1, gpus_per_node=2, repo=str(REPO),
      python=str(tmp_path / 'fake_python'))})
  m = members[2]
  out = _run_script(path, env, SLURM_ARRAY_TASK_ID='2', SLURM_JOB_ID='77', FAKE_RUNS=runs)
  assert out.returncode == code, out.stdout + out.stderr
  calls = pathlib.Path(env['CALLS']).read_text().splitlines()
  assert calls[0].startswith('srun --nodes=1 --ntasks-per-node=2 ')
  assert ('scontrol requeue 77' in calls) == requeued
  argv = _argv_files(m.workdir)
  assert sorted(argv) == ['argv.0.0', 'argv.0.1']
  assert all(a == [*m.train_args, '--distributed'] for a in argv.values())
  log = pathlib.Path(m.workdir, 'log.txt').read_text()
  assert f'{m.name}: job 77' in log
  assert (f'{m.name}: finished' in log) == (runs == 'finish')
  if runs == 'finish':                                # a requeued run of it: only the check
    again = _run_script(path, env, SLURM_ARRAY_TASK_ID='2', SLURM_JOB_ID='77', FAKE_RUNS='fail')
    assert again.returncode == 0
    assert len(pathlib.Path(env['CALLS']).read_text().splitlines()) == len(calls)


@pytest.mark.slow
def test_a_slurm_member_trains_on_two_processes(tmp_path, repo_cwd):
  """The generated array script, its srun given 2 local processes: one member
  trains with --distributed (JAX's SLURM detection, gloo) and finishes."""
  config = _write(tmp_path / 'micro_config.py', textwrap.dedent('''
      from tests.train.common import micro_config

      def get_config(arg=None):
        return micro_config(seed=1, env__max_steps=8, rollout__max_new_tokens=1)

      def sweep(add):
        add({'credit.name': 'g2po'})
        add({'credit.name': 'grpo'})
      '''))
  root = tmp_path / 'root'
  out = _run_sweep(f'--config={config}', f'--workdir={root}', '--launch=slurm', '--nodes=1',
                   '--gpus_per_node=2', f'--repo={REPO}', f'--python={sys.executable}')
  assert out.returncode == 0, out.stderr
  env = _fakes(tmp_path)
  script = str(root / launch.LAUNCH_DIR / launch.SLURM_SCRIPT)
  task = dict(SLURM_ARRAY_TASK_ID='1', SLURM_JOB_ID='5', JAX_COORDINATOR_PORT=str(free_port()))
  run = _run_script(script, env, **task)
  workdir = root / 'credit.name=grpo'
  log = (workdir / 'log.txt').read_text()
  assert run.returncode == 0, log[-5000:]
  assert 'process 1 of 2; 1 of 2 devices are local' in log
  digests = re.findall(r'parameter digest of process (\d) of 2: (\w+)', log)
  assert sorted(p for p, _ in digests) == ['0', '1'] and len({d for _, d in digests}) == 1
  assert 'iter 1/1' in log and 'credit.name=grpo: finished' in log
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['0']
  assert len(list(workdir.glob('events.out.tfevents.*'))) == 1   # process 0 writes logs
  assert not (root / 'credit.name=g2po' / 'checkpoints').exists()
  again = _run_script(script, env, **task)
  assert again.returncode == 0
  assert pathlib.Path(env['CALLS']).read_text().count('srun ') == 1   # finished: no srun
