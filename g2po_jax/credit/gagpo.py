"""GAGPO: GAE over a grouped Monte-Carlo value proxy (spec 8)."""

import chex
import jax.numpy as jnp

from g2po_jax.credit import segments
from g2po_jax.graph import Graph

Array = chex.Array


def gagpo_advantages(reward: Array, valid: Array, mask: Array, graph: Graph, *,
                     norm: str = 'mean_std_norm', gamma: float = 0.95,
                     lam: float = 0.95) -> Array:
  """GAGPO advantages: normalized GAE with a node-mean value function.

    V(s)    = mean over the visits of s of the discounted return G_t
    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t), V after the last step = 0
    A_t     = sum_l (gamma * lam)^l delta_{t+l}
    A       = norm(A over all steps of the task group)

  No episode term and no invalid-action penalty (`valid` is unused). A group
  with a single step keeps its A. The paper's policy loss shares one
  importance ratio per action; that lives in the loss, not here.

  Args:
    reward: [B, T] float per-step rewards.
    valid: [B, T] bool (unused).
    mask: [B, T] bool prefix mask of real steps.
    graph: padded graph arrays (`group`, `node`, `node_group`).
    norm: 'mean_std_norm' or 'mean_norm'.
    gamma: discount.
    lam: GAE lambda.
  Returns:
    [B, T] float advantages, 0 on padding.
  """
  del valid
  chex.assert_equal_shape([reward, mask, graph.node])
  g = segments.reverse_discounted_sum(reward, mask, gamma)
  v = segments.segment_mean(g, graph.node, mask, graph.node_group.shape[0])[graph.node]
  v_next = segments.next_step_value(v, mask, jnp.zeros(mask.shape[0], v.dtype))
  delta = jnp.where(mask, reward + gamma * v_next - v, 0.0)
  adv = segments.reverse_discounted_sum(delta, mask, gamma * lam)
  groups = jnp.broadcast_to(graph.group[:, None], mask.shape)
  return segments.normalize(adv, groups, mask, mask.shape[0], norm=norm, singleton='keep')
