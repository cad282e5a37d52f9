"""Episode-level credit: the shared episode term, GRPO and RLOO."""

import chex
import jax
import jax.numpy as jnp

from g2po_jax.credit import segments
from g2po_jax.graph import Graph

Array = chex.Array


def _row_groups(graph: Graph, mask: Array) -> Array:
  """[B, T] int32: each step's task group."""
  return jnp.broadcast_to(graph.group[:, None], mask.shape)


def episode_advantages(reward: Array, valid: Array, mask: Array, graph: Graph, *,
                       norm: str, penalty: float) -> Array:
  """The episode term A_EP shared by GRPO, GiGPO, G2PO and GraphGPO (spec 1).

    A_EP[b, t] = norm(R_b - penalty * (1 - valid[b, t]) over all real steps
                      of b's group)

  Statistics are over steps, so a long trajectory weighs more than a short
  one (as in the authors' code). A group with a single real step passes its
  value through unnormalized.

  Args:
    reward: [B, T] float per-step rewards.
    valid: [B, T] bool, the action parsed as admissible.
    mask: [B, T] bool prefix mask of real steps.
    graph: padded graph arrays (only `group` is used).
    norm: 'mean_std_norm' or 'mean_norm'.
    penalty: invalid-action penalty.
  Returns:
    [B, T] float advantages, 0 on padding.
  """
  chex.assert_rank([reward, valid, mask], 2)
  chex.assert_equal_shape([reward, valid, mask])
  ret = segments.episode_returns(reward, mask)
  x = ret[:, None] - penalty * (~valid).astype(reward.dtype)
  return segments.normalize(x, _row_groups(graph, mask), mask, mask.shape[0],
                            norm=norm, singleton='keep')


def grpo_advantages(reward: Array, valid: Array, mask: Array, graph: Graph, *,
                    norm: str = 'mean_std_norm', penalty: float = 0.1,
                    level: str = 'step') -> Array:
  """GRPO (spec 2): every step gets its trajectory's group-normalized score.

  level='step' is the step-level form (`episode_advantages`). level=
  'trajectory' is classic GRPO: x_b = R_b - penalty * (invalid steps of b),
  normalized over the trajectories of the group (one value per trajectory,
  broadcast to its steps; a lone trajectory keeps x_b).
  Shao et al. 2024, https://arxiv.org/abs/2402.03300.

  Args:
    reward, valid, mask: [B, T] as in `episode_advantages`.
    graph: padded graph arrays (only `group` is used).
    norm: 'mean_std_norm' or 'mean_norm'.
    penalty: invalid-action penalty.
    level: 'step' or 'trajectory'.
  Returns:
    [B, T] float advantages, 0 on padding.
  """
  if level == 'step':
    return episode_advantages(reward, valid, mask, graph, norm=norm, penalty=penalty)
  if level != 'trajectory':
    raise ValueError(f"level must be 'step' or 'trajectory'; got {level!r}.")
  invalid = jnp.where(mask, ~valid, False).sum(axis=1).astype(reward.dtype)
  x = segments.episode_returns(reward, mask) - penalty * invalid
  adv = segments.normalize(x, graph.group, segments.lengths(mask) > 0,
                           mask.shape[0], norm=norm, singleton='keep')
  return jnp.where(mask, adv[:, None], 0.0)


def rloo_advantages(reward: Array, valid: Array, mask: Array, graph: Graph) -> Array:
  """RLOO (spec 3): A_b = R_b - mean of R over the group's other trajectories.

  Trajectories without real steps take no part. A lone trajectory has no
  baseline and keeps A_b = R_b. `valid` is unused (no invalid penalty).
  Ahmadian et al. 2024, https://arxiv.org/abs/2402.14740.

  Args:
    reward, valid, mask: [B, T] as in `episode_advantages`.
    graph: padded graph arrays (only `group` is used).
  Returns:
    [B, T] float advantages, 0 on padding.
  """
  del valid
  b = mask.shape[0]
  ret = segments.episode_returns(reward, mask)
  real = segments.lengths(mask) > 0
  total = jax.ops.segment_sum(jnp.where(real, ret, 0.0), graph.group, b)[graph.group]
  count = jax.ops.segment_sum(real.astype(ret.dtype), graph.group, b)[graph.group]
  baseline = jnp.where(count > 1, (total - ret) / jnp.maximum(count - 1.0, 1.0), 0.0)
  return jnp.where(mask, (ret - baseline)[:, None], 0.0)
