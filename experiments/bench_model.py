r"""Policy-model throughput: KV-cache sampling vs recomputation, and training.

Measures, for one preset at batch B and prompt length P:

  sample_tokens_per_s_kv         generated tokens/s of `sampling.generate`
                                 (prefill + N cached decode steps)
  sample_tokens_per_s_recompute  the same, recomputing a full forward pass
                                 over the fixed [B, P + N] buffer each step
  train_tokens_per_s             tokens/s (prompt + response) of the trainer's
                                 own jitted step (`train.step.make_train_step`:
                                 policy forward + backward, KL-reference
                                 forward, AdamW) on [B, P + N] rows whose N
                                 response tokens are scored
  train_flops_fraction_of_peak   the train step's model FLOP/s over this
                                 machine's matmul peak, measured in the same
                                 run with a large jnp.dot

Model FLOPs of the train step: 3 x the policy's forward (forward + backward)
+ 1 x the reference's forward. A forward counts the matmuls only (2 x matmul
params x tokens; the LM head only at the N scored positions, the only ones
the step computes it at) plus attention scores and values (4 x L^2 x heads x
head_dim per row and layer, the full masked square that XLA computes). Every
figure is the median of --repeats timed calls after one warm-up
(compilation) call.

  python -m experiments.bench_model
  python -m experiments.bench_model --batch=8 --repeats=1 --json=/tmp/model.json
"""

import json

from absl import app, flags
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from experiments import perf
from g2po_jax import models
from g2po_jax import sampling

_PRESET = flags.DEFINE_string('preset', 'tiny', f'One of {", ".join(models.PRESETS)}.')
_VOCAB = flags.DEFINE_integer('vocab_size', 1024, 'Vocabulary of the tiny preset.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                           'Parameter and activation dtype.')
_BATCH = flags.DEFINE_integer('batch', 64, 'Rows per batch.')
_PROMPT = flags.DEFINE_integer('prompt_len', 256, 'Prompt tokens per row.')
_NEW = flags.DEFINE_integer('new_tokens', 32, 'Generated tokens per row.')
_PEAK_N = flags.DEFINE_integer('peak_n', 2048, 'Side of the square jnp.dot for the peak.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls per measurement.')
_JSON = flags.DEFINE_string('json', None, 'Write the four headline numbers here.')


def recompute_generate(graphdef, params, tokens, keys, config):
  """The no-cache baseline: a full forward pass over [B, P + N] per token.

  keys: [B] PRNG keys, one per row (as `sampling.generate` takes them).
  """
  model = nnx.merge(graphdef, params)
  b, p = tokens.shape
  n = config.max_new_tokens
  slots = jnp.arange(p + n)

  def step(t, buffer):
    hidden, _ = model.hidden_states(buffer, jnp.broadcast_to(slots < p + t, buffer.shape))
    step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, t)
    token = sampling.draw_tokens(model.logits(hidden[:, p - 1 + t]), step_keys, config)
    return jax.lax.dynamic_update_slice(buffer, token[:, None], (0, p + t))

  return jax.lax.fori_loop(0, n, step, jnp.pad(tokens, ((0, 0), (0, n))))[:, p:]


def main(argv):
  del argv
  overrides = dict(dtype=_DTYPE.value, param_dtype=_DTYPE.value)
  if _PRESET.value == 'tiny':
    overrides['vocab_size'] = _VOCAB.value
  config = models.make_config(_PRESET.value, **overrides)
  b, p, n = _BATCH.value, _PROMPT.value, _NEW.value
  graphdef, params = nnx.split(models.init_model(config, 0))
  rng = jax.random.key(0)
  prompts = jax.random.randint(rng, (b, p), 0, config.vocab_size, jnp.int32)
  sample_config = sampling.SamplingConfig(max_new_tokens=n)   # no stop ids: N steps

  keys = jax.random.split(rng, b)
  kv = jax.jit(sampling.generate, static_argnums=(0, 5))
  t_kv = perf.seconds(kv, graphdef, params, prompts, jnp.ones((b, p), bool), keys,
                      sample_config, repeats=_REPEATS.value)
  recompute = jax.jit(recompute_generate, static_argnums=(0, 4))
  t_re = perf.seconds(recompute, graphdef, params, prompts, keys, sample_config,
                      repeats=_REPEATS.value)

  step, train_state = perf.trainer_step(graphdef, params)
  mb = jax.device_put(perf.synthetic_minibatch(np.random.default_rng(0), config.vocab_size,
                                               np.full(b, p), np.full(b, n), p, n))
  holder = [train_state]

  def run_train():
    holder[0], metrics = step(holder[0], mb)
    return metrics['loss']

  t_train = perf.seconds(run_train, repeats=_REPEATS.value)
  peak = perf.matmul_peak(_PEAK_N.value, config.dtype, _REPEATS.value)
  train_flops = 4 * perf.forward_flops(config, b, p + n, scored=n) / t_train

  results = {
      'sample_tokens_per_s_kv': b * n / t_kv,
      'sample_tokens_per_s_recompute': b * n / t_re,
      'train_tokens_per_s': b * (p + n) / t_train,
      'train_flops_fraction_of_peak': train_flops / peak,
  }
  print(f'{_PRESET.value} ({config.dtype}), batch {b}, prompt {p}, {n} new tokens, '
        f'{jax.devices()[0].platform} x{jax.device_count()}\n')
  print('| measurement | value |\n|---|---|')
  print(f'| sampling, KV cache (generated tokens/s) | {results["sample_tokens_per_s_kv"]:,.0f} |')
  print(f'| sampling, recompute prefix (generated tokens/s) | '
        f'{results["sample_tokens_per_s_recompute"]:,.0f} |')
  print(f'| KV-cache speed-up | {t_re / t_kv:.1f}x |')
  print(f'| trainer step, fwd+bwd+ref+AdamW (tokens/s) | {results["train_tokens_per_s"]:,.0f} |')
  print(f'| train step model GFLOP/s | {train_flops / 1e9:,.1f} |')
  print(f'| matmul peak GFLOP/s ({_PEAK_N.value}^3 jnp.dot) | {peak / 1e9:,.1f} |')
  print(f'| train FLOP/s fraction of peak | {results["train_flops_fraction_of_peak"]:.2f} |')
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main)
