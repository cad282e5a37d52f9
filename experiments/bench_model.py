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
import statistics
import time

from absl import app, flags
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from g2po_jax import models
from g2po_jax import sampling
from g2po_jax.train import batch as batch_lib
from g2po_jax.train import step as step_lib

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


def seconds(fn, *args, repeats: int) -> float:
  """Median wall time of fn(*args) over `repeats` calls, after a warm-up."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    tic = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - tic)
  return statistics.median(times)


def matmul_peak(n: int, dtype, repeats: int) -> float:
  """FLOP/s of an n x n x n jnp.dot (best of `repeats`, the machine's peak)."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  dot = jax.jit(jnp.dot)
  jax.block_until_ready(dot(a, a))
  best = float('inf')
  for _ in range(repeats):
    tic = time.perf_counter()
    jax.block_until_ready(dot(a, a))
    best = min(best, time.perf_counter() - tic)
  return 2 * n**3 / best


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


def forward_flops(config: models.ModelConfig, batch: int, length: int,
                  scored: int | None = None) -> float:
  """Matmul + attention FLOPs of one forward pass over [batch, length], with
  the LM head at `scored` positions per row (default: all of them)."""
  d, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
  qkv = d * (config.num_heads + 2 * config.num_kv_heads) * config.head_dim
  out = config.num_heads * config.head_dim * d
  per_token = config.num_layers * (qkv + out + 3 * d * f)
  head = d * v * (length if scored is None else scored)
  attention = config.num_layers * 4 * length**2 * config.num_heads * config.head_dim
  return batch * (2 * per_token * length + 2 * head + attention)


def synthetic_minibatch(rng: np.random.Generator, vocab: int, prompt_lengths: np.ndarray,
                        response_lengths: np.ndarray, prompt_width: int,
                        response_width: int) -> step_lib.Minibatch:
  """A mini-batch of random tokens laid out as the trainer lays samples out."""
  s = len(prompt_lengths)
  prompts = rng.integers(0, vocab, (s, prompt_width)).astype(np.int32)
  responses = rng.integers(0, vocab, (s, response_width)).astype(np.int32)
  response_mask = np.arange(response_width) < response_lengths[:, None]
  fields = batch_lib.sample_rows(prompts, prompt_lengths, responses, response_mask,
                                 prompt_width)
  return step_lib.Minibatch(
      **fields, score_sample=np.zeros((s, response_width), np.int32),
      old_logp=np.where(response_mask, -np.log(vocab), 0.0).astype(np.float32),
      advantage=rng.standard_normal((s, 1)).astype(np.float32),
      sample_mask=np.ones((s, 1), bool), value_target=None)


def trainer_step(graphdef, params, *, lr: float = 1e-4, logit_chunk: int = 1024):
  """The trainer's jitted, donating step and its initial state."""
  tx = step_lib.make_optimizer(step_lib.make_schedule(lr, 0), 0.9, 0.999, 0.01, 1.0)
  step = jax.jit(step_lib.make_train_step(
      graphdef, tx, clip=0.2, kl_coef=0.01, entropy_coef=0.001, value_coef=0.5,
      action_ratio=False, logit_chunk=logit_chunk), donate_argnums=(0,))
  state = jax.jit(lambda p: step_lib.TrainState(p, tx.init(p), jax.tree.map(jnp.copy, p),
                                                jnp.int32(0)))(params)
  return step, state


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
  t_kv = seconds(kv, graphdef, params, prompts, jnp.ones((b, p), bool), keys, sample_config,
                 repeats=_REPEATS.value)
  recompute = jax.jit(recompute_generate, static_argnums=(0, 4))
  t_re = seconds(recompute, graphdef, params, prompts, keys, sample_config,
                 repeats=_REPEATS.value)

  step, train_state = trainer_step(graphdef, params)
  mb = jax.device_put(synthetic_minibatch(np.random.default_rng(0), config.vocab_size,
                                          np.full(b, p), np.full(b, n), p, n))
  holder = [train_state]

  def run_train():
    holder[0], metrics = step(holder[0], mb)
    return metrics['loss']

  t_train = seconds(run_train, repeats=_REPEATS.value)
  peak = matmul_peak(_PEAK_N.value, config.dtype, _REPEATS.value)
  train_flops = 4 * forward_flops(config, b, p + n, scored=n) / t_train

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
