"""Shoot-out bookkeeping and the entry point."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from g2po_jax.shootout import report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_iterations_to_censors_runs_that_never_get_there():
  success = np.array([[0.1, 0.6, 0.9, 0.7],
                      [0.1, 0.2, 0.3, 0.4],
                      [0.8, 0.9, 0.9, 0.9]])
  its, reached = report.iterations_to(success, 0.8)
  np.testing.assert_array_equal(its, [2, 4, 0])
  np.testing.assert_array_equal(reached, [True, False, True])


def _metrics(success):
  r, l, i1 = success.shape
  zeros = np.zeros((r, l, i1 - 1))
  return {'success': success, 'max_abs_advantage': zeros + 2.0,
          'shared_fraction': zeros + 0.5, 'visits_per_node': zeros + 3.0}


def test_rate_is_chosen_on_held_out_seeds_only():
  # Rate 0 is best on the two held-out seeds, rate 1 on the test seeds.
  success = np.zeros((5, 2, 11))
  success[:2, 0] = 0.9
  success[2:, 1] = 0.9
  s = report.summarize(_metrics(success), np.array([1.0, 2.0]), heldout=2)
  assert s['lr'] == 1.0 and s['lr_index'] == 0 and s['lr_at_grid_edge']
  assert s['num_test_seeds'] == 3
  assert s['auc']['mean'] == 0.0                     # reported on the test seeds
  assert s['iters_to_80']['reached'] == 0 and s['iters_to_80']['mean'] == 11
  json.dumps(s)                                       # JSON-able


def test_select_lr_rejects_bad_heldout():
  for heldout in (0, 3):
    with pytest.raises(ValueError, match='heldout'):
      report.select_lr(np.zeros((3, 2, 5)), heldout)


def test_paired_difference_and_tables():
  base = np.linspace(0, 1, 11)
  fast = np.zeros((4, 1, 11))
  fast[:] = np.minimum(2 * base, 1)
  slow = np.zeros((4, 1, 11))
  slow[:] = base
  summaries = {'grpo': report.summarize(_metrics(slow), np.array([1.0]), 1),
               'g2po': report.summarize(_metrics(fast), np.array([1.0]), 1)}
  d = report.paired_difference(summaries, 'g2po', 'grpo')
  assert d['mean'] == 4 - 8 and d['sem'] == 0 and d['ratio'] == 2.0
  table = report.markdown_tables(summaries)
  assert '| g2po |' in table and '-4.0 ± 0.0 (2.00x)' in table


@pytest.mark.slow
def test_entry_point_writes_its_outputs(tmp_path):
  cmd = [sys.executable, '-m', 'experiments.shootout', '--preset=tiny',
         '--estimators=grpo,g2po', '--seeds=3', '--heldout=1', '--iters=5',
         '--lrs=10,40', f'--out={tmp_path}']
  done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert done.returncode == 0, done.stderr[-2000:]
  for ext in ('md', 'png', 'json'):
    assert (tmp_path / f'tiny.{ext}').stat().st_size > 0
  result = json.loads((tmp_path / 'tiny.json').read_text())
  assert set(result['summaries']) == {'grpo', 'g2po'}
  assert result['summaries']['g2po']['num_test_seeds'] == 2
  assert 'iters to 80%' in (tmp_path / 'tiny.md').read_text()


def test_entry_point_rejects_bad_flags():
  cmd = [sys.executable, '-m', 'experiments.shootout', '--preset=tiny', '--estimators=nope']
  done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert done.returncode != 0 and 'unknown estimators' in done.stderr
