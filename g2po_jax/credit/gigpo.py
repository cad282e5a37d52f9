"""GiGPO: episode credit plus step credit within anchor-state groups."""

import chex
import jax.numpy as jnp

from g2po_jax.credit import segments
from g2po_jax.credit.episode import episode_advantages
from g2po_jax.graph import Graph

Array = chex.Array


def step_returns(reward: Array, valid: Array, mask: Array, *, gamma: float,
                 penalty: float) -> Array:
  """G_t = sum_{k>=t} gamma^(k-t) reward_k - penalty * (1 - valid_t).

  The penalty applies to the step's own return only (spec 4.1).

  Args:
    reward, valid, mask: [B, T] float, bool, bool.
    gamma: discount.
    penalty: invalid-action penalty.
  Returns:
    [B, T] float returns, 0 on padding.
  """
  g = segments.reverse_discounted_sum(reward, mask, gamma)
  return jnp.where(mask, g - penalty * (~valid).astype(g.dtype), 0.0)


def gigpo_advantages(reward: Array, valid: Array, mask: Array, graph: Graph, *,
                     norm: str = 'mean_std_norm', gamma: float = 0.95,
                     penalty: float = 0.1, step_weight: float = 1.0) -> Array:
  """GiGPO (spec 4): A = A_EP + step_weight * norm(G over the anchor group).

  The anchor group of a step is every step of its task group taken in the
  same state, i.e. its graph node; a singleton anchor group gives 0.
  Feng et al. 2025, https://arxiv.org/abs/2505.10978, Eq. 7.

  Args:
    reward: [B, T] float per-step rewards.
    valid: [B, T] bool, the action parsed as admissible.
    mask: [B, T] bool prefix mask of real steps.
    graph: padded graph arrays (`group`, `node`).
    norm: 'mean_std_norm' or 'mean_norm'.
    gamma: discount of the step return.
    penalty: invalid-action penalty.
    step_weight: weight of the anchor (step) term.
  Returns:
    [B, T] float advantages, 0 on padding.
  """
  chex.assert_equal_shape([reward, valid, mask, graph.node])
  g = step_returns(reward, valid, mask, gamma=gamma, penalty=penalty)
  a_step = segments.normalize(g, graph.node, mask, graph.node_group.shape[0], norm=norm)
  a_ep = episode_advantages(reward, valid, mask, graph, norm=norm, penalty=penalty)
  return jnp.where(mask, a_ep + step_weight * a_step, 0.0)
