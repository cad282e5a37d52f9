"""The jitted device functions of an iteration: advantages once, then PPO steps.

  advantage_fn(traj[, values])  -> [B, T] advantages (+ value targets) and
                                   their statistics, once per iteration
  train_step(state, mb)         -> one clipped, KL-regularized policy-gradient
                                   step on a mini-batch that carries its
                                   samples' advantages

The train step scores only the response tokens (`sampling.scored_logprobs`),
so its memory follows the responses, not prompt length x vocabulary.
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
  valid: Array    # [B, T] bool, the action was well formed and admissible
  mask: Array     # [B, T] bool, real steps (a prefix per row)
  graph: Graph    # padded graph arrays


class Minibatch(NamedTuple):
  """R rows of L tokens holding J samples each, with K scored tokens per row.

  One sample per row (J = 1): the prompt, left-padded to end at column P-1,
  then the response. A row may also pack one prompt and several responses
  (segments tell them apart); `score_sample` says whose token each scored
  token is.
  """
  tokens: Array        # [R, L] int32
  token_mask: Array    # [R, L] bool, real tokens
  positions: Array     # [R, L] int32 rotary positions
  segments: Array      # [R, L] int32, 0 = prompt, j+1 = the row's j-th response
  score_pos: Array     # [R, K] int32 column predicting each scored token
  score_token: Array   # [R, K] int32 the scored (response) tokens
  score_mask: Array    # [R, K] bool, real scored tokens
  score_sample: Array  # [R, K] int32 in [0, J), the sample of each scored token
  old_logp: Array      # [R, K] float32, the sampler's log-probs
  value_pos: Array     # [R] int32 column of the prompt's last token (the state)
  advantage: Array     # [R, J] float32, each sample's advantage
  sample_mask: Array   # [R, J] bool, real samples
  value_target: Array | None  # [R, J] float32 (PPO with a critic), else None


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


def scored(graphdef: nnx.GraphDef, params: nnx.State, mb: Minibatch, temperature: float,
           chunk: int, values: bool = False) -> sampling.ScoredStats:
  """`sampling.scored_logprobs` of a mini-batch's scored tokens (and values)."""
  return sampling.scored_logprobs(
      graphdef, params, mb.tokens, mb.token_mask, mb.positions, mb.segments, mb.score_pos,
      mb.score_token, mb.value_pos if values else None, temperature, chunk)


def state_values(graphdef: nnx.GraphDef, params: nnx.State, mb: Minibatch,
                 chunk: int = 1024) -> Array:
  """[R] critic value of each row's state (at the prompt's last token)."""
  return scored(graphdef, params, mb, 1.0, chunk, values=True).values


def advantage_stats(adv: Array, mask: Array) -> dict[str, Array]:
  """Mean, std, largest magnitude and share of zeros of [B, T] advantages."""
  mean = losses.token_mean(adv, mask)
  return {'adv/mean': mean,
          'adv/std': jnp.sqrt(losses.token_mean((adv - mean) ** 2, mask)),
          'adv/max_abs': jnp.max(jnp.where(mask, jnp.abs(adv), 0.0)),
          'adv/zero_fraction': losses.token_mean(adv == 0, mask)}


def make_advantage_fn(estimator: str, options: dict) -> Callable[..., tuple]:
  """advantage_fn(traj, values=None) -> (advantages [B, T], targets, stats).

  Every name but 'ppo' is a `credit.ESTIMATORS` entry (targets None).
  'ppo' is GAE over the critic's [B, T] `values`, whitened over the real
  steps; its targets are the unwhitened returns.
  """
  if estimator != 'ppo':
    fn = functools.partial(credit.ESTIMATORS[estimator], **options)

    def advantages(traj: Trajectories, values: Array | None = None):
      del values
      adv = fn(traj.reward, traj.valid, traj.mask, traj.graph)
      return adv, None, advantage_stats(adv, traj.mask)
    return advantages

  def ppo(traj: Trajectories, values: Array):
    adv, targets = credit.gae_advantages(traj.reward, values, traj.mask, **options)
    mean = losses.token_mean(adv, traj.mask)
    std = jnp.sqrt(losses.token_mean((adv - mean) ** 2, traj.mask))
    adv = jnp.where(traj.mask, (adv - mean) / (std + 1e-6), 0.0)
    return adv, targets, advantage_stats(adv, traj.mask)
  return ppo


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, *,
                    clip: float, kl_coef: float, entropy_coef: float, value_coef: float,
                    action_ratio: bool, temperature: float = 1.0, logit_chunk: int = 1024
                    ) -> Callable[[TrainState, Minibatch], tuple[TrainState, dict]]:
  """Builds train_step(state, mb) -> (state, metrics); jit it.

  Args:
    graphdef: the policy's `nnx.split` graph definition.
    tx: the optimizer.
    clip, kl_coef, entropy_coef, value_coef: loss coefficients (the value
      loss applies when mini-batches carry value targets).
    action_ratio: one importance ratio per action (GAGPO).
    temperature: the rollout temperature. Log-probs (ratio, KL, entropy) are
      those of the sampling distribution softmax(logits / temperature), so
      the ratio starts at 1 whatever the temperature.
    logit_chunk: scored positions per LM-head block (bounds peak memory).
  """

  def loss_fn(params, ref_logp, mb: Minibatch):
    with_critic = mb.value_target is not None
    stats = scored(graphdef, params, mb, temperature, logit_chunk, values=with_critic)
    token_real = jnp.take_along_axis(mb.sample_mask, mb.score_sample, axis=1)
    score = mb.score_mask & token_real
    adv = jnp.take_along_axis(mb.advantage, mb.score_sample, axis=1)
    pg, aux = losses.clipped_policy_loss(
        stats.logp, mb.old_logp, adv, score, clip=clip,
        action_of=mb.score_sample if action_ratio else None)
    kl = losses.token_mean(losses.low_variance_kl(stats.logp, ref_logp), score)
    entropy = losses.token_mean(stats.entropy, score)
    loss = pg + kl_coef * kl - entropy_coef * entropy
    terms = {'policy_loss': pg, 'kl': kl, 'entropy': entropy, **aux}
    if with_critic:
      values = jnp.broadcast_to(stats.values[:, None], mb.value_target.shape)
      terms['value_loss'] = losses.value_loss(values, mb.value_target, mb.sample_mask)
      loss += value_coef * terms['value_loss']
    return loss, {'loss': loss, **terms}

  def train_step(state: TrainState, mb: Minibatch):
    # The reference needs no gradient: scored outside value_and_grad, so its
    # activations are never kept for a backward pass.
    ref_logp = scored(graphdef, state.ref_params, mb, temperature, logit_chunk).logp
    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, ref_logp, mb)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(terms['loss']) & jnp.isfinite(grad_norm)
    # A non-finite step is skipped: parameters and moments stay as they were.
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = TrainState(keep(params, state.params), keep(opt_state, state.opt_state),
                           state.ref_params, state.step + finite.astype(jnp.int32))
    return new_state, {**terms, 'grad_norm': grad_norm, 'finite': finite}

  return train_step
