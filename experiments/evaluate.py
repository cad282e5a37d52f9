r"""Evaluates a policy on an environment's evaluation tasks, per task type.

  python -m experiments.evaluate --policy=runs/alfworld_g2po --env=alfworld
  python -m experiments.evaluate --policy=runs/demo/g2po --env=alfworld \
      --out=runs/demo/zero_shot_alfworld.json          # a household policy, zero-shot
  python -m experiments.evaluate --policy=runs/demo/g2po --env=household-small \
      --config=configs/household_small_g2po.py

--policy is a policy directory (experiments/sft.py's, experiments/export.py's
or a Hugging Face Qwen2 download) or a training workdir (its newest readable
checkpoint). --config gives the rollout settings (prompt length, history,
response length, protocol, episode limit, eval temperature and task count;
default configs/alfworld_g2po.py); --env replaces its environment (with that
environment's default options) and --config.KEY=VALUE sets any key.

Besides success per task type and the invalid-action and format-error rates,
it reports what limits a policy that meets an environment it was not trained
on (zero-shot transfer):
  unknown_word_actions  share of the admissible actions offered that hold a
                        word the policy's tokenizer does not know (word
                        tokenizers only: subword tokenizers know every text)
  unknown_word_tasks    the same for the task texts
  cut_prompts           share of prompts cut to rollout.prompt_len (cut from
                        the left: the task line is lost)
  absent_receptacle_actions
                        share of actions that name a receptacle the room does
                        not have (ALFWorld-like rooms, whose first observation
                        lists every receptacle)
"""

import functools
import json
import sys

from absl import app
from absl import flags
from absl import logging
from flax import nnx
import jax

from g2po_jax import envs
from g2po_jax import export as export_lib
from g2po_jax import sampling
from g2po_jax import stopping
from g2po_jax.train import checkpoint as ckpt_lib
from g2po_jax.train import config as config_lib
from g2po_jax.train import evaluate as evaluate_lib
from g2po_jax.train import loop
from g2po_jax.train import metrics as metrics_lib
from g2po_jax.train import rollout

_POLICY = flags.DEFINE_string('policy', None, 'A policy directory or a training workdir.')
_ENV = flags.DEFINE_string('env', None, "The environment (g2po_jax.envs.NAMES); default: the "
                           "config's.")
_CONFIG = flags.DEFINE_string('config', 'configs/alfworld_g2po.py',
                              'Config file giving the rollout settings (optionally :ARG).')
_OUT = flags.DEFINE_string('out', None, 'Also write the results to this JSON file.')
flags.mark_flags_as_required(['policy'])

def load_policy(path: str):
  """(model, tokenizer) of a policy directory or a training workdir."""
  try:
    model, tokenizer, step = export_lib.load_trained_policy(path)
    logging.info('policy: checkpoint %d of %s', step, path)
    return model, tokenizer
  except ValueError as workdir_error:
    try:
      return ckpt_lib.load_policy(path)
    except ValueError as policy_error:
      raise ValueError(f'--policy={path!r} is neither a training workdir ({workdir_error}) '
                       f'nor a policy directory ({policy_error}).') from None


def main(args):
  argv, overrides = args
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  metrics_lib.console_logging()
  try:
    c = config_lib.load(_CONFIG.value, overrides).unlock()
    if _ENV.value and _ENV.value != c.env.name:
      if _ENV.value not in envs.NAMES:
        raise config_lib.ConfigError(f'--env={_ENV.value!r} is not one of '
                                     f'{", ".join(envs.NAMES)}.')
      c.env.name, c.env.kwargs = _ENV.value, {}
    config_lib.validate(c)
    model, tokenizer = load_policy(_POLICY.value)
    protocol = loop.make_protocol(c, tokenizer)
  except (config_lib.ConfigError, ValueError) as e:
    sys.exit(f'error: {e}')
  env = evaluate_lib.Recorder(envs.make(c.env.name, **c.env.kwargs))
  graphdef, params = nnx.split(model)
  stop_ids, stop_table = stopping.for_protocol(tokenizer, protocol)
  sampler = sampling.Sampler(graphdef, sampling.SamplingConfig(
      max_new_tokens=c.rollout.max_new_tokens, temperature=c.eval.temperature,
      top_k=c.rollout.top_k, top_p=c.rollout.top_p, stop_ids=stop_ids,
      pad_id=tokenizer.pad_id), stop_table=stop_table)
  seeds = envs.split_seeds('eval', c.eval.num_tasks)
  logging.info('evaluating %s on %d %s tasks', _POLICY.value, len(seeds), c.env.name)
  try:
    r = rollout.collect(env, seeds, functools.partial(sampler, params), tokenizer, protocol,
                        jax.random.key(c.seed + 1), **config_lib.rollout_options(c))
  finally:
    env.close()
  results = {'policy': _POLICY.value, 'env': c.env.name, 'num_tasks': len(seeds),
             'temperature': c.eval.temperature, 'prompt_len': c.rollout.prompt_len,
             **evaluate_lib.episode_metrics('eval', r),
             **evaluate_lib.transfer_metrics(env, tokenizer, r, c.rollout.prompt_len)}
  for key, value in results.items():
    print(f'{key:40s} {value:.3f}' if isinstance(value, float) else f'{key:40s} {value}')
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main, flags_parser=config_lib.parse_flags)
