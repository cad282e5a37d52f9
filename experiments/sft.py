r"""Warm start: supervised fine-tuning on noisy-oracle demonstrations.

  python -m experiments.sft --config=configs/household_small_g2po.py --workdir=runs/sft

Demonstrations: the environment's oracle plays train tasks with `sft.noise`
random actions and `sft.invalid` inadmissible ones; every visited state is labelled with the oracle's action from
that state, written as the config's protocol answers (`rollout.protocol`):
the action alone (line), or `<think>` a short reasoning generated from the
oracle's plan `</think>` then `<action>` the action `</action>` after a
chat-template prompt (think_action; `g2po_jax/demos.py`). The tokenizer is
the one RL's fresh policy would get (`model.tokenizer`, e.g. bpe for
think_action). The policy learns them by cross-entropy and stops as soon as its
success on unseen tasks, sampled at the rollout temperature, reaches
`sft.target_success` (the papers start RL from an instruction model with low
but non-zero success) and its invalid-action rate is at most
`sft.max_invalid_rate` (where chance alone reaches the target success, as in
Coin Collector, a policy that has not yet learnt to read the admissible list
would pass the first test). Writes WORKDIR/policy, which RL loads with
--config.model.init_from=WORKDIR/policy (and uses as its KL reference).
"""

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from g2po_jax import demos
from g2po_jax import envs
from g2po_jax import sampling
from g2po_jax import stopping
from g2po_jax.models import qwen2
from g2po_jax.train import batch as batch_lib
from g2po_jax.train import checkpoint as ckpt_lib
from g2po_jax.train import config as config_lib
from g2po_jax.train import evaluate as evaluate_lib
from g2po_jax.train import loop
from g2po_jax.train import metrics as metrics_lib
from g2po_jax.train import policy as policy_lib

_CONFIG = flags.DEFINE_string('config', None, 'Experiment config file, optionally with :ARG; '
                              'set any key with --config.KEY=VALUE.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the policy and logs go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(args):
  argv, overrides = args
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  metrics_lib.console_logging()
  try:
    c = config_lib.load(_CONFIG.value, overrides)
    config_lib.validate(c)
  except config_lib.ConfigError as e:
    sys.exit(f'config error: {e}')
  workdir = _WORKDIR.value
  if os.path.exists(os.path.join(workdir, 'policy', 'config.json')):
    logging.info('%s already holds a warm-start policy; nothing to do.',
                 os.path.join(workdir, 'policy'))
    return
  env = envs.make(c.env.name, **c.env.kwargs)
  try:
    tokenizer = policy_lib.make_tokenizer(c, env)
    protocol = loop.make_protocol(c, tokenizer)
  except config_lib.ConfigError as e:
    sys.exit(f'config error: {e}')
  config = qwen2.make_config(c.model.preset, vocab_size=tokenizer.vocab_size,
                             dtype=c.model.dtype, param_dtype=c.model.param_dtype)
  model = qwen2.init_model(config, seed=c.seed)
  graphdef, params = nnx.split(model)

  t0 = time.perf_counter()
  rng = np.random.default_rng(c.seed)
  seeds = envs.split_seeds('train', c.sft.demo_tasks, start=500_000_000)  # not RL's first tasks
  played = demos.play(env, seeds, noise=c.sft.noise, invalid=c.sft.invalid,
                      max_steps=c.env.max_steps, rng=rng)
  # Its own generator: the line protocol's rows and batches stay as they were.
  ids, lengths, label_ids, label_mask = batch_lib.demonstration_rows(
      played, tokenizer, protocol, history=c.rollout.history, prompt_len=c.rollout.prompt_len,
      rng=np.random.default_rng([c.seed, 1]))
  rows = batch_lib.sample_rows(ids, lengths, label_ids, label_mask, batch_lib.prompt_width(
      int(lengths.max(initial=1)), c.rollout.prompt_len))
  logging.info('%d demonstration steps from %d tasks in %.1f s', len(lengths), len(seeds),
               time.perf_counter() - t0)

  tx = optax.adamw(c.sft.lr, weight_decay=0.0)
  opt_state = tx.init(params)

  @jax.jit
  def sft_step(params, opt_state, rows):
    def loss_fn(p):
      logp = sampling.scored_logprobs(
          graphdef, p, rows['tokens'], rows['token_mask'], rows['positions'],
          rows['segments'], rows['score_pos'], rows['score_token'],
          chunk=c.ppo.logit_chunk).logp
      score = rows['score_mask']
      return -jnp.sum(jnp.where(score, logp, 0.0)) / jnp.maximum(score.sum(), 1)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  stop_ids, stop_table = stopping.for_protocol(tokenizer, protocol)
  sampler = sampling.Sampler(graphdef, sampling.SamplingConfig(
      max_new_tokens=c.rollout.max_new_tokens, temperature=c.rollout.temperature,
      stop_ids=stop_ids, pad_id=tokenizer.pad_id), stop_table=stop_table)
  writer = metrics_lib.Writer(os.path.join(workdir, 'sft'))
  success = 0.0
  for update in range(1, c.sft.max_updates + 1):
    pick = rng.integers(0, len(lengths), c.sft.batch_size)
    params, opt_state, loss = sft_step(params, opt_state,
                                       {k: v[pick] for k, v in rows.items() if k != 'value_pos'})
    if update % c.sft.eval_every == 0:
      # The RL rollout temperature, not greedy: the regime RL starts from.
      values = evaluate_lib.evaluate(c, env, sampler, params, tokenizer, protocol, update)
      success, invalid = values['eval/success'], values['eval/invalid_rate']
      writer.scalars(update, {'sft/loss': float(loss), 'sft/success': success,
                              'sft/invalid_rate': invalid})
      logging.info('sft update %d | loss %.3f | success %.2f (target %.2f) | invalid %.2f '
                   '(at most %.2f)', update, float(loss), success, c.sft.target_success,
                   invalid, c.sft.max_invalid_rate)
      if success >= c.sft.target_success and invalid <= c.sft.max_invalid_rate:
        break
  model = nnx.merge(graphdef, params)
  ckpt_lib.save_policy(os.path.join(workdir, 'policy'), model, tokenizer)
  writer.close()
  env.close()
  logging.info('wrote %s (success %.2f after %d updates, %.0f s)', os.path.join(workdir, 'policy'),
               success, update, time.perf_counter() - t0)


if __name__ == '__main__':
  app.run(main, flags_parser=config_lib.parse_flags)
