"""GAE with a learned critic: the classic PPO baseline (spec 9)."""

import chex
import jax.numpy as jnp

from g2po_jax.credit import segments

Array = chex.Array


def gae_advantages(reward: Array, values: Array, mask: Array, *, gamma: float = 0.95,
                   lam: float = 0.95) -> tuple[Array, Array]:
  """Generalized advantage estimation along each trajectory.

    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t),  V after the last step = 0
    A_t     = sum_l (gamma * lam)^l delta_{t+l},  returns_t = A_t + V(s_t)

  Truncated episodes bootstrap with 0 too (they count as failures, as in
  every other estimator here). Schulman et al. 2016,
  https://arxiv.org/abs/1506.02438.

  Args:
    reward: [B, T] float per-step rewards.
    values: [B, T] float critic values of each step's state.
    mask: [B, T] bool prefix mask.
    gamma: discount.
    lam: GAE lambda.
  Returns:
    (advantages [B, T], value targets [B, T]); 0 on padding.
  """
  chex.assert_equal_shape([reward, values, mask])
  v = jnp.where(mask, values, 0.0)
  v_next = segments.next_step_value(v, mask, jnp.zeros(mask.shape[0], v.dtype))
  delta = jnp.where(mask, reward + gamma * v_next - v, 0.0)
  adv = segments.reverse_discounted_sum(delta, mask, gamma * lam)
  return adv, jnp.where(mask, adv + v, 0.0)
