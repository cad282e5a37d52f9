r"""The papers' recipe at scale: the trainer's own iterations, timed by phase.

Runs `iterations` real iterations of the published config
(`configs/qwen2_5_1_5b_alfworld_like.py`: think_action prompts through the
Qwen2.5 chat template, the real 151k vocabulary, a random-init model of a
Qwen2.5 preset) and reports per phase: seconds (sampling, environment,
graph + credit, update), generated tokens/s, train tokens/s, the update's
model FLOP/s over the device's peak, decoding tokens/s over the
HBM-bandwidth roofline, peak device memory and compile time.

A random model never writes </action>, so its responses would all run to
max_new_tokens. Response lengths are therefore fixed per row, drawn from a
log-normal with median --median_response tokens (sigma 0.6), clipped to
[16, max_new_tokens], the spread of reasoning agents' replies; every
response is a format error, which changes nothing the timing depends on.

  # CPU, reduced shape (2-layer Qwen2.5-0.5B, 2 tasks x 2 attempts, 4 steps):
  python -m experiments.bench_recipe --json=recipe_cpu.json
  # An accelerator, the published shape (16 x 8, history 2, prompt <= 2048,
  # responses <= 512):
  python -m experiments.bench_recipe --full --preset=qwen2.5-1.5b --json=recipe_1.5b.json

Model FLOPs of an update step: 3 x the policy's forward + 1 x the KL
reference's forward on the step's padded rows, a forward counting the matmul
FLOPs (2 x params x tokens, the LM head at the scored tokens only) plus the
full attention square (`perf.forward_flops`). Decoding's roofline:
each decode step reads every weight once plus each row's KV cache, at the
device's memory bandwidth (measured here by a large on-device copy, or
--hbm_gbps).
"""

import contextlib
import json
import os
import resource
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from experiments import perf
from g2po_jax import sampling
from g2po_jax.models import qwen2
from g2po_jax.train import loop
from g2po_jax.train import metrics as metrics_lib

_PRESET = flags.DEFINE_string('preset', 'qwen2.5-0.5b', 'Model shape (a Qwen2.5 preset).')
_FULL = flags.DEFINE_bool('full', False, 'The published shapes (an accelerator); otherwise '
                          'the reduced CPU shape below.')
_LAYERS = flags.DEFINE_integer('layers', perf.REDUCED['layers'],
                                'Decoder layers (reduced shape only).')
_TASKS = flags.DEFINE_integer('tasks', perf.REDUCED['tasks'],
                               'Tasks per iteration (reduced shape only).')
_GROUP = flags.DEFINE_integer('group', perf.REDUCED['group'],
                               'Attempts per task (reduced shape only).')
_STEPS = flags.DEFINE_integer('max_steps', perf.REDUCED['max_steps'],
                               'Steps per episode (reduced shape only).')
_PROMPT = flags.DEFINE_integer('prompt_len', perf.REDUCED['prompt_len'],
                                'Prompt limit (reduced shape only).')
_NEW = flags.DEFINE_integer('max_new_tokens', perf.REDUCED['max_new_tokens'],
                             'Response limit (reduced shape only).')
_MEDIAN = flags.DEFINE_integer('median_response', 0, 'Median fixed response length '
                               '(default: 160 at the full shape, max_new_tokens / 2 else).')
_ITERATIONS = flags.DEFINE_integer('iterations', 2, 'Timed iterations (the first compiles).')
_PEAK = flags.DEFINE_float('peak_tflops', 0.0, 'The device\'s peak in the model dtype '
                           '(default: measured with a large matmul).')
_HBM = flags.DEFINE_float('hbm_gbps', 0.0, 'Memory bandwidth (default: measured).')
_JSON = flags.DEFINE_string('json', None, 'Write the results here.')


@contextlib.contextmanager
def compile_seconds():
  """Sums XLA backend compile durations while the block runs (a 1-list)."""
  total = [0.0]

  def listener(event, duration, **kwargs):
    del kwargs
    if event == '/jax/core/compile/backend_compile_duration':
      total[0] += duration

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield total
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def memory_bandwidth(megabytes: int = 512) -> float:
  """Bytes/s of a large on-device elementwise pass (read + write)."""
  x = jnp.ones((megabytes * 2**20 // 4,), jnp.float32)
  f = jax.jit(lambda x: x * 1.0001)
  jax.block_until_ready(f(x))
  best = float('inf')
  for _ in range(3):
    t0 = time.perf_counter()
    jax.block_until_ready(f(x))
    best = min(best, time.perf_counter() - t0)
  return 2 * x.nbytes / best


def peak_memory_bytes() -> int:
  """Peak bytes in use on device 0 (accelerators), or the process's peak RSS."""
  stats = jax.local_devices()[0].memory_stats()
  if stats and 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use'])
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def decode_roofline(config, rows: int, kv_length: float, bandwidth: float) -> float:
  """Tokens/s if each decode step only read the weights once and each row's
  KV cache (kv_length slots) at `bandwidth` bytes/s."""
  itemsize = jnp.dtype(config.dtype).itemsize
  weights = config.num_layers * (
      config.hidden_size * (config.num_heads + 2 * config.num_kv_heads) * config.head_dim
      + config.num_heads * config.head_dim * config.hidden_size
      + 3 * config.hidden_size * config.intermediate_size) + config.vocab_size * config.hidden_size
  kv = 2 * config.num_layers * config.num_kv_heads * config.head_dim * kv_length
  return rows / ((weights + rows * kv) * itemsize / bandwidth)


def measure(c, iterations: int, median: int) -> dict[str, float]:
  """Runs `iterations` trainer iterations of config c; the timings of the last."""
  with tempfile.TemporaryDirectory() as workdir, compile_seconds() as compiled:
    run = loop.setup(c, workdir)
    recorder = perf.Recorder(run, median)
    per_iteration = []
    for it in range(iterations):
      recorder.steps.clear()
      values = loop.run_iteration(run, it)
      values['compile_seconds'] = compiled[0]
      per_iteration.append((values, list(recorder.steps)))
    config = run.policy.model_config
    run.ckpt.close()
    run.writer.close()
    run.env.close()
  values, steps = per_iteration[-1]
  flops = sum(4 * perf.forward_flops(config, r, w, scored=k) for r, w, k in steps)
  return {
      'seconds_sampling': values['time/sampling'], 'seconds_env': values['time/env'],
      'seconds_graph_credit': values['time/graph'] + values['time/credit'],
      'seconds_batch': values['time/batch'], 'seconds_update': values['time/update'],
      'seconds_iteration': values['time/iteration'],
      'generated_tokens_per_s': values['throughput/sampled_tokens_per_s'],
      'train_tokens_per_s': values['throughput/train_tokens_per_s'],
      'update_flops_per_s': flops / values['time/update'],
      'env_steps': values['rollout/env_steps'],
      'response_length': values['rollout/response_length'],
      'compile_seconds_first_iteration': per_iteration[0][0]['compile_seconds'],
      'compile_seconds_total': values['compile_seconds'],
      'update_steps': len(steps),
  }, config


def decode_rate(config, rows: int, prompt: int, new: int) -> float:
  """Decoded tokens/s of the sampler at [rows, prompt] + `new` tokens: the
  time of `new` tokens minus that of 1 (the prefill)."""
  graphdef, params = nnx.split(qwen2.init_model(config, seed=0))
  tokens = np.random.default_rng(0).integers(0, 1000, (rows, prompt)).astype(np.int32)
  times = {}
  for n in (1, new):
    sampler = sampling.Sampler(graphdef, sampling.SamplingConfig(max_new_tokens=n))
    sampler(params, tokens, np.full(rows, prompt), jax.random.key(0))      # compile
    t0 = time.perf_counter()
    sampler(params, tokens, np.full(rows, prompt), jax.random.key(1))
    times[n] = time.perf_counter() - t0
  return rows * (new - 1) / max(times[new] - times[1], 1e-9)


def main(argv):
  del argv
  metrics_lib.console_logging()
  c = perf.recipe_config(_PRESET.value, _FULL.value, layers=_LAYERS.value, tasks=_TASKS.value,
                         group=_GROUP.value, max_steps=_STEPS.value,
                         prompt_len=_PROMPT.value, max_new_tokens=_NEW.value)
  median = _MEDIAN.value or (160 if _FULL.value else c.rollout.max_new_tokens // 2)
  out, config = measure(c, _ITERATIONS.value, median)
  dtype = config.dtype
  peak = (_PEAK.value * 1e12 if _PEAK.value else
          perf.matmul_peak(4096 if jax.default_backend() != 'cpu' else 1024,
                                  dtype, 3))
  bandwidth = _HBM.value * 1e9 if _HBM.value else memory_bandwidth()
  rows = c.rollout.num_tasks * c.rollout.group_size
  kv = min(c.rollout.prompt_len, 1024) + median
  decoded = decode_rate(config, rows, min(c.rollout.prompt_len, 1024), min(median, 64))
  out.update({
      'device': f'{jax.devices()[0].device_kind} x{jax.device_count()}',
      'jax': jax.__version__, 'preset': _PRESET.value, 'layers': config.num_layers,
      'vocab_size': config.vocab_size, 'dtype': dtype,
      'shape': dict(tasks=c.rollout.num_tasks, group=c.rollout.group_size,
                    max_steps=c.env.max_steps, prompt_len=c.rollout.prompt_len,
                    max_new_tokens=c.rollout.max_new_tokens, median_response=median),
      'peak_flops_per_s': peak, 'update_fraction_of_peak': out['update_flops_per_s'] / peak,
      'memory_bandwidth_bytes_per_s': bandwidth,
      'decode_tokens_per_s': decoded,
      'decode_roofline_tokens_per_s': decode_roofline(config, rows, kv, bandwidth),
      'peak_memory_bytes': peak_memory_bytes(),
  })
  out['decode_fraction_of_roofline'] = out['decode_tokens_per_s'] / out[
      'decode_roofline_tokens_per_s']
  print(f'{out["preset"]} ({out["layers"]} layers, vocab {out["vocab_size"]}, {dtype}) on '
        f'{out["device"]}, jax {out["jax"]}; shape {out["shape"]}\n')
  print('| measurement | value |\n|---|---:|')
  for key, label in (
      ('seconds_sampling', 'sampling (s)'), ('seconds_env', 'environment (s)'),
      ('seconds_graph_credit', 'graph + credit (s)'), ('seconds_update', 'update (s)'),
      ('seconds_iteration', 'iteration (s)'),
      ('generated_tokens_per_s', 'generated tokens/s (rollout sampling)'),
      ('train_tokens_per_s', 'train tokens/s (scored response tokens)'),
      ('update_fraction_of_peak', 'update model FLOP/s / peak'),
      ('decode_tokens_per_s', 'decode tokens/s'),
      ('decode_fraction_of_roofline', 'decode / HBM roofline'),
      ('compile_seconds_first_iteration', 'compile (s, first iteration)')):
    value = out[key]
    print(f'| {label} | {value:,.3g} |' if value < 100 else f'| {label} | {value:,.0f} |')
  print(f'| peak memory | {out["peak_memory_bytes"] / 2**30:.2f} GiB |')
  if _JSON.value:
    os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
    with open(_JSON.value, 'w') as f:
      json.dump(out, f, indent=2)
  logging.info('done')


if __name__ == '__main__':
  app.run(main)
