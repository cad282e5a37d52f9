"""Credit assignment: advantage estimators as pure, jit-friendly jnp functions.

`estimate(name, ...)` is the validated entry point; each estimator is also
importable on its own (rlax style) and takes the padded graph arrays built
on the host by `g2po_jax.graph.build_graph`, so a trainer can fuse it with
its loss under one `jit`.
"""

from g2po_jax.credit.episode import episode_advantages, grpo_advantages, rloo_advantages
from g2po_jax.credit.estimate import (ESTIMATORS, MAX_ABS_REWARD, check_options, estimate,
                                      estimator_options, validate_batch)
from g2po_jax.credit.g2po import g2po_advantages, node_values
from g2po_jax.credit.gae import gae_advantages
from g2po_jax.credit.gagpo import gagpo_advantages
from g2po_jax.credit.gigpo import gigpo_advantages, step_returns
from g2po_jax.credit.graphgpo import graphgpo_advantages, success_distances
from g2po_jax.credit.hgpo import hgpo_advantages
from g2po_jax.credit.segments import normalize, segment_mean

__all__ = [
    'ESTIMATORS', 'MAX_ABS_REWARD', 'check_options', 'episode_advantages', 'estimate',
    'estimator_options', 'g2po_advantages', 'gae_advantages', 'gagpo_advantages',
    'gigpo_advantages', 'graphgpo_advantages', 'grpo_advantages', 'hgpo_advantages',
    'node_values', 'normalize', 'rloo_advantages', 'segment_mean', 'step_returns',
    'success_distances', 'validate_batch',
]
