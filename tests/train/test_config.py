"""Tests for g2po_jax/train/config.py: loading from the command line and the
one-line errors of validation (each names the key)."""

import logging as py_logging
import os

import pytest

from g2po_jax import envs
from g2po_jax import protocol
from g2po_jax import tokenizers
from g2po_jax.train import config as config_lib
from tests.train.common import micro_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, 'configs', 'household_small_g2po.py')


@pytest.fixture
def repo_cwd(monkeypatch):
  monkeypatch.chdir(REPO)           # config files import `configs.common`
  monkeypatch.syspath_prepend(REPO)


def _error(fn, *args) -> str:
  """The message of the ConfigError fn(*args) raises; it must be one line."""
  with pytest.raises(config_lib.ConfigError) as info:
    fn(*args)
  message = str(info.value)
  assert '\n' not in message, message
  return message


def test_load_applies_typed_overrides(repo_cwd):
  c = config_lib.load(f'{CONFIG}:runlocal', [
      'seed=3', 'optim.lr=1e-4', 'model.remat=true', 'credit.gamma=0.9', 'credit.norm=mean_norm',
      'model.init_from=runs/x', 'env.kwargs.num_receptacles=5',
      "env.kwargs.task_types=('clean',)"])
  assert (c.seed, c.optim.lr, c.model.remat, c.credit.gamma) == (3, 1e-4, True, 0.9)
  assert c.credit.norm == 'mean_norm' and c.model.init_from == 'runs/x'
  assert c.env.kwargs.to_dict() == {'num_receptacles': 5, 'task_types': ('clean',)}
  assert c.rollout.num_tasks == 2                               # the :runlocal arg
  config_lib.validate(c)
  with pytest.raises(AttributeError):                           # locked, as config_flags did
    c.new_key = 1


@pytest.mark.parametrize('override, expected', [
    ('rollout.groupsize=8', "'rollout.groupsize': rollout has no 'groupsize'; did you mean "
                            "'rollout.group_size'?"),
    ('bogus=1', "'bogus': the config has no 'bogus'; it has ckpt, credit"),
    ('optimizer.lr=1e-4', "'optimizer.lr': the config has no 'optimizer'; did you mean 'optim'?"),
    ('credit.gama=0.9', "'credit.gama': credit has no 'gama'; did you mean 'credit.gamma'?"),
    ('seed.x=1', "'seed.x': seed is a value, not a section"),
    ('seed=abc', "seed='abc': seed takes a value of type int"),
    ('model.remat=maybe', 'model.remat takes a value of type bool'),
    ('env=1', 'env is a section'),
    ('seed', '--config.seed needs a value'),
])
def test_bad_overrides_are_one_line_config_errors(repo_cwd, override, expected):
  assert expected in _error(config_lib.load, CONFIG, [override])


def test_missing_config_file_and_bad_config_arg(repo_cwd):
  assert "no config file 'configs/nope.py'" in _error(config_lib.load, 'configs/nope.py')
  assert "unknown config arg 'runlcal'; known: runlocal" in _error(
      config_lib.load, f'{CONFIG}:runlcal')


@pytest.mark.parametrize('overrides, expected', [
    (dict(seed=-1), 'seed must be an integer in [0, 2**31); got -1'),
    (dict(seed=2**40), 'seed must be an integer in [0, 2**31)'),
    (dict(model__preset='huge'), "model.preset must be one of tiny, micro"),
    (dict(model__dtype='float13'), "model.dtype must be one of float32, bfloat16, float16"),
    (dict(model__param_dtype='int8'), 'model.param_dtype must be one of'),
    (dict(credit__success_reward=1e30), 'credit.success_reward must be a number in (0, 1e+09]'),
    (dict(credit__penalty=1e30), "credit: option 'penalty' of 'g2po' must be a number in"),
    (dict(graph__matching='fuzzy'), 'graph.matching must be one of exact, normalized, near, '
                                    "difflib; got 'fuzzy'"),
    (dict(graph__similarity=1.5), 'graph.similarity must be a number in (0, 1]; got 1.5'),
    (dict(graph__metric='dice'), "graph.metric must be one of jaccard, cosine; got 'dice'"),
    (dict(graph__rules=(('(', ''),)), "graph.rules[0]: pattern '(' does not compile"),
    (dict(graph__rules=(('x',),)), 'graph.rules[0] must be a (pattern, replacement) pair'),
    (dict(sft__noise=0.8, sft__invalid=0.3), 'sft.invalid must be a number in [0, 0.2]; got 0.3'),
])
def test_bad_values_are_one_line_config_errors(overrides, expected):
  assert expected in _error(config_lib.validate, micro_config(**overrides))


def test_environment_options_are_checked_with_a_hint():
  c = micro_config()
  c.env.kwargs.num_receptacle = 3
  assert ("env.kwargs.num_receptacle: household-small has no option 'num_receptacle'; did you "
          "mean 'env.kwargs.num_receptacles'?") in _error(config_lib.validate, c)
  c = micro_config()
  c.env.kwargs.foo = 1
  assert "env.kwargs.foo: household-small has no option 'foo'; it has preset" in _error(
      config_lib.validate, c)


def test_impossible_meshes_name_both_keys():
  assert 'mesh.data=3, mesh.fsdp=1: mesh data=3 x fsdp=1 does not use the 1 devices' in _error(
      config_lib.validate_here, micro_config(mesh__data=3), 1)
  assert 'mesh.data=-1, mesh.fsdp=-1: data and fsdp must be positive, with at most one -1' in (
      _error(config_lib.validate_here, micro_config(mesh__data=-1, mesh__fsdp=-1), 1))
  config_lib.validate_here(micro_config(mesh__data=-1, mesh__fsdp=2), 4)


def test_init_from_must_be_a_policy_directory(tmp_path):
  missing = str(tmp_path / 'nope')
  assert f"model.init_from: {missing!r} does not exist" in _error(
      config_lib.validate_here, micro_config(model__init_from=missing), 1)
  assert 'model.init_from: ' in _error(
      config_lib.validate_here, micro_config(model__init_from=str(tmp_path)), 1)
  assert 'no config.json' in _error(
      config_lib.validate_here, micro_config(model__init_from=str(tmp_path)), 1)
  (tmp_path / 'config.json').write_text('{"model_type": "llama"}')
  assert 'is not a Qwen2 checkpoint' in _error(
      config_lib.validate_here, micro_config(model__init_from=str(tmp_path)), 1)


def test_one_attempt_per_task_warns_for_group_estimators(caplog):
  with caplog.at_level(py_logging.WARNING):
    config_lib.validate(micro_config('ppo', rollout__group_size=1))
    assert 'group_size' not in caplog.text
    config_lib.validate(micro_config('grpo', rollout__group_size=1))
  assert caplog.text.count('rollout.group_size=1: grpo compares the attempts') == 1


def test_a_prompt_len_that_cuts_the_task_line_warns(caplog):
  env = envs.make('household-small')
  tokenizer = tokenizers.WordTokenizer.from_vocabulary(env.vocabulary())
  line = protocol.make_protocol('line', 'household-small')
  with caplog.at_level(py_logging.WARNING):
    config_lib.warn_if_prompts_lose_the_task(micro_config(rollout__prompt_len=512), env,
                                             tokenizer, line)
    assert 'prompt_len' not in caplog.text
    config_lib.warn_if_prompts_lose_the_task(micro_config(rollout__prompt_len=16), env,
                                             tokenizer, line)
  assert 'rollout.prompt_len=16 is shorter than the first prompt of a task' in caplog.text
  env.close()
