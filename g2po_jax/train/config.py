"""Loading a training config from the command line, and validating it up front.

Every check names the config key, so a bad run stops in one line before any
environment starts or anything compiles. Derived values are returned, never
written back into the config (the logged config describes the run).
"""

import ast
from collections.abc import Sequence
import difflib
import importlib.util
import math
import os

from absl import flags
from absl import logging
import ml_collections as mlc

from g2po_jax import credit
from g2po_jax import envs
from g2po_jax import graph as graph_lib
from g2po_jax import protocol
from g2po_jax import tokenizers
from g2po_jax.models import qwen2
from g2po_jax.models import sharding
from g2po_jax.train import checkpoint

ESTIMATORS = tuple(credit.ESTIMATORS) + ('ppo',)
# Options of PPO-with-critic's GAE, read from the same credit keys.
_PPO_OPTIONS = ('gamma', 'lam')


class ConfigError(ValueError):
  """A config value is invalid; the message names the key."""


# --- From the command line ---------------------------------------------------

OVERRIDE_PREFIX = '--config.'
# Sections holding an environment's own options: overrides may add keys
# there, and `validate` checks them against the environment.
_OPEN_SECTIONS = ('env.kwargs',)


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """(argv without its --config.KEY=VALUE args, those args as 'KEY=VALUE')."""
  rest = [a for a in argv if not a.startswith(OVERRIDE_PREFIX)]
  overrides = [a[len(OVERRIDE_PREFIX):] for a in argv if a.startswith(OVERRIDE_PREFIX)]
  return rest, overrides


def parse_flags(argv: list[str]) -> tuple[list[str], list[str]]:
  """A `flags_parser` for `app.run`: absl parses the flags, `load` later
  applies the --config.KEY=VALUE overrides. Returns (argv absl left, overrides)."""
  rest, overrides = split_overrides(argv)
  return flags.FLAGS(rest), overrides


def load(spec: str, overrides: Sequence[str] = ()) -> mlc.ConfigDict:
  """The locked config of `--config=spec` with 'KEY=VALUE' overrides applied.

  Args:
    spec: 'path/to/config.py' or 'path/to/config.py:ARG'; the file's
      `get_config(ARG)` builds the config (big_vision style).
    overrides: 'dotted.key=value' texts, applied in order; a value is parsed
      as the type the config gives the key.
  Raises:
    ConfigError: a missing file or get_config, a bad ARG (the configs'
      `parse_arg` raises ConfigError), an unknown key (with the closest known
      key) or a value that does not parse as the key's type.
  """
  path, colon, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise ConfigError(f'--config: there is no config file {path!r}.')
  module_spec = importlib.util.spec_from_file_location('experiment_config', path)
  if module_spec is None:
    raise ConfigError(f'--config: {path!r} is not a Python file.')
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not callable(getattr(module, 'get_config', None)):
    raise ConfigError(f'--config: {path} has no get_config function.')
  c = module.get_config(arg) if colon else module.get_config()
  if not isinstance(c, mlc.ConfigDict):
    raise ConfigError(f'--config: {path}:get_config returned a {type(c).__name__}, '
                      'not a ConfigDict.')
  for item in overrides:
    key, eq, text = item.partition('=')
    if not eq:
      raise ConfigError(f'--config.{key} needs a value: --config.{key}=VALUE.')
    _override(c, key, text)
  return c.lock()


def _did_you_mean(name: str, choices: Sequence[str], prefix: str = '') -> str:
  """'; did you mean PREFIX+closest?' or, with nothing close, the choices."""
  close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
  if close:
    return f'; did you mean {prefix + close[0]!r}?'
  return f'; it has {", ".join(choices)}.' if choices else '; it is empty.'


def _override(c: mlc.ConfigDict, key: str, text: str) -> None:
  """Sets c[key] from its command-line text."""
  parts = key.split('.')
  node = c
  for depth, part in enumerate(parts[:-1]):
    if part not in node:
      raise _unknown_key(node, parts, depth)
    node = node[part]
    if not isinstance(node, mlc.ConfigDict):
      raise ConfigError(f'unknown config key {key!r}: {".".join(parts[:depth + 1])} is a '
                        'value, not a section.')
  name = parts[-1]
  if name not in node and '.'.join(parts[:-1]) not in _OPEN_SECTIONS:
    raise _unknown_key(node, parts, len(parts) - 1)
  kind = node.get_type(name) if name in node else object
  if kind is mlc.ConfigDict:
    raise ConfigError(f'{key} is a section; set its keys one by one '
                      f'({OVERRIDE_PREFIX}{key}.KEY=VALUE).')
  try:
    node[name] = _parse(text, kind)
  except (TypeError, ValueError):
    raise ConfigError(f'{key}={text!r}: {key} takes a value of type {kind.__name__}.'
                      ) from None


def _unknown_key(node: mlc.ConfigDict, parts: list[str], depth: int) -> ConfigError:
  where = '.'.join(parts[:depth])
  return ConfigError(f'unknown config key {".".join(parts)!r}: {where or "the config"} has '
                     f'no {parts[depth]!r}'
                     + _did_you_mean(parts[depth], list(node), f'{where}.' if where else ''))


_BOOLS = {'true': True, 'yes': True, '1': True, 'false': False, 'no': False, '0': False}


def _parse(text: str, kind: type):
  """`text` as a value of `kind`: bool, int, float, str; else a Python literal
  (a bare word stays a string)."""
  if kind is bool:
    if text.lower() not in _BOOLS:
      raise ValueError(text)
    return _BOOLS[text.lower()]
  if kind in (int, float, str):
    return kind(text)
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  if kind in (tuple, list):
    if not isinstance(value, (tuple, list)):
      raise ValueError(text)
    value = kind(value)
  return value


def _positive_int(c: mlc.ConfigDict, key: str) -> None:
  value = _get(c, key)
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ConfigError(f'{key} must be a positive integer; got {value!r}.')


def _number(c: mlc.ConfigDict, key: str, lo: float, hi: float = math.inf,
            lo_open: bool = False) -> None:
  value = _get(c, key)
  ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi)
  if not ok:
    bound = f'({lo:g}, {hi:g}]' if lo_open else f'[{lo:g}, {hi:g}]'
    raise ConfigError(f'{key} must be a number in {bound}; got {value!r}.')


def _get(c: mlc.ConfigDict, key: str):
  node = c
  for part in key.split('.'):
    if part not in node:
      raise ConfigError(f'{key} is missing from the config.')
    node = node[part]
  return node


def credit_options(c: mlc.ConfigDict) -> dict[str, object]:
  """The keyword options the chosen estimator is called with.

  Options left None take the estimator's default; `success_reward` and, for
  HGPO, `history` (= rollout.history) are passed when the estimator uses them.
  """
  allowed = _allowed_options(c.credit.name)
  opts = {k: c.credit[k] for k in allowed if k in c.credit and c.credit[k] is not None}
  if 'success_reward' in allowed:
    opts['success_reward'] = float(c.credit.success_reward)
  if 'history' in allowed:
    opts['history'] = int(c.rollout.history)
  return opts


def rollout_options(c: mlc.ConfigDict) -> dict[str, object]:
  """The keyword options of `rollout.collect` a config sets."""
  return dict(max_steps=c.env.max_steps, history=c.rollout.history,
              prompt_len=c.rollout.prompt_len, success_reward=c.credit.success_reward)


def action_ratio(c: mlc.ConfigDict) -> bool:
  """Whether the loss shares one importance ratio per action (GAGPO)."""
  return c.credit.name == 'gagpo' if c.ppo.action_ratio is None else bool(c.ppo.action_ratio)


def validate(c: mlc.ConfigDict) -> None:
  """Raises ConfigError naming the first bad key."""
  seed = _get(c, 'seed')
  if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
    raise ConfigError(f'seed must be an integer in [0, 2**31); got {seed!r}.')
  for key in ('num_iterations', 'env.max_steps', 'rollout.num_tasks', 'rollout.group_size',
              'rollout.prompt_len', 'rollout.max_new_tokens', 'ppo.epochs', 'ppo.minibatch_size',
              'ppo.max_bad_steps', 'ppo.logit_chunk', 'eval.num_tasks', 'log_every', 'ckpt.every',
              'ckpt.keep'):
    _positive_int(c, key)
  for key in ('eval.every', 'graph_image_every', 'optim.warmup_steps', 'rollout.top_k',
              'rollout.history'):
    value = _get(c, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
      raise ConfigError(f'{key} must be an integer >= 0; got {value!r}.')
  if c.env.name not in envs.NAMES:
    raise ConfigError(f'env.name must be one of {", ".join(envs.NAMES)}; got {c.env.name!r}.')
  options = envs.option_names(c.env.name)
  for key in c.env.kwargs:
    if key not in options:
      raise ConfigError(f'env.kwargs.{key}: {c.env.name} has no option {key!r}'
                        + _did_you_mean(key, options, 'env.kwargs.'))
  if c.rollout.history >= c.env.max_steps:
    raise ConfigError(f'rollout.history ({c.rollout.history}) must be shorter than an '
                      f'episode (env.max_steps = {c.env.max_steps}).')
  if c.rollout.prompt_len < 16:
    raise ConfigError(f'rollout.prompt_len must be at least 16 tokens; got '
                      f'{c.rollout.prompt_len}.')
  for key in ('rollout.share_prompts', 'ppo.pack_shared_prompts'):
    if not isinstance(_get(c, key), bool):
      raise ConfigError(f'{key} must be True or False; got {_get(c, key)!r}.')
  if c.rollout.protocol not in protocol.PROTOCOLS:
    raise ConfigError(f'rollout.protocol must be one of {", ".join(protocol.PROTOCOLS)}; '
                      f'got {c.rollout.protocol!r}.')
  if c.rollout.system_prompt and c.rollout.protocol != 'think_action':
    raise ConfigError('rollout.system_prompt applies to rollout.protocol=think_action only '
                      f'(got protocol {c.rollout.protocol!r}).')
  if c.model.num_layers is not None:
    _positive_int(c, 'model.num_layers')
    if c.model.init_from:
      raise ConfigError('model.num_layers shapes a fresh model; a model loaded from '
                        'model.init_from has its own.')
  if c.model.init_from and c.model.tokenizer:
    raise ConfigError(f'model.tokenizer ({c.model.tokenizer!r}) is for fresh models; a model '
                      f'loaded from model.init_from uses the tokenizer saved with it.')
  _number(c, 'rollout.temperature', 0.0, 10.0)
  _number(c, 'rollout.top_p', 0.0, 1.0, lo_open=True)
  _number(c, 'eval.temperature', 0.0, 10.0)
  _number(c, 'sft.target_success', 0.0, 1.0)
  _number(c, 'sft.max_invalid_rate', 0.0, 1.0)
  _number(c, 'sft.noise', 0.0, 1.0)
  _number(c, 'sft.invalid', 0.0, 1.0 - c.sft.noise)
  _number(c, 'credit.success_reward', 0.0, credit.MAX_ABS_REWARD, lo_open=True)
  _number(c, 'optim.lr', 0.0, 1.0, lo_open=True)
  _number(c, 'optim.b1', 0.0, 1.0)
  _number(c, 'optim.b2', 0.0, 1.0)
  _number(c, 'optim.weight_decay', 0.0)
  _number(c, 'optim.grad_clip', 0.0, lo_open=True)
  _number(c, 'ppo.clip', 0.0, 10.0, lo_open=True)
  _number(c, 'ppo.kl_coef', 0.0)
  _number(c, 'ppo.entropy_coef', 0.0)
  _number(c, 'ppo.value_coef', 0.0)
  if c.mesh.data != -1:
    _positive_int(c, 'mesh.data')
  if c.mesh.fsdp != -1:
    _positive_int(c, 'mesh.fsdp')
  _validate_model(c)
  _validate_credit(c)
  make_matcher(c, envs.BatchEnv)    # graph.*; the env's own rules are checked at setup
  if c.rollout.group_size == 1 and c.credit.name != 'ppo':
    logging.warning('rollout.group_size=1: %s compares the attempts at a task with each other, '
                    'so one attempt per task gives it nothing to compare.', c.credit.name)


def warn_if_prompts_lose_the_task(c: mlc.ConfigDict, env: envs.BatchEnv,
                                  tokenizer: tokenizers.Tokenizer,
                                  prompts: protocol.Protocol) -> None:
  """Warns when rollout.prompt_len cannot hold a task's first prompt.

  A prompt too long even without history is cut from the left, so the task
  line goes first: the policy never sees the task it is asked to solve.
  """
  step = env.reset(envs.split_seeds('eval', 1))[0]
  prompt = prompts.prompt(tokenizer, task=step.task, history=[], observation=step.observation,
                          admissible=step.admissible, step=0, max_history=0)
  length = len(tokenizer.encode(prompt))
  if length > c.rollout.prompt_len:
    logging.warning('rollout.prompt_len=%d is shorter than the first prompt of a task (%d '
                    'tokens): prompts are cut from the left, so they lose the task line.',
                    c.rollout.prompt_len, length)


def validate_here(c: mlc.ConfigDict, num_devices: int) -> None:
  """Checks what depends on the machine a run starts on (`validate` does not,
  so a sweep can print commands for another machine): that the mesh covers
  the `num_devices` devices, and that model.init_from is a policy directory.
  """
  try:
    sharding.mesh_shape(c.mesh.data, c.mesh.fsdp, num_devices)
  except ValueError as e:
    raise ConfigError(f'mesh.data={c.mesh.data}, mesh.fsdp={c.mesh.fsdp}: {e}') from None
  if c.model.init_from is not None:
    try:
      checkpoint.check_policy(c.model.init_from)
    except ValueError as e:
      raise ConfigError(f'model.init_from: {e}') from None


def make_matcher(c: mlc.ConfigDict, env: envs.BatchEnv) -> graph_lib.Matcher:
  """The state matcher of `graph.*`; normalized keys apply the environment's
  `NORMALIZERS`, then `graph.rules`."""
  try:
    return graph_lib.make_matcher(c.graph.matching, similarity=c.graph.similarity,
                                  metric=c.graph.metric,
                                  rules=tuple(env.NORMALIZERS) + tuple(c.graph.rules))
  except ValueError as e:
    raise ConfigError(f'graph.{e}') from None


def _validate_model(c: mlc.ConfigDict) -> None:
  if c.model.preset not in qwen2.PRESETS:
    raise ConfigError(f'model.preset must be one of {", ".join(qwen2.PRESETS)}; got '
                      f'{c.model.preset!r}.')
  for key in ('model.dtype', 'model.param_dtype'):
    if _get(c, key) not in qwen2.DTYPES:
      raise ConfigError(f'{key} must be one of {", ".join(qwen2.DTYPES)}; got '
                        f'{_get(c, key)!r}.')


def validate_for_mesh(c: mlc.ConfigDict, batch_shards: int, num_processes: int) -> None:
  """Checks the batch sizes against the mesh and the processes.

  Each process steps whole task groups and contributes an equal piece of
  every mini-batch, split over its devices.
  """
  for key in ('rollout.num_tasks', 'eval.num_tasks'):
    if _get(c, key) % num_processes:
      raise ConfigError(f'{key} ({_get(c, key)}) must be a multiple of the {num_processes} '
                        f'processes.')
  if c.ppo.minibatch_size % batch_shards:
    raise ConfigError(f'ppo.minibatch_size ({c.ppo.minibatch_size}) must be a multiple of '
                      f'the {batch_shards} batch shards of the mesh (mesh.data x mesh.fsdp).')


def unused_credit_options(c: mlc.ConfigDict) -> list[str]:
  """The credit options set in the config that the chosen estimator ignores.

  A sweep shares one credit section across estimators (e.g. WebShop's
  `norm='mean_norm'` also reaches RLOO, which has no norm), so these are
  reported, not errors.
  """
  allowed = _allowed_options(c.credit.name)
  return [k for k in c.credit if k not in ('name', 'success_reward')
          and c.credit[k] is not None and k not in allowed]


def _allowed_options(name: str) -> tuple[str, ...]:
  return _PPO_OPTIONS if name == 'ppo' else tuple(credit.estimator_options(name))


def _validate_credit(c: mlc.ConfigDict) -> None:
  name = c.credit.name
  if name not in ESTIMATORS:
    raise ConfigError(f'credit.name must be one of {", ".join(ESTIMATORS)}; got {name!r}.')
  if name == 'ppo':
    for key in _PPO_OPTIONS:
      if c.credit[key] is not None:
        _number(c, f'credit.{key}', 0.0, 1.0)
    return
  try:
    credit.check_options(name, credit_options(c))
  except ValueError as e:
    raise ConfigError(f'credit: {e}') from None
