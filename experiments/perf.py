"""Measurement helpers shared by the benchmarks (no flags: importable anywhere)."""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import qwen2_5_1_5b_alfworld_like
from g2po_jax import models
from g2po_jax.train import batch as batch_lib
from g2po_jax.train import loop
from g2po_jax.train import step as step_lib


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
  fields = batch_lib.pack_rows(
      prompts, prompt_lengths, responses, response_mask,
      np.where(response_mask, -np.log(vocab), 0.0).astype(np.float32), np.arange(s)[:, None],
      prompt=prompt_width, scored=response_width)
  return step_lib.Minibatch(
      **fields, advantage=rng.standard_normal((s, 1)).astype(np.float32),
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


# Reduced shape of the recipe benchmarks on a CPU: a 2-layer Qwen2.5 model on
# the real vocabulary, 2 tasks x 2 attempts of 4 steps, prompts <= 1024,
# responses <= 64.
REDUCED = dict(layers=2, tasks=2, group=2, max_steps=4, prompt_len=1024, max_new_tokens=64)


def recipe_config(preset: str, full: bool, **reduced):
  """The published recipe config at a benchmark's shape (a random-init model).

  Args:
    preset: a Qwen2.5 preset.
    full: the published shapes; otherwise REDUCED, updated by `reduced`.
  """
  c = qwen2_5_1_5b_alfworld_like.get_config(f'model={preset}')
  c.eval.every = 0
  c.ckpt.every = 10**6
  if not full:
    shape = {**REDUCED, **reduced}
    c.model.num_layers = shape['layers']
    c.rollout.num_tasks, c.rollout.group_size = shape['tasks'], shape['group']
    c.env.max_steps = shape['max_steps']
    c.rollout.prompt_len, c.rollout.max_new_tokens = shape['prompt_len'], shape['max_new_tokens']
    c.model.dtype = 'float32' if jax.default_backend() == 'cpu' else c.model.dtype
    c.ppo.minibatch_size = c.rollout.num_tasks * c.rollout.group_size
    c.ppo.logit_chunk = 512
  return c


class Recorder:
  """Wraps a run's sampler and train step: fixed response lengths, and the
  shapes each update step computed on.

  A random model never writes a stop string, so each response's length is
  drawn instead: log-normal with median `median` (sigma 0.6), clipped to
  [16, max_new_tokens].
  """

  def __init__(self, run: loop.Run, median: int, seed: int = 0):
    self.rng = np.random.default_rng(seed)
    self.median, self.limit = median, run.c.rollout.max_new_tokens
    self.steps = []          # (rows, width, scored) of each update step
    sampler, step = run.sampler, run.train_step

    def sample(params, tokens, lengths, rng, row_ids=None):
      drawn = self.rng.lognormal(np.log(self.median), 0.6, len(lengths))
      limits = np.clip(np.round(drawn), 16, self.limit).astype(np.int64)
      return sampler(params, tokens, lengths, rng, row_ids, limits=limits)

    def train_step(state, mb):
      self.steps.append((mb.tokens.shape[0], mb.tokens.shape[1], mb.score_mask.shape[1]))
      return step(state, mb)

    run.sampler, run.train_step = sample, train_step
