"""The benchmark scripts run end to end (tiny sizes) and write their JSON."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module: str, *flags: str, timeout: int = 300) -> str:
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, '-m', module, *flags], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


def test_bench_credit(tmp_path):
  path = tmp_path / 'credit.json'
  text = _run('experiments.bench_credit', '--steps=6', '--big=false', '--repeats=1',
              '--obs_chars=40', f'--json={path}')
  result = json.loads(path.read_text())['16x8x6']
  assert set(result['estimators']) == {'grpo', 'rloo', 'gigpo', 'g2po', 'graphgpo', 'hgpo',
                                       'gagpo'}
  assert result['estimators']['g2po']['speedup'] > 0
  assert result['source_keys_ms'] > 0 and result['dict_grouping_ms'] > 0
  assert result['keying_us_per_text'] > 0
  assert 16 <= result['kept_bytes_per_step'] < result['text_kept_bytes_per_step']
  assert '| g2po |' in text


def test_bench_matching(tmp_path):
  path = tmp_path / 'matching.json'
  text = _run('experiments.bench_matching', '--steps=6', '--big=false', '--repeats=1',
              '--obs_chars=80', '--world_tasks=1', '--difflib_groups=1', '--near=0.8',
              f'--json={path}')
  result = json.loads(path.read_text())
  speed = result['16x8x6']['rules']
  assert set(speed) == {'exact', 'normalized', 'near 0.8', 'difflib 0.95'}
  assert speed['difflib 0.95']['extrapolated'] and all(r['ms'] > 0 for r in speed.values())
  assert all(r['cpu_ms'] >= 0 for r in speed.values())
  world = result['world']['rules']
  assert world['normalized']['purity'] == world['normalized']['recall'] == 1.0
  assert '| near 0.8 |' in text


def test_bench_model(tmp_path):
  path = tmp_path / 'model.json'
  _run('experiments.bench_model', '--batch=2', '--prompt_len=16', '--new_tokens=4',
       '--repeats=1', '--peak_n=128', f'--json={path}')
  result = json.loads(path.read_text())
  for key in ('sample_tokens_per_s_kv', 'sample_tokens_per_s_recompute', 'train_tokens_per_s',
              'train_flops_fraction_of_peak'):
    assert result[key] > 0, key


@pytest.mark.parametrize('env', ['household-small', 'shop-small'])
def test_bench_envs(env, tmp_path):
  path = tmp_path / 'envs.json'
  _run('experiments.bench_envs', f'--envs={env}', '--tasks=2', '--group_size=2',
       '--speed_seconds=0.1', f'--json={path}')
  result = json.loads(path.read_text())['envs'][env]
  for key in ('steps_per_s', 'reset_s', 'shared_fraction', 'visits_per_node',
              'singleton_fraction', 'win_rate', 'score'):
    assert key in result, key
  assert result['steps_per_s'] > 0 and 0 <= result['win_rate'] <= 1


def test_bench_envs_by_worker_count(tmp_path):
  path = tmp_path / 'envs.json'
  text = _run('experiments.bench_envs', '--envs=twx-coin', '--tasks=2', '--group_size=2',
              '--speed_seconds=0.1', '--worker_counts=1,2', f'--json={path}')
  result = json.loads(path.read_text())['envs']['twx-coin']
  assert set(result['steps_per_s_by_workers']) == {'1', '2'}
  assert min(result['steps_per_s_by_workers'].values()) > 0
  assert 'steps/s by worker processes' in text


@pytest.mark.slow
def test_bench_recipe(tmp_path):
  path = tmp_path / 'recipe.json'
  text = _run('experiments.bench_recipe', '--layers=1', '--tasks=1', '--max_steps=3',
              '--prompt_len=512', '--max_new_tokens=16', f'--json={path}', timeout=900)
  result = json.loads(path.read_text())
  for key in ('seconds_sampling', 'seconds_env', 'seconds_update', 'generated_tokens_per_s',
              'train_tokens_per_s', 'update_fraction_of_peak', 'decode_fraction_of_roofline',
              'peak_memory_bytes', 'compile_seconds_first_iteration'):
    assert result[key] > 0, key
  assert result['vocab_size'] == 151936 and result['layers'] == 1
  assert '| update model FLOP/s / peak |' in text


@pytest.mark.slow
def test_bench_rollout(tmp_path):
  path = tmp_path / 'rollout.json'
  text = _run('experiments.bench_rollout', '--settings=demo', '--iterations=2',
              f'--json={path}', timeout=900)
  demo = json.loads(path.read_text())['demo']
  assert demo['on']['samples'] == demo['off']['samples']
  assert demo['on']['unique_prompts_per_sample'] < 1          # first steps share prompts
  assert demo['on']['prefill_tokens_saved'] > 0 and demo['on']['train_tokens_saved'] > 0
  assert 'duplication factor per rollout step' in text
