"""End-to-end tests of the training loop on the micro config."""

import json
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest
from tensorboard.backend.event_processing import event_accumulator

from g2po_jax.train import config as config_lib
from g2po_jax.train import loop
from tests.train.common import micro_config
from tests.train.common import follows_oracle


def read_scalars(logdir: str) -> dict[str, dict[int, float]]:
  """tag -> {step: value} of the TensorBoard event files in logdir."""
  acc = event_accumulator.EventAccumulator(logdir, size_guidance={'scalars': 0})
  acc.Reload()
  return {tag: {e.step: e.value for e in acc.Scalars(tag)}
          for tag in acc.Tags()['scalars']}


def read_checkpoint(workdir: str) -> tuple[int, dict]:
  """(iteration, state as nested numpy arrays) of the newest checkpoint."""
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  step = manager.latest_step()
  out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  manager.close()
  return step, out.state


def assert_trees_equal(a, b) -> None:
  flat_a, flat_b = ocp.tree.to_flat_dict(a), ocp.tree.to_flat_dict(b)
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]),
                                  err_msg=str(key))


@pytest.mark.parametrize('estimator', config_lib.ESTIMATORS)
def test_one_iteration_per_estimator(estimator, tmp_path, monkeypatch):
  follows_oracle(monkeypatch)
  values = loop.train(micro_config(estimator, env__max_steps=10), str(tmp_path))
  for key in ('train/loss', 'train/policy_loss', 'train/kl', 'train/entropy',
              'train/grad_norm', 'adv/mean', 'adv/std', 'graph/nodes'):
    assert np.isfinite(values[key]), key
  assert values['rollout/episode_length'] > 0
  assert values['train/nonfinite_updates'] == 0
  # The credit reached the update: not all advantages are 0.
  assert values['adv/max_abs'] > 0 and values['adv/zero_fraction'] < 1
  if estimator == 'ppo':
    assert np.isfinite(values['train/value_loss'])


def test_tensorboard_logs_hold_the_metrics(tmp_path):
  c = micro_config('g2po', num_iterations=2, eval__every=2, eval__num_tasks=2)
  loop.train(c, str(tmp_path))
  scalars = read_scalars(str(tmp_path))
  expected = [
      'rollout/success', 'rollout/episode_length', 'rollout/invalid_rate', 'rollout/reward',
      'eval/success', 'eval/episode_length', 'adv/mean', 'adv/std', 'adv/max_abs',
      'graph/nodes', 'graph/edges', 'graph/visits_per_node', 'graph/singleton_fraction',
      'matching/purity', 'matching/recall', 'matching/merged_nodes',
      'matching/true_singleton_fraction', 'time/matching', 'train/loss', 'train/policy_loss', 'train/kl', 'train/entropy', 'train/clip_fraction',
      'train/grad_norm', 'train/lr', 'time/rollout', 'time/graph', 'time/credit',
      'time/update', 'time/iteration', 'throughput/env_steps_per_s',
      'throughput/sampled_tokens_per_s', 'throughput/train_tokens_per_s']
  missing = [tag for tag in expected if tag not in scalars]
  assert not missing, f'missing TensorBoard tags: {missing}'
  assert sorted(scalars['train/loss']) == [1, 2]
  assert any(tag.startswith('rollout/success/') for tag in scalars)  # per task type
  with open(tmp_path / 'config.json') as f:
    assert json.load(f)['credit']['name'] == 'g2po'


def test_the_matching_rule_reaches_the_graph(tmp_path):
  # household-noisy: the normalizers give back exactly the true states.
  c = micro_config('g2po', env__name='household-noisy', env__max_steps=10,
                   graph__matching='normalized')
  values = loop.train(c, str(tmp_path))
  assert values['matching/purity'] == values['matching/recall'] == 1.0
  assert values['matching/singleton_fraction'] == values['matching/true_singleton_fraction']
  assert values['graph/singleton_fraction'] == values['matching/singleton_fraction']


def test_resume_replays_an_uninterrupted_run_exactly(tmp_path):
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  loop.train(micro_config(num_iterations=2, ckpt__every=1), straight)
  loop.train(micro_config(num_iterations=1, ckpt__every=1), resumed)
  loop.train(micro_config(num_iterations=2, ckpt__every=1), resumed)   # resumes at 1
  step_a, state_a = read_checkpoint(straight)
  step_b, state_b = read_checkpoint(resumed)
  assert step_a == step_b == 1
  assert_trees_equal(state_a, state_b)
  a, b = read_scalars(straight), read_scalars(resumed)
  for tag, values in a.items():
    if 2 in values and not tag.startswith(('time/', 'throughput/')):
      assert values[2] == b[tag][2], tag


def test_bad_config_stops_with_the_key_named(tmp_path):
  with pytest.raises(config_lib.ConfigError, match='rollout.group_size'):
    loop.train(micro_config(rollout__group_size=-1), str(tmp_path))
  with pytest.raises(config_lib.ConfigError, match='credit.name'):
    loop.train(micro_config('bogus'), str(tmp_path))
  with pytest.raises(config_lib.ConfigError, match='rollout.history'):
    loop.train(micro_config(rollout__history=10), str(tmp_path))
  assert not os.path.exists(tmp_path / 'checkpoints')
