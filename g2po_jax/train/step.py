"""The jitted, sharded train step: advantages + PPO loss + update, fused.

`train_step(state, traj, mb)` recomputes the estimator's advantages for the
whole iteration from the padded graph arrays (cheap: segment sums over B x T
steps), gathers those of the mini-batch's samples and takes one clipped,
KL-regularized policy-gradient step. Shapes never change within a run (B, T
and the mini-batch size are fixed), so it compiles once; the host loops over
epochs and mini-batches.
"""

from collections.abc import Callable
import functools
from typing import NamedTuple

import chex
from flax import nnx
import jax
import jax.numpy as jnp
import optax

from g2po_jax import credit
from g2po_jax import sampling
from g2po_jax.graph import Graph
from g2po_jax.train import losses

Array = chex.Array


class TrainState(NamedTuple):
  params: nnx.State        # the policy
  opt_state: optax.OptState
  ref_params: nnx.State    # frozen KL reference (the warm start)
  step: Array              # [] int32, updates applied


class Trajectories(NamedTuple):
  """The iteration's B trajectories of T steps, for the estimators."""
  reward: Array   # [B, T] float32, a win scaled to success_reward
  valid: Array    # [B, T] bool, the action was admissible
  mask: Array     # [B, T] bool, real steps (a prefix per row)
  graph: Graph    # padded graph arrays
  values: Array   # [B, T] float32 critic values (PPO with a critic; else 0)


class Minibatch(NamedTuple):
  """S samples (one per environment step) as rows of L tokens.

  A row is the prompt, left-padded to end at column P-1, then the response.
  """
  tokens: Array        # [S, L] int32
  token_mask: Array    # [S, L] bool, real tokens
  score_mask: Array    # [S, L-1] bool, positions that predict a response token
  old_logp: Array      # [S, L-1] float32, the sampler's log-probs there
  sample_index: Array  # [S] int32, b * T + t of the sample's step
  sample_mask: Array   # [S] bool, real samples (False: padding)


def make_schedule(lr: float, warmup_steps: int) -> optax.Schedule:
  """Linear warmup from lr / warmup_steps to lr, then constant."""
  if not warmup_steps:
    return optax.constant_schedule(lr)
  return optax.linear_schedule(lr / warmup_steps, lr, warmup_steps)


def make_optimizer(schedule: optax.Schedule, b1: float, b2: float, weight_decay: float,
                   grad_clip: float) -> optax.GradientTransformation:
  """AdamW on `schedule` with global-norm gradient clipping."""
  return optax.chain(optax.clip_by_global_norm(grad_clip),
                     optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay))


def state_values(graphdef: nnx.GraphDef, params: nnx.State, mb: Minibatch) -> Array:
  """[S] critic value of each sample's state (at the prompt's last token)."""
  stats = sampling.token_logprobs(graphdef, params, mb.tokens, mb.token_mask)
  prompt_end = jnp.argmax(mb.score_mask, axis=1)          # the column P-1
  return jnp.take_along_axis(stats.values, prompt_end[:, None], 1)[:, 0]


def make_advantage_fn(estimator: str, options: dict) -> Callable[[Trajectories],
                                                                  tuple[Array, Array]]:
  """traj -> (advantages [B, T], value targets [B, T]) for an estimator.

  'ppo' is GAE over the critic's values, whitened over the real steps
  (targets are the unwhitened returns); every other name is a
  `credit.ESTIMATORS` entry (targets are unused, 0).
  """
  if estimator != 'ppo':
    fn = functools.partial(credit.ESTIMATORS[estimator], **options)
    return lambda traj: (fn(traj.reward, traj.valid, traj.mask, traj.graph),
                         jnp.zeros_like(traj.reward))

  def ppo(traj):
    adv, targets = credit.gae_advantages(traj.reward, traj.values, traj.mask, **options)
    mean = losses.token_mean(adv, traj.mask)
    std = jnp.sqrt(losses.token_mean((adv - mean) ** 2, traj.mask))
    return jnp.where(traj.mask, (adv - mean) / (std + 1e-6), 0.0), targets
  return ppo


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, *,
                    estimator: str, estimator_options: dict, clip: float, kl_coef: float,
                    entropy_coef: float, value_coef: float, action_ratio: bool,
                    temperature: float = 1.0
                    ) -> Callable[[TrainState, Trajectories, Minibatch], tuple[TrainState, dict]]:
  """Builds train_step(state, traj, mb) -> (state, metrics); jit it.

  Args:
    graphdef: the policy's `nnx.split` graph definition.
    tx: the optimizer.
    estimator: a `credit.ESTIMATORS` name, or 'ppo' (critic + GAE; the model
      needs a value head and traj.values).
    estimator_options: its keyword options (train.config.credit_options).
    clip, kl_coef, entropy_coef, value_coef: loss coefficients.
    action_ratio: one importance ratio per action (GAGPO).
    temperature: the rollout temperature. Log-probs (ratio, KL, entropy) are
      those of the sampling distribution softmax(logits / temperature), so
      the ratio starts at 1 whatever the temperature.
  """
  advantage_fn = make_advantage_fn(estimator, estimator_options)
  with_critic = estimator == 'ppo'

  def loss_fn(params, ref_params, mb: Minibatch, adv, targets):
    stats = sampling.token_logprobs(graphdef, params, mb.tokens, mb.token_mask, temperature)
    ref = sampling.token_logprobs(graphdef, ref_params, mb.tokens, mb.token_mask, temperature)
    score = mb.score_mask & mb.sample_mask[:, None]
    pg, aux = losses.clipped_policy_loss(stats.logp, mb.old_logp, adv, score, clip=clip,
                                         action_ratio=action_ratio)
    kl = losses.token_mean(
        losses.low_variance_kl(stats.logp, jax.lax.stop_gradient(ref.logp)), score)
    entropy = losses.token_mean(stats.entropy, score)
    loss = pg + kl_coef * kl - entropy_coef * entropy
    terms = {'policy_loss': pg, 'kl': kl, 'entropy': entropy, **aux}
    if with_critic:
      prompt_end = jnp.argmax(mb.score_mask, axis=1)
      values = jnp.take_along_axis(stats.values, prompt_end[:, None], 1)[:, 0]
      terms['value_loss'] = losses.value_loss(values, targets, mb.sample_mask)
      loss += value_coef * terms['value_loss']
    return loss, {'loss': loss, **terms}

  def train_step(state: TrainState, traj: Trajectories, mb: Minibatch):
    adv_bt, target_bt = advantage_fn(traj)
    adv = jnp.where(mb.sample_mask, adv_bt.reshape(-1)[mb.sample_index], 0.0)
    targets = target_bt.reshape(-1)[mb.sample_index]
    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.ref_params, mb, adv, targets)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(terms['loss']) & jnp.isfinite(grad_norm)
    # A non-finite step is skipped: parameters and moments stay as they were.
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = TrainState(keep(params, state.params), keep(opt_state, state.opt_state),
                           state.ref_params, state.step + finite.astype(jnp.int32))
    real = traj.mask
    adv_mean = losses.token_mean(adv_bt, real)
    metrics = {
        **terms, 'grad_norm': grad_norm, 'finite': finite,
        'adv/mean': adv_mean,
        'adv/std': jnp.sqrt(losses.token_mean((adv_bt - adv_mean) ** 2, real)),
        'adv/max_abs': jnp.max(jnp.where(real, jnp.abs(adv_bt), 0.0)),
        'adv/zero_fraction': losses.token_mean(adv_bt == 0, real),
    }
    return new_state, metrics

  return train_step
