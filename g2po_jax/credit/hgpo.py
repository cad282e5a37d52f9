"""HGPO: step credit over a hierarchy of history-context groups (spec 7)."""

import chex
import jax.numpy as jnp

from g2po_jax.credit import segments
from g2po_jax.credit.episode import episode_advantages
from g2po_jax.credit.gigpo import step_returns
from g2po_jax.graph import Graph

Array = chex.Array


def hgpo_advantages(reward: Array, valid: Array, mask: Array, graph: Graph, *,
                    norm: str = 'mean_std_norm', gamma: float = 0.95,
                    penalty: float = 0.1, history: int = 2, alpha: float = 1.0,
                    episode_weight: float = 0.0) -> Array:
  """HGPO advantages: weighted mean of per-level group advantages.

  Level k = 1..K+1 (K = `history`) groups the steps of a task group whose
  last k state keys agree (`graph.context[k-1]`). A step t (0-based) has only
  the levels k <= t+1: a window never reaches before the episode start, so
  early steps average fewer levels (as the authors' code). At each level the step
  return G (as GiGPO) is normalized over groups of two or more steps with the
  population std (ddof=0); a step's non-zero level advantages are averaged
  with weights (k+1)^alpha (0 if none). `episode_weight` adds the episode
  term (0 by default, as published).

  Args:
    reward: [B, T] float per-step rewards.
    valid: [B, T] bool, the action parsed as admissible.
    mask: [B, T] bool prefix mask of real steps.
    graph: padded graph arrays with `context` of shape [history+1, B, T].
    norm: 'mean_std_norm' or 'mean_norm'.
    gamma: discount of the step return.
    penalty: invalid-action penalty.
    history: K, the prompt's history length.
    alpha: level weight exponent.
    episode_weight: weight of the episode term.
  Returns:
    [B, T] float advantages, 0 on padding.
  """
  if graph.context is None or graph.context.shape[0] != history + 1:
    got = None if graph.context is None else graph.context.shape
    raise ValueError(f'graph.context must have shape [history+1={history + 1}, B, T]; '
                     f'got {got}. Build the graph with history={history}.')
  chex.assert_equal_shape([reward, valid, mask, graph.context[0]])
  g = step_returns(reward, valid, mask, gamma=gamma, penalty=penalty)
  total = jnp.zeros_like(g)
  weight = jnp.zeros_like(g)
  step = jnp.arange(mask.shape[1])
  for level in range(history + 1):
    in_level = mask & (step >= level)              # the window fits in the episode
    a = segments.normalize(g, graph.context[level], in_level, mask.size, norm=norm, ddof=0)
    w = jnp.where(a != 0, float(level + 2) ** alpha, 0.0)
    total, weight = total + w * a, weight + w
  a_hier = jnp.where(weight > 0, total / jnp.where(weight > 0, weight, 1.0), 0.0)
  a_ep = episode_advantages(reward, valid, mask, graph, norm=norm, penalty=penalty)
  return jnp.where(mask, a_hier + episode_weight * a_ep, 0.0)
