"""The step-level PPO objective as pure functions of per-token arrays.

Shapes: S samples (one per environment step), L token positions; `mask`
marks the response tokens the loss scores. Aggregation is token-mean: every
scored token of the mini-batch weighs the same.
"""

import chex
import jax
import jax.numpy as jnp

Array = chex.Array


def token_mean(x: Array, mask: Array) -> Array:
  """Mean of x over the True entries of mask (0 when there are none)."""
  return jnp.where(mask, x, 0.0).sum() / jnp.maximum(mask.sum(), 1)


def action_log_ratio(logp: Array, old_logp: Array, mask: Array) -> Array:
  """One log-ratio per action, the mean of its tokens', broadcast back.

  GAGPO's loss (Section 8 of the spec): every token of an action shares the
  importance ratio exp(mean_t (logp_t - old_logp_t)).

  Args:
    logp, old_logp: [S, L] float per-token log-probs.
    mask: [S, L] bool, the action's tokens.
  Returns:
    [S, L] float log-ratio, constant over each row's masked tokens.
  """
  diff = jnp.where(mask, logp - old_logp, 0.0)
  per_action = diff.sum(-1) / jnp.maximum(mask.sum(-1), 1)
  return jnp.broadcast_to(per_action[:, None], logp.shape)


def clipped_policy_loss(logp: Array, old_logp: Array, adv: Array, mask: Array, *,
                        clip: float, action_ratio: bool = False) -> tuple[Array, dict]:
  """PPO-clip surrogate, token-mean.

    ratio = exp(logp - old_logp)   (per token, or per action)
    loss  = -mean_tokens min(ratio * A, clip(ratio, 1 - clip, 1 + clip) * A)

  Args:
    logp, old_logp: [S, L] float per-token log-probs (new and sampling policy).
    adv: [S] float, the step's advantage, shared by its tokens.
    mask: [S, L] bool, scored tokens.
    clip: epsilon of the clip.
    action_ratio: one ratio per action instead of per token.
  Returns:
    (loss [], aux with 'clip_fraction' and 'ratio').
  """
  chex.assert_equal_shape([logp, old_logp, mask])
  chex.assert_rank(adv, 1)
  log_ratio = action_log_ratio(logp, old_logp, mask) if action_ratio else logp - old_logp
  ratio = jnp.exp(jnp.where(mask, log_ratio, 0.0))
  a = adv[:, None]
  surrogate = jnp.minimum(ratio * a, jnp.clip(ratio, 1 - clip, 1 + clip) * a)
  clipped = jnp.abs(ratio - 1) > clip
  return -token_mean(surrogate, mask), {'clip_fraction': token_mean(clipped, mask),
                                        'ratio': token_mean(ratio, mask)}


def low_variance_kl(logp: Array, ref_logp: Array) -> Array:
  """Per-token KL(pi || ref) estimate k3 = exp(r) - r - 1, r = ref - logp.

  Non-negative and unbiased for samples of pi (Schulman's "k3"); r is clipped
  to [-20, 20] so one extreme token cannot overflow the loss.
  """
  r = jnp.clip(ref_logp - logp, -20.0, 20.0)
  return jnp.exp(r) - r - 1.0


def value_loss(values: Array, targets: Array, mask: Array) -> Array:
  """0.5 * mean squared error of the critic over the real samples ([S])."""
  return 0.5 * token_mean((values - jax.lax.stop_gradient(targets)) ** 2, mask)
