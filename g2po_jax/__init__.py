"""g2po_jax: Group-Graph Policy Optimization for multi-turn LLM agents, in JAX.

Subpackages:
  graph/   host: hashing of state observations, padded graph arrays (numpy).
  credit/  device: the advantage estimators as pure jnp functions.
  envs/    host: batched text environments.
  models/  Flax NNX transformer policy and checkpoint loading.
  train/   losses, the jitted train step and the host training loop.

This file imports nothing heavy, so host-only code (graph, envs) can be used
without loading JAX.
"""

__version__ = '0.1.0'
