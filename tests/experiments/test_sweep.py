"""Tests for experiments/sweep.py."""

import json
import os
import pathlib
import shlex
import subprocess
import sys
import textwrap

import pytest

from experiments import sweep

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = str(REPO / 'configs' / 'household_small_g2po.py')
ESTIMATORS = ('grpo', 'rloo', 'gigpo', 'g2po', 'graphgpo', 'hgpo', 'gagpo', 'ppo')


@pytest.fixture
def repo_cwd(monkeypatch):
  """Config files import `configs`, as they do under `python -m` from the repo."""
  monkeypatch.chdir(REPO)
  monkeypatch.syspath_prepend(str(REPO))


def _run_sweep(*args, cwd=REPO, timeout=120):
  return subprocess.run([sys.executable, '-m', 'experiments.sweep', *args], cwd=cwd,
                        capture_output=True, text=True, timeout=timeout)


def _finish(member: sweep.Member) -> None:
  """Makes a member's workdir look like a completed run."""
  os.makedirs(os.path.join(member.workdir, 'checkpoints', str(member.num_iterations - 1)))


def test_members_of_the_config_sweep(tmp_path, repo_cwd):
  members = sweep.make_members(f'{CONFIG}:runlocal', str(tmp_path))
  assert [m.name for m in members] == [f'credit.name={e},seed={s}'
                                       for e in ESTIMATORS for s in (0, 1, 2)]
  m = members[7]                                    # gigpo, seed 1
  assert m.overrides == {'credit.name': 'gigpo', 'seed': 1}
  assert m.num_iterations == 2                      # runlocal
  assert m.workdir == os.path.join(str(tmp_path), 'credit.name=gigpo,seed=1')
  assert m.command() == ['python', '-m', 'experiments.train', f'--config={CONFIG}:runlocal',
                         '--config.credit.name=gigpo', '--config.seed=1',
                         f'--workdir={m.workdir}']
  assert not os.listdir(tmp_path)                   # enumerating writes nothing


def test_fixed_overrides_reach_every_member(tmp_path, repo_cwd):
  members = sweep.make_members(CONFIG, str(tmp_path), fixed={'model.init_from': 'runs/sft/p',
                                                             'num_iterations': '7'},
                               only='^credit.name=g2po,')
  assert [m.name for m in members] == ['credit.name=g2po,seed=0', 'credit.name=g2po,seed=1',
                                       'credit.name=g2po,seed=2']
  assert all(m.num_iterations == 7 for m in members)
  assert '--config.model.init_from=runs/sft/p' in members[0].train_args


@pytest.mark.parametrize('fixed, match', [
    ({'model.init_fro': 'x'}, "did you mean 'model.init_from'"),
    ({'num_iterations': 'many'}, 'num_iterations'),
    ({'seed': '3'}, 'which the sweep also varies'),
    ({'rollout.temperature': '-1.0'}, r'rollout.temperature must be a number in \[0, 10\]'),
])
def test_invalid_members_stop_the_sweep(tmp_path, repo_cwd, fixed, match):
  with pytest.raises(sweep.SweepError, match=match):
    sweep.make_members(CONFIG, str(tmp_path), fixed=fixed)


def _config_file(tmp_path, body: str) -> str:
  path = tmp_path / 'sweep_config.py'
  path.write_text(textwrap.dedent('''
      from configs import household_small_g2po

      def get_config(arg=None):
        return household_small_g2po.get_config(arg)
      ''') + textwrap.dedent(body))
  return str(path)


def test_other_sweep_functions_and_their_arg(tmp_path, repo_cwd):
  config = _config_file(tmp_path, '''
      def sweep_ablation(add, arg=None):
        assert arg == 'runlocal'
        for w in (0.0, 1.0):
          add({'credit.node_weight': w, 'credit.edge_weight': 0.5}, seed=3)
      ''')
  members = sweep.make_members(f'{config}:runlocal', str(tmp_path / 'root'), 'sweep_ablation')
  assert [m.name for m in members] == [
      'credit.node_weight=0.0,credit.edge_weight=0.5,seed=3',
      'credit.node_weight=1.0,credit.edge_weight=0.5,seed=3']
  assert '--config.credit.node_weight=0.0' in members[0].train_args
  with pytest.raises(sweep.SweepError, match='no function sweep_x.*sweep_ablation'):
    sweep.make_members(config, str(tmp_path), 'sweep_x')


def test_duplicates_and_unsafe_names(tmp_path, repo_cwd):
  config = _config_file(tmp_path, '''
      def sweep(add):
        add({'seed': 1})
        add({'seed': 1})
      ''')
  with pytest.raises(sweep.SweepError, match='more than once: seed=1'):
    sweep.make_members(config, str(tmp_path))
  assert sweep.member_name({'model.init_from': 'runs/sft policy'}) == (
      'model.init_from=runs_sft_policy')
  long = sweep.member_name({'model.init_from': 'x' * 300})
  assert len(long) <= 120 and long == sweep.member_name({'model.init_from': 'x' * 300})


def test_finished_means_the_final_checkpoint(tmp_path):
  m = sweep.Member('m', {}, str(tmp_path / 'm'), [], num_iterations=3)
  assert not sweep.is_finished(m) and sweep.describe(m) == 'new'
  ckpt = tmp_path / 'm' / 'checkpoints'
  os.makedirs(ckpt / '1')
  os.makedirs(ckpt / '2.orbax-checkpoint-tmp-123')     # a save in progress
  assert not sweep.is_finished(m)
  assert sweep.describe(m) == 'partial (checkpoint at iteration 2 of 3)'
  os.makedirs(ckpt / '2')
  assert sweep.is_finished(m)


def test_done_marker_counts_only_for_its_length(tmp_path):
  m = sweep.Member('m', {}, str(tmp_path), [], num_iterations=3)
  (tmp_path / sweep.DONE).write_text(json.dumps({'num_iterations': 3}))
  assert sweep.is_finished(m)
  longer = sweep.Member('m', {}, str(tmp_path), [], num_iterations=5)
  assert not sweep.is_finished(longer)                  # more iterations asked: resume


def test_launch_print_and_skip(tmp_path, repo_cwd):
  root = tmp_path / 'root'
  members = sweep.make_members(f'{CONFIG}:runlocal', str(root))
  _finish(members[0])
  out = _run_sweep(f'--config={CONFIG}:runlocal', f'--workdir={root}', '--launch=print',
                   '--set=model.init_from=runs/sft/policy')
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert len(lines) == len(members) - 1                 # the finished one is skipped
  assert '23 of 24 members to run' in out.stderr
  for line, m in zip(lines, members[1:]):
    args = shlex.split(line)
    assert args[:3] == ['python', '-m', 'experiments.train']
    assert '--config.model.init_from=runs/sft/policy' in args
    assert args[-1] == f'--workdir={m.workdir}'
  assert os.listdir(root) == [members[0].name]          # printing runs and writes nothing


def test_dry_run_lists_states(tmp_path, repo_cwd):
  root = tmp_path / 'root'
  members = sweep.make_members(f'{CONFIG}:runlocal', str(root), only='seed=0$')
  _finish(members[1])
  os.makedirs(os.path.join(members[2].workdir, 'checkpoints', '0'))
  out = _run_sweep(f'--config={CONFIG}:runlocal', f'--workdir={root}', '--only=seed=0$',
                   '--dry_run')
  assert out.returncode == 0, out.stderr
  assert f'{members[0].name}: new' in out.stdout
  assert f'{members[1].name}: finished' in out.stdout
  assert f'{members[2].name}: partial (checkpoint at iteration 1 of 2)' in out.stdout
  assert '8 members, 1 finished, 7 to run.' in out.stdout


def test_rejects_a_workdir_started_otherwise(tmp_path, repo_cwd):
  root = tmp_path / 'root'
  members = sweep.make_members(f'{CONFIG}:runlocal', str(root), only='^credit.name=grpo,seed=0$')
  os.makedirs(members[0].workdir)
  with open(os.path.join(members[0].workdir, sweep.MEMBER_FILE), 'w') as f:
    json.dump({'name': members[0].name, 'overrides': members[0].overrides, 'fixed': {},
               'config_file': CONFIG, 'config_arg': 'runlocal', 'num_iterations': 2}, f)
  sweep.check_workdirs(members, f'{CONFIG}:runlocal', {})        # same settings: fine
  with pytest.raises(sweep.SweepError, match="fixed was {}, now {'model.init_from': 'x'}"):
    sweep.check_workdirs(members, f'{CONFIG}:runlocal', {'model.init_from': 'x'})


FAKE_TRAINER = '''\
import os, sys, time
workdir = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--workdir=')][0]
running = os.path.join(os.path.dirname(workdir), 'running')
os.makedirs(running, exist_ok=True)
open(os.path.join(running, os.path.basename(workdir)), 'w').close()
peak = len(os.listdir(running))
with open(os.path.join(os.path.dirname(workdir), 'peak'), 'a') as f:
  f.write(f'{peak}\\n')
time.sleep(0.3)
os.remove(os.path.join(running, os.path.basename(workdir)))
print('iter 2/2 | fake')
if 'seed=1' in workdir:
  sys.exit('boom')
if 'seed=2' not in workdir:   # seed 2 "is preempted": exits 0 without the final checkpoint
  os.makedirs(os.path.join(workdir, 'checkpoints', '1'))
'''


def test_run_local_keeps_going_and_reports(tmp_path, capsys):
  # A stand-in interpreter: `python -m experiments.train ...` runs FAKE_TRAINER.
  fake = tmp_path / 'fake_python'
  fake.write_text(f'#!/bin/sh\nshift 2\nexec {sys.executable} {tmp_path / "fake.py"} "$@"\n')
  fake.chmod(0o755)
  (tmp_path / 'fake.py').write_text(FAKE_TRAINER)
  root = tmp_path / 'root'
  members = [sweep.Member(f'seed={s}', {'seed': s}, str(root / f'seed={s}'),
                          [f'--workdir={root / f"seed={s}"}'], 2) for s in range(4)]
  outcomes = sweep.run_local(members, 'c.py', {}, parallel=2, python=str(fake),
                             poll_seconds=0.05)
  by_name = {o.member.name: o for o in outcomes}
  assert {n: (o.returncode, o.finished) for n, o in by_name.items()} == {
      'seed=0': (0, True), 'seed=1': (1, False), 'seed=2': (0, False), 'seed=3': (0, True)}
  assert max(int(x) for x in (root / 'peak').read_text().split()) == 2   # --parallel
  assert (root / 'seed=0' / sweep.DONE).exists() and not (root / 'seed=2' / sweep.DONE).exists()
  assert 'boom' in (root / 'seed=1' / sweep.LOG_FILE).read_text()
  record = json.loads((root / 'seed=3' / sweep.MEMBER_FILE).read_text())
  assert record['overrides'] == {'seed': 3} and record['num_iterations'] == 2
  printed = capsys.readouterr().out
  assert 'FAIL  seed=1: exit 1' in printed
  assert 'STOP  seed=2: exit 0 without the final checkpoint' in printed


def test_error_line_finds_the_exception(tmp_path):
  log = tmp_path / 'log.txt'
  log.write_text('iter 1/2 | ok\nTraceback (most recent call last):\n  File "x.py"\n'
                 'FloatingPointError: 3 updates in a row had a non-finite loss\n'
                 '--------------------\nFor simplicity, JAX has removed its internal frames\n')
  assert sweep._error_line(str(log)) == (
      'FloatingPointError: 3 updates in a row had a non-finite loss')
  log.write_text('config error: credit.name must be one of grpo, rloo\n')
  assert sweep._error_line(str(log)).startswith('config error: credit.name')
  log.write_text('something odd\nlast words\n')
  assert sweep._error_line(str(log)) == 'last words'


@pytest.mark.slow
def test_a_real_local_sweep(tmp_path):
  """Two members of the runlocal sweep train for real, then are skipped."""
  root = tmp_path / 'root'
  args = [f'--config={CONFIG}:runlocal', f'--workdir={root}',
          '--only=^credit.name=(grpo|g2po),seed=0$', '--parallel=2']
  out = _run_sweep(*args, timeout=600)
  assert out.returncode == 0, out.stdout + out.stderr
  for name in ('credit.name=grpo,seed=0', 'credit.name=g2po,seed=0'):
    workdir = root / name
    for f in ('DONE', 'config.json', 'sweep_member.json', 'log.txt'):
      assert (workdir / f).exists(), f
    assert json.loads((workdir / 'config.json').read_text())['credit']['name'] == name[12:16]
    assert list(workdir.glob('events.out.tfevents.*'))
    assert f'done  {name}: exit 0' in out.stdout
  again = _run_sweep(*args)
  assert again.returncode == 0
  assert again.stdout.count(': finished') == 2 and '0 of 2 members to run' in again.stdout
