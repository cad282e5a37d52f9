"""The policy network: a Qwen2 decoder in Flax NNX, its sharding rules and
Hugging Face checkpoint conversion."""

from g2po_jax.models import sharding
from g2po_jax.models.hf import load_config, load_hf, save_hf
from g2po_jax.models.qwen2 import (KVCache, ModelConfig, PRESETS, Qwen2, init_cache,
                                   init_model, make_config)

__all__ = ['KVCache', 'ModelConfig', 'PRESETS', 'Qwen2', 'init_cache', 'init_model',
           'load_config', 'load_hf', 'make_config', 'save_hf', 'sharding']
