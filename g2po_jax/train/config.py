"""Up-front validation of a training config, and values derived from it.

Every check names the config key, so a bad run stops in one line before any
environment starts or anything compiles. Derived values are returned, never
written back into the config (the logged config describes the run).
"""

import math

import ml_collections as mlc

from g2po_jax import credit
from g2po_jax import envs

ESTIMATORS = tuple(credit.ESTIMATORS) + ('ppo',)
# Options of PPO-with-critic's GAE, read from the same credit keys.
_PPO_OPTIONS = ('gamma', 'lam')


class ConfigError(ValueError):
  """A config value is invalid; the message names the key."""


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


def action_ratio(c: mlc.ConfigDict) -> bool:
  """Whether the loss shares one importance ratio per action (GAGPO)."""
  return c.credit.name == 'gagpo' if c.ppo.action_ratio is None else bool(c.ppo.action_ratio)


def validate(c: mlc.ConfigDict) -> None:
  """Raises ConfigError naming the first bad key."""
  for key in ('seed',):
    if not isinstance(_get(c, key), int):
      raise ConfigError(f'{key} must be an integer; got {_get(c, key)!r}.')
  for key in ('num_iterations', 'env.max_steps', 'rollout.num_tasks', 'rollout.group_size',
              'rollout.prompt_len', 'rollout.max_new_tokens', 'ppo.epochs', 'ppo.minibatch_size',
              'ppo.max_bad_steps', 'eval.num_tasks', 'log_every', 'ckpt.every', 'ckpt.keep'):
    _positive_int(c, key)
  for key in ('eval.every', 'graph_image_every', 'optim.warmup_steps', 'rollout.top_k',
              'rollout.history'):
    value = _get(c, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
      raise ConfigError(f'{key} must be an integer >= 0; got {value!r}.')
  if c.env.name not in envs.NAMES:
    raise ConfigError(f'env.name must be one of {", ".join(envs.NAMES)}; got {c.env.name!r}.')
  if c.rollout.history >= c.env.max_steps:
    raise ConfigError(f'rollout.history ({c.rollout.history}) must be shorter than an '
                      f'episode (env.max_steps = {c.env.max_steps}).')
  if c.rollout.prompt_len < 16:
    raise ConfigError(f'rollout.prompt_len must be at least 16 tokens; got '
                      f'{c.rollout.prompt_len}.')
  _number(c, 'rollout.temperature', 0.0, 10.0)
  _number(c, 'rollout.top_p', 0.0, 1.0, lo_open=True)
  _number(c, 'eval.temperature', 0.0, 10.0)
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
  _validate_credit(c)


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
