"""Multi-turn text environments behind one batched, host-side API.

`make(name, **kwargs)` builds an environment by name. The table below is the
whole registry: each entry names the module, the class and its preset
arguments; modules are imported on first use so that, e.g., the Java-backed
TextWorldExpress adapter and the ALFWorld engine cost nothing until asked for.
"""

import importlib
import inspect

from g2po_jax.envs.base import BatchEnv, TimeStep, seed_split, split_seeds, split_words

_REGISTRY = {
    'household-small': ('household', 'HouseholdEnv', {'preset': 'small'}),
    'household': ('household', 'HouseholdEnv', {'preset': 'full'}),
    'twx-cooking': ('twx', 'TWXEnv', {'game': 'cookingworld'}),
    'twx-twc': ('twx', 'TWXEnv', {'game': 'twc'}),
    'twx-coin': ('twx', 'TWXEnv', {'game': 'coin'}),
    'shop-small': ('shop', 'ShopEnv', {'preset': 'small'}),
    'shop': ('shop', 'ShopEnv', {'preset': 'full'}),
    'household-noisy': ('noisy', 'NoisyEnv', {'inner': 'household-small'}),
    'shop-noisy': ('noisy', 'NoisyEnv', {'inner': 'shop-small'}),
    'alfworld': ('alfworld', 'AlfWorldEnv', {}),
}

NAMES = tuple(_REGISTRY)


def _entry(name: str):
  if name not in _REGISTRY:
    raise ValueError(f'unknown environment {name!r}; choose one of {", ".join(NAMES)}.')
  module, cls, preset = _REGISTRY[name]
  return getattr(importlib.import_module(f'g2po_jax.envs.{module}'), cls), preset


def make(name: str, **kwargs) -> BatchEnv:
  """Builds the environment `name` (see NAMES); kwargs override its preset."""
  env_cls, preset = _entry(name)
  return env_cls(**{**preset, **kwargs})


def option_names(name: str) -> tuple[str, ...]:
  """The keyword options `make(name, ...)` accepts (nothing is started)."""
  env_cls, preset = _entry(name)
  named = [p.name for p in inspect.signature(env_cls).parameters.values()
           if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
  # TextWorldExpress takes its game's parameters as **kwargs.
  game = getattr(env_cls, 'PARAMS', {}).get(preset.get('game'), {})
  return tuple(named) + tuple(game)


__all__ = ['BatchEnv', 'NAMES', 'TimeStep', 'make', 'option_names', 'seed_split', 'split_seeds',
           'split_words']
