"""GraphGPO: step credit from graph distance to the goal (spec 6)."""

import chex
import jax
import jax.numpy as jnp

from g2po_jax.credit import segments
from g2po_jax.credit.episode import episode_advantages
from g2po_jax.graph import Graph

Array = chex.Array

DISTANCE_FORMS = ('next', 'reduction')


def success_distances(reward: Array, mask: Array, graph: Graph, *,
                      success_reward: float) -> tuple[Array, Array]:
  """Hops from each node to SUCCESS in its group's graph (reverse BFS).

  Every real step is an edge node -> next_node; the last step of a
  successful trajectory is an edge to SUCCESS. Unreachable nodes get the
  group's largest finite distance + 1; in a group without any success every
  node gets 1 (so the graph term vanishes).

  The BFS relaxes all edges at once per round (a segment-min over edges),
  for as many rounds as the longest shortest path, inside one while_loop.

  Args:
    reward: [B, T] float per-step rewards.
    mask: [B, T] bool prefix mask.
    graph: padded graph arrays (`group`, `node`, `next_node`, `node_group`).
    success_reward: the return of a successful episode.
  Returns:
    (d [N] float distances of the nodes, next [B, T] int32 successor of each
    step with SUCCESS encoded as N).
  """
  b = mask.shape[0]
  n = graph.node_group.shape[0]
  success = segments.is_success(segments.episode_returns(reward, mask), success_reward)
  nxt = jnp.where(segments.last_step(mask) & success[:, None], n, graph.next_node)
  spare = n + 1                                    # padding edges land here
  src = jnp.where(mask, graph.node, spare).reshape(-1)
  dst = jnp.where(mask, nxt, spare).reshape(-1)
  d0 = jnp.full(n + 2, jnp.inf, reward.dtype).at[n].set(0.0)

  def relax(carry):
    d, _ = carry
    cand = jax.ops.segment_min(d[dst] + 1.0, src, n + 2)
    new = jnp.minimum(d, cand).at[spare].set(jnp.inf)
    return new, jnp.any(new != d)

  d, _ = jax.lax.while_loop(lambda c: c[1], relax, (d0, jnp.array(True)))
  d = d[:n]
  finite = jnp.isfinite(d)
  far = jax.ops.segment_max(jnp.where(finite, d, 0.0), graph.node_group, b + 1)
  solved = jax.ops.segment_max(success.astype(jnp.int32), graph.group, b + 1) > 0
  d = jnp.where(finite, d, far[graph.node_group] + 1.0)
  return jnp.where(solved[graph.node_group], d, 1.0), nxt


def graphgpo_advantages(reward: Array, valid: Array, mask: Array, graph: Graph, *,
                        norm: str = 'mean_std_norm', penalty: float = 0.1,
                        success_reward: float = 10.0, omega: float = 0.1,
                        distance_form: str = 'next') -> Array:
  """GraphGPO advantages: A = norm(g over steps in the same state) + A_EP.

    g = success_reward * omega^d(next) - penalty * inv           ('next')
    g = success_reward * omega^(d(next) - d(state) + 1) - ...    ('reduction')

  with d from `success_distances` (d(SUCCESS) = 0). Singleton states give 0.

  Args:
    reward: [B, T] float per-step rewards.
    valid: [B, T] bool, the action parsed as admissible.
    mask: [B, T] bool prefix mask of real steps.
    graph: padded graph arrays.
    norm: 'mean_std_norm' or 'mean_norm'.
    penalty: invalid-action penalty.
    success_reward: the return of a successful episode.
    omega: distance decay (0.1 ALFWorld, 0.2 WebShop in the paper).
    distance_form: 'next' or 'reduction'.
  Returns:
    [B, T] float advantages, 0 on padding.
  """
  chex.assert_equal_shape([reward, valid, mask, graph.node, graph.next_node])
  if distance_form not in DISTANCE_FORMS:
    raise ValueError(f'distance_form must be one of {DISTANCE_FORMS}; got {distance_form!r}.')
  n = graph.node_group.shape[0]
  d, nxt = success_distances(reward, mask, graph, success_reward=success_reward)
  d_next = jnp.where(nxt == n, 0.0, d[jnp.minimum(nxt, n - 1)])
  hops = d_next if distance_form == 'next' else d_next - d[graph.node] + 1.0
  g = success_reward * omega ** hops - penalty * (~valid).astype(d.dtype)
  a_graph = segments.normalize(g, graph.node, mask, n, norm=norm)
  a_ep = episode_advantages(reward, valid, mask, graph, norm=norm, penalty=penalty)
  return jnp.where(mask, a_graph + a_ep, 0.0)
