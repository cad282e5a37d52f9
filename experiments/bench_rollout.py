r"""Shared prompts: prefilled once by the sampler, read once by the update.

For each setting, runs the trainer's own iterations in one process with
`rollout.share_prompts` and `ppo.pack_shared_prompts` both on and both off,
the two modes taking turns iteration by iteration. The learning rate is
1e-30, so the policy never changes and both modes sample the very same
episodes (sharing draws the same tokens): every difference is the cost of
the work. Reports per mode the duplication factor
per rollout step (sampler rows / distinct prompts), prompt tokens prefilled
and tokens the update reads per iteration, and seconds per phase (the
median over the iterations after the first, which compiles).

Settings:
  demo    configs/household_small_g2po.py (the CPU demo: tiny policy, word
          tokenizer, line prompts); --init_from=runs/demo/sft/policy uses the
          warm start, whose attempts overlap as RL sees them.
  recipe  the recipe benchmark's shape (bench_recipe: think_action prompts
          through the Qwen2.5 chat template, the real vocabulary, fixed
          response lengths), reduced for a CPU unless --full.

  python -m experiments.bench_rollout --init_from=runs/demo/sft/policy --json=rollout.json
"""

import json
import os
import statistics
import tempfile

from absl import app
from absl import flags
import jax
import numpy as np

from configs import household_small_g2po
from experiments import perf
from g2po_jax import graph as graph_lib
from g2po_jax.train import loop
from g2po_jax.train import metrics as metrics_lib

_SETTINGS = flags.DEFINE_list('settings', 'demo,recipe', 'Which settings to run.')
_INIT = flags.DEFINE_string('init_from', None, 'Warm-start policy for the demo setting.')
_ITERATIONS = flags.DEFINE_integer('iterations', 3, 'Iterations per mode (the first compiles).')
_OUT_JSON = flags.DEFINE_string('json', None, 'Write the results here (JSON).')


def demo_config():
  c = household_small_g2po.get_config()
  if _INIT.value:
    c.model.init_from = _INIT.value
  c.eval.every = 0
  c.graph_image_every = 0
  return c


class _Mode:
  """The trainer with sharing on or off, stepped one iteration at a time."""

  def __init__(self, c, share: bool, fixed_lengths: int | None, workdir: str):
    c = c.copy_and_resolve_references()
    c.rollout.share_prompts = c.ppo.pack_shared_prompts = share
    c.optim.lr, c.optim.warmup_steps = 1e-30, 0
    c.ckpt.every = 10**6
    self.run = loop.setup(c, workdir)
    if fixed_lengths:
      perf.Recorder(self.run, fixed_lengths)
    self.calls = []                               # (step of the episode, rows, distinct)
    self.iterations = []
    sampler = self.run.sampler

    def counting(params, tokens, lengths, rng, row_ids=None, **kw):
      distinct = len(np.unique(graph_lib.hash_tokens(tokens, lengths)))
      self.calls.append((len(self.calls), len(lengths), distinct))
      return sampler(params, tokens, lengths, rng, row_ids, **kw)

    self.run.sampler = counting

  def iterate(self, it: int) -> None:
    self.calls.clear()
    values = loop.run_iteration(self.run, it)
    values['_calls'] = list(self.calls)
    self.iterations.append(values)

  def close(self) -> None:
    self.run.ckpt.close()
    self.run.writer.close()
    self.run.env.close()

  def summary(self) -> dict:
    timed = self.iterations[1:] or self.iterations
    med = lambda key: statistics.median(v[key] for v in timed)
    last = self.iterations[-1]
    rows = np.array([c[1] for c in last['_calls']], np.float64)
    distinct = np.array([c[2] for c in last['_calls']], np.float64)
    return {
        'seconds_sampling': med('time/sampling'), 'seconds_update': med('time/update'),
        'seconds_iteration': med('time/iteration'),
        'samples': last['rollout/env_steps'],
        'unique_prompts_per_sample': last['share/unique_prompts_per_sample'],
        'update_rows_per_sample': last['share/update_rows_per_sample'],
        'prefill_tokens_saved': last['share/prefill_tokens_saved'],
        'train_tokens_saved': last['share/train_tokens_saved'],
        'duplication_per_step': (rows / np.maximum(distinct, 1)).round(2).tolist(),
        'success': last['rollout/success'],
    }


def _run_modes(c, fixed_lengths: int | None) -> tuple[dict, dict]:
  """Both modes, taking turns iteration by iteration, so that a change in
  the machine's load falls on both alike."""
  with tempfile.TemporaryDirectory() as on_dir, tempfile.TemporaryDirectory() as off_dir:
    on, off = _Mode(c, True, fixed_lengths, on_dir), _Mode(c, False, fixed_lengths, off_dir)
    for it in range(_ITERATIONS.value):
      on.iterate(it)
      off.iterate(it)
    on.close()
    off.close()
  return on.summary(), off.summary()


def compare(name: str, c, fixed_lengths: int | None = None) -> dict:
  on, off = _run_modes(c, fixed_lengths)
  assert on['samples'] == off['samples'], 'the two modes must sample the same episodes'
  out = {'on': on, 'off': off,
         'sampling_ratio': on['seconds_sampling'] / off['seconds_sampling'],
         'update_ratio': on['seconds_update'] / off['seconds_update']}
  print(f'\n{name}: {int(on["samples"])} samples per iteration; unique prompts per sample '
        f'{on["unique_prompts_per_sample"]:.2f}, update rows per sample '
        f'{on["update_rows_per_sample"]:.2f}')
  print(f'duplication factor per rollout step (rows / distinct prompts): '
        f'{on["duplication_per_step"]}')
  print('| | sharing on | sharing off | on / off |\n|---|---:|---:|---:|')
  for key, label in (('seconds_sampling', 'sampling (s)'), ('seconds_update', 'update (s)'),
                     ('seconds_iteration', 'iteration (s)')):
    print(f'| {label} | {on[key]:.2f} | {off[key]:.2f} | {on[key] / off[key]:.2f} |')
  print(f'| prefill tokens saved | {on["prefill_tokens_saved"]:,.0f} | 0 | |')
  print(f'| update tokens saved | {on["train_tokens_saved"]:,.0f} | 0 | |')
  return out


def main(argv):
  del argv
  metrics_lib.console_logging()
  results = {'device': f'{jax.devices()[0].device_kind} x{jax.device_count()}',
             'jax': jax.__version__}
  for setting in _SETTINGS.value:
    if setting == 'demo':
      results['demo'] = compare('demo (household-small)', demo_config())
    elif setting == 'recipe':
      c = perf.recipe_config('qwen2.5-0.5b', full=False)
      results['recipe'] = compare('recipe (reduced shape)', c,
                                  fixed_lengths=c.rollout.max_new_tokens // 2)
    else:
      raise app.UsageError(f'unknown setting {setting!r}; known: demo, recipe.')
  if _OUT_JSON.value:
    os.makedirs(os.path.dirname(os.path.abspath(_OUT_JSON.value)), exist_ok=True)
    with open(_OUT_JSON.value, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main)
