"""Multi-turn text environments behind one batched, host-side API.

`make(name, **kwargs)` builds an environment by name. The table below is the
whole registry: each entry names the module, the class and its preset
arguments; modules are imported on first use so that, e.g., the Java-backed
TextWorldExpress adapter costs nothing until asked for.
"""

import importlib

from g2po_jax.envs.base import BatchEnv, TimeStep, seed_split, split_seeds, split_words

_REGISTRY = {
    'household-small': ('household', 'HouseholdEnv', {'preset': 'small'}),
    'household': ('household', 'HouseholdEnv', {'preset': 'full'}),
    'twx-cooking': ('twx', 'TWXEnv', {'game': 'cookingworld'}),
    'twx-twc': ('twx', 'TWXEnv', {'game': 'twc'}),
    'twx-coin': ('twx', 'TWXEnv', {'game': 'coin'}),
    'shop-small': ('shop', 'ShopEnv', {'preset': 'small'}),
    'shop': ('shop', 'ShopEnv', {'preset': 'full'}),
}

NAMES = tuple(_REGISTRY)


def make(name: str, **kwargs) -> BatchEnv:
  """Builds the environment `name` (see NAMES); kwargs override its preset."""
  if name not in _REGISTRY:
    raise ValueError(f'unknown environment {name!r}; choose one of {", ".join(NAMES)}.')
  module, cls, preset = _REGISTRY[name]
  env_cls = getattr(importlib.import_module(f'g2po_jax.envs.{module}'), cls)
  return env_cls(**{**preset, **kwargs})


__all__ = ['BatchEnv', 'NAMES', 'TimeStep', 'make', 'seed_split', 'split_seeds', 'split_words']
