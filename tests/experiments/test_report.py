"""Tests for experiments/report.py on synthetic TensorBoard logs."""

import json
import math
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorboardX

from experiments import report
from g2po_jax import viz

TASKS, GROUP = 2, 4            # env steps per iteration = length * 8


def _write_run(workdir, name: str, seed: int, success: list[float], *, num_iterations: int,
               length: float = 5.0, credit_time: float = 0.1, evals: dict | None = None,
               first_step: int = 1) -> None:
  """A member's config.json and event file: iteration i logs success[i - first_step]."""
  os.makedirs(workdir, exist_ok=True)
  config = {'seed': seed, 'num_iterations': num_iterations, 'credit': {'name': name},
            'rollout': {'num_tasks': TASKS, 'group_size': GROUP}, 'optim': {'lr': 1e-5}}
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump(config, f)
  # A suffix per start: two writers within one second would share a file name.
  writer = tensorboardX.SummaryWriter(workdir, filename_suffix=f'.from{first_step}')
  for i, s in enumerate(success, start=first_step):
    writer.add_scalar('rollout/success', s, i)
    writer.add_scalar('rollout/episode_length', length, i)
    writer.add_scalar('time/graph', 0.1, i)
    writer.add_scalar('time/credit', credit_time, i)
    writer.add_scalar('time/iteration', 2.0 if i > 1 else 20.0, i)   # iteration 1 compiles
    writer.add_scalar('graph/visits_per_node', 4.0 + seed, i)
    writer.add_scalar('graph/singleton_fraction', 0.1, i)
    writer.add_scalar('graph/nodes', 50.0, i)
  for i, s in (evals or {}).items():
    writer.add_scalar('eval/success', s, i)
  writer.close()


@pytest.fixture
def sweep_root(tmp_path):
  """grpo x 2 seeds (complete), g2po x 2 seeds (one stopped at 3 of 6), one unstarted."""
  root = tmp_path / 'root'
  _write_run(root / 'credit.name=grpo,seed=0', 'grpo', 0, [0.0, 0.0, 0.2, 0.2, 0.4, 0.4],
             num_iterations=6, evals={6: 0.3})
  _write_run(root / 'credit.name=grpo,seed=1', 'grpo', 1, [0.0, 0.2, 0.2, 0.4, 0.4, 0.6],
             num_iterations=6, evals={6: 0.5})
  _write_run(root / 'credit.name=g2po,seed=0', 'g2po', 0, [0.2, 0.4, 0.6, 0.8, 0.8, 1.0],
             num_iterations=6, length=4.0, credit_time=0.3, evals={6: 0.9})
  _write_run(root / 'credit.name=g2po,seed=1', 'g2po', 1, [0.4, 0.6, 0.8], num_iterations=6,
             length=4.0, credit_time=0.3)
  os.makedirs(root / 'credit.name=rloo,seed=0')
  (root / 'credit.name=rloo,seed=0' / 'sweep_member.json').write_text(
      json.dumps({'overrides': {'credit.name': 'rloo', 'seed': 0}}))
  return root


def test_groups_by_everything_but_the_seed(sweep_root):
  members, unstarted = report.load_members(str(sweep_root))
  assert [os.path.basename(d) for d in unstarted] == ['credit.name=rloo,seed=0']
  varying, groups = report.group_members(members)
  assert varying == ['credit.name']
  assert {k: [m.seed for m in v] for k, v in groups.items()} == {'g2po': [0, 1],
                                                                'grpo': [0, 1]}
  by_name = {m.name: m for m in members}
  assert by_name['credit.name=g2po,seed=0'].complete
  assert not by_name['credit.name=g2po,seed=1'].complete
  assert by_name['credit.name=g2po,seed=1'].last_iteration == 3


def test_member_numbers(sweep_root):
  members, _ = report.load_members(str(sweep_root))
  by_name = {m.name: m for m in members}
  n = report.member_numbers(by_name['credit.name=grpo,seed=1'], window=2, threshold=0.5,
                            budgets=[2, 4])
  assert n['final'] == pytest.approx(0.5)                # mean of 0.4, 0.6
  assert n['eval'] == pytest.approx(0.5)
  assert n['budget:2'] == pytest.approx(0.1) and n['budget:4'] == pytest.approx(0.3)
  assert n['to_threshold'] == 6                          # windowed 0.5 first at iteration 6
  assert n['length'] == pytest.approx(5.0)
  assert n['overhead'] == pytest.approx(0.1)             # (0.1 + 0.1) / 2, median
  assert n['graph/visits_per_node'] == pytest.approx(5.0)
  never = report.member_numbers(by_name['credit.name=grpo,seed=0'], 2, 0.5, [])
  assert never['to_threshold'] == math.inf               # complete, never got there
  partial = report.member_numbers(by_name['credit.name=g2po,seed=1'], 2, 0.5, [2, 4])
  assert partial['final'] is None and partial['eval'] is None   # stopped at 3 of 6
  assert partial['budget:2'] == pytest.approx(0.5) and partial['budget:4'] is None
  assert partial['to_threshold'] == 2
  curve = report.env_steps(by_name['credit.name=g2po,seed=1'])
  np.testing.assert_allclose(curve, [32, 64, 96])       # 4 steps x 8 episodes per iteration


def test_resumed_runs_keep_the_newest_values(tmp_path):
  workdir = tmp_path / 'run'
  _write_run(workdir, 'g2po', 0, [0.1, 0.1, 0.1], num_iterations=4)
  # Resumed from the checkpoint of iteration 1: iterations 2-4 are logged again.
  _write_run(workdir, 'g2po', 0, [0.5, 0.6, 0.7], num_iterations=4, first_step=2)
  steps, values = report.read_scalars(str(workdir))['rollout/success']
  assert list(steps) == [1, 2, 3, 4]
  np.testing.assert_allclose(values, [0.1, 0.5, 0.6, 0.7])


def _png_size(path):
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  return Image.open(path).size


def test_writes_the_report(sweep_root, tmp_path):
  batch = viz.Batch(
      group=np.array([5, 5]), state_key=np.array([[1, 2], [1, 3]], np.uint64),
      next_key=np.array([[2, 9], [3, 4]], np.uint64),
      reward=np.array([[0, 10], [0, 0]], np.float32), valid=np.ones((2, 2), bool),
      mask=np.ones((2, 2), bool), advantages=np.array([[1, 1], [-1, -1]], np.float32),
      success_reward=10.0, estimator='g2po', iteration=6)
  viz.save_batch(viz.batch_path(str(sweep_root / 'credit.name=g2po,seed=0'), 6), batch)
  out = tmp_path / 'out'
  path = report.write_report(str(sweep_root), str(out), threshold=0.5, budgets=[2, 4],
                             window=2)
  text = open(path).read()
  rows = {line.split(' | ')[0][2:]: line for line in text.splitlines()
          if line.startswith('| g2po') or line.startswith('| grpo')}
  assert set(rows) == {'g2po', 'grpo'}
  # grpo: final 0.4 and 0.5 -> 0.450 ± 0.071; g2po: only seed 0 finished.
  assert '| grpo | 2 (2) | 0.450 ± 0.071 | 0.400 ± 0.141 |' in rows['grpo']
  assert '| g2po | 2 (1) | 0.900 (n=1) |' in rows['g2po']
  assert '6 (1/2 reached)' in rows['grpo']
  assert '20.0%' in rows['g2po'] and '10.0%' in rows['grpo']    # graph+credit share
  assert 'credit.name=g2po,seed=1: iteration 3 of 6' in text
  assert 'credit.name=rloo,seed=0: not started' in text
  assert '![g2po](graph_g2po.png)' in text
  for name in ('learning_curves.png', 'diagnostics.png', 'graph_g2po.png'):
    width, height = _png_size(out / name)
    assert width > 300 and height > 200


def test_single_run_and_errors(tmp_path):
  run = tmp_path / 'run'
  _write_run(run, 'g2po', 0, [0.0, 1.0], num_iterations=2)
  members, _ = report.load_members(str(run))
  assert [m.name for m in members] == ['run']
  varying, groups = report.group_members(members)
  assert varying == [] and list(groups) == ['all']
  report.write_report(str(run), str(tmp_path / 'out'), 0.5, None, 5)
  assert (tmp_path / 'out' / 'report.md').exists()
  os.makedirs(tmp_path / 'empty')
  with pytest.raises(report.ReportError, match='holds no runs'):
    report.load_members(str(tmp_path / 'empty'))
  with pytest.raises(report.ReportError, match='--window must be at least 1'):
    report.write_report(str(run), str(tmp_path / 'out'), 0.5, None, 0)


def test_graph_flag_draws_a_saved_batch(tmp_path):
  batch = viz.Batch(
      group=np.array([1, 1, 2]), state_key=np.array([[1, 1], [1, 2], [7, 8]], np.uint64),
      next_key=np.array([[1, 2], [2, 3], [8, 9]], np.uint64),
      reward=np.array([[0, 10], [0, 0], [0, 0]], np.float32), valid=np.ones((3, 2), bool),
      mask=np.ones((3, 2), bool), advantages=np.zeros((3, 2), np.float32), success_reward=10.0)
  path = tmp_path / 'batch_000003.npz'
  viz.save_batch(str(path), batch)
  command = [sys.executable, '-m', 'experiments.report', f'--graph={path}', '--graph_group=1']
  out = subprocess.run(command, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == str(tmp_path / 'batch_000003_group1.png')
  _png_size(tmp_path / 'batch_000003_group1.png')
  bad = subprocess.run(command[:-1] + ['--graph_group=5'], capture_output=True, text=True,
                       timeout=120)
  assert bad.returncode != 0 and 'group index must lie in [0, 2)' in bad.stderr


def test_protocol_tables_and_plot(tmp_path):
  """think_action runs: the protocol's rates per logged iteration, seconds by phase
  (one group: both runs are g2po)."""
  root = tmp_path / 'root'
  for seed, errors in ((0, (0.4, 0.2)), (1, (0.6, 0.4))):
    workdir = root / f'credit.name=g2po,seed={seed}'
    _write_run(workdir, 'g2po', seed, [0.1, 0.2], num_iterations=2)
    writer = tensorboardX.SummaryWriter(str(workdir), filename_suffix='.protocol')
    for i, e in enumerate(errors):
      for prefix in ('rollout', 'eval'):
        for tag, value in (('success', 0.1 * i), ('format_error_rate', e),
                           ('invalid_rate', 0.3), ('response_length', 40.0),
                           ('tokens_per_episode', 400.0)):
          writer.add_scalar(f'{prefix}/{tag}', value, 2 * i)
      writer.add_scalar('time/sampling', 3.0 + seed, i + 1)
    writer.close()
  path = report.write_report(str(root), str(tmp_path / 'out'), 0.5, None, 1)
  text = open(path).read()
  assert '## The protocol' in text and os.path.isfile(tmp_path / 'out' / 'protocol.png')
  eval_table = text.split('### Evaluation')[1].split('### Rollouts')[0]
  assert '| all | 0 | 0.000 ± 0.000 | 0.500 ± 0.141 | 0.300 ± 0.000 | 40.0 ± 0.0 |' in eval_table
  assert '| all | 2 | 0.100 ± 0.000 | 0.300 ± 0.141 |' in eval_table
  phases = text.split('### Seconds per iteration by phase')[1]
  assert '| group | sampling | graph | credit | iteration |' in phases
  assert '| all | 3.5 ± 0.7 | 0.1 ± 0.0 |' in phases
