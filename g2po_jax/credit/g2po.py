"""G2PO: credit from the group's state-transition graph (spec 5)."""

import chex
import jax.numpy as jnp

from g2po_jax.credit import segments
from g2po_jax.credit.episode import episode_advantages
from g2po_jax.graph import Graph

Array = chex.Array

TD_FORMS = ('code', 'paper')


def node_values(reward: Array, mask: Array, graph: Graph, *, gamma: float) -> Array:
  """V(node): mean visit value over every visit of the node (spec 5.1-5.2).

  A visit at step j of a trajectory with T real steps and episode return R
  has value gamma^(T - j) * R (the last step gets gamma * R).

  Args:
    reward: [B, T] float per-step rewards.
    mask: [B, T] bool prefix mask.
    graph: padded graph arrays (`node`, `node_group` for the size N).
    gamma: discount.
  Returns:
    [N] float node values; 0 for nodes never acted in.
  """
  ret = segments.episode_returns(reward, mask)
  to_go = segments.lengths(mask)[:, None] - jnp.arange(mask.shape[1])[None, :]
  visit = gamma ** jnp.maximum(to_go, 0).astype(reward.dtype) * ret[:, None]
  return segments.segment_mean(visit, graph.node, mask, graph.node_group.shape[0])


def g2po_advantages(reward: Array, valid: Array, mask: Array, graph: Graph, *,
                    norm: str = 'mean_std_norm', gamma: float = 0.95,
                    penalty: float = 0.1, success_reward: float = 10.0,
                    episode_weight: float = 1.0, node_weight: float = 1.0,
                    edge_weight: float = 1.0, td_form: str = 'code',
                    td_gamma: float = 0.95) -> Array:
  """G2PO advantages: episode, node-centric and edge-centric terms.

    V+      = V(node of the next step); on a trajectory's last step
              success_reward if it succeeded, else 0 (truncation = failure)
    A_NC    = norm(V+ - penalty * inv over the visits of the same node)
    delta   = V+ - V(node)                     (td_form='code', the default)
            = reward + td_gamma * V+ - V(node) (td_form='paper')
    A_EC    = norm(delta over all steps of the task group)
    A       = episode_weight * A_EP + node_weight * A_NC + edge_weight * A_EC

  Singleton nodes give A_NC = 0 and a single-step group gives A_EC = 0.
  The term weights make the ablations (A_EP only, +A_NC, +A_EC) one flag each.

  Args:
    reward: [B, T] float per-step rewards.
    valid: [B, T] bool, the action parsed as admissible.
    mask: [B, T] bool prefix mask of real steps.
    graph: padded graph arrays (`group`, `node`, `node_group`).
    norm: 'mean_std_norm' or 'mean_norm'.
    gamma: discount of the visit values.
    penalty: invalid-action penalty (episode and node terms).
    success_reward: the return of a successful episode.
    episode_weight, node_weight, edge_weight: weights of the three terms.
    td_form: 'code' or 'paper'.
    td_gamma: discount of V+ in the paper form.
  Returns:
    [B, T] float advantages, 0 on padding.
  """
  chex.assert_equal_shape([reward, valid, mask, graph.node])
  if td_form not in TD_FORMS:
    raise ValueError(f'td_form must be one of {TD_FORMS}; got {td_form!r}.')
  b = mask.shape[0]
  num_nodes = graph.node_group.shape[0]
  success = segments.is_success(segments.episode_returns(reward, mask), success_reward)
  v_node = node_values(reward, mask, graph, gamma=gamma)[graph.node]
  v_next = segments.next_step_value(
      v_node, mask, jnp.where(success, success_reward, 0.0).astype(v_node.dtype))
  invalid = (~valid).astype(v_node.dtype)
  a_node = segments.normalize(v_next - penalty * invalid, graph.node, mask,
                              num_nodes, norm=norm)
  if td_form == 'code':
    delta = v_next - v_node
  else:
    delta = reward + td_gamma * v_next - v_node
  groups = jnp.broadcast_to(graph.group[:, None], mask.shape)
  a_edge = segments.normalize(delta, groups, mask, b, norm=norm)
  a_ep = episode_advantages(reward, valid, mask, graph, norm=norm, penalty=penalty)
  adv = episode_weight * a_ep + node_weight * a_node + edge_weight * a_edge
  return jnp.where(mask, adv, 0.0)
