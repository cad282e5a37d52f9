"""The step-level PPO objective as pure functions of per-token arrays.

Shapes: R rows of K scored (response) tokens; `mask` marks the real ones.
Aggregation is token-mean: every scored token of the mini-batch weighs the same.
"""

import chex
import jax
import jax.numpy as jnp

Array = chex.Array


def token_mean(x: Array, mask: Array) -> Array:
  """Mean of x over the True entries of mask (0 when there are none)."""
  return jnp.where(mask, x, 0.0).sum() / jnp.maximum(mask.sum(), 1)


def action_log_ratio(logp: Array, old_logp: Array, mask: Array, action_of: Array) -> Array:
  """One log-ratio per action, the mean of its tokens', broadcast back.

  GAGPO's loss (Section 8 of the spec): every token of an action shares the
  importance ratio exp(mean_t (logp_t - old_logp_t)).

  Args:
    logp, old_logp: [R, K] float per-token log-probs.
    mask: [R, K] bool, the scored tokens.
    action_of: [R, K] int in [0, J), which of the row's actions each token
      belongs to (a row may pack several responses).
  Returns:
    [R, K] float log-ratio, constant over each action's masked tokens.
  """
  chex.assert_equal_shape([logp, old_logp, mask, action_of])
  r, k = logp.shape                         # a row holds at most K actions
  ids = (jnp.arange(r)[:, None] * k + action_of).reshape(-1)
  diff = jnp.where(mask, logp - old_logp, 0.0).reshape(-1)
  total = jax.ops.segment_sum(diff, ids, num_segments=r * k)
  count = jax.ops.segment_sum(mask.reshape(-1).astype(diff.dtype), ids, num_segments=r * k)
  return (total / jnp.maximum(count, 1))[ids].reshape(r, k)


def clipped_policy_loss(logp: Array, old_logp: Array, adv: Array, mask: Array, *,
                        clip: float, action_of: Array | None = None) -> tuple[Array, dict]:
  """PPO-clip surrogate, token-mean.

    ratio = exp(logp - old_logp)   (per token, or per action)
    loss  = -mean_tokens min(ratio * A, clip(ratio, 1 - clip, 1 + clip) * A)

  Args:
    logp, old_logp: [R, K] float per-token log-probs (new and sampling policy).
    adv: [R, K] float, each token's advantage (its step's).
    mask: [R, K] bool, scored tokens.
    clip: epsilon of the clip.
    action_of: [R, K] int action of each token: one ratio per action
      (`action_log_ratio`) instead of per token. None: per token.
  Returns:
    (loss [], aux with 'clip_fraction' and 'ratio').
  """
  chex.assert_equal_shape([logp, old_logp, adv, mask])
  log_ratio = (logp - old_logp if action_of is None else
               action_log_ratio(logp, old_logp, mask, action_of))
  ratio = jnp.exp(jnp.where(mask, log_ratio, 0.0))
  surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - clip, 1 + clip) * adv)
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
  """0.5 * mean squared error of the critic over the real samples (any shape)."""
  return 0.5 * token_mean((values - jax.lax.stop_gradient(targets)) ** 2, mask)
