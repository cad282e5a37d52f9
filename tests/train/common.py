"""A training config small enough to compile and run in seconds."""

import ml_collections as mlc

from configs import household_small_g2po


def micro_config(estimator: str = 'g2po', **overrides) -> mlc.ConfigDict:
  """household-small with the 'micro' policy: 2 tasks x 4 attempts x 4 steps.

  Args:
    estimator: credit.name.
    **overrides: dotted keys with '__' for '.', e.g. ckpt__every=1.
  """
  c = household_small_g2po.get_config('runlocal')
  c.model.preset = 'micro'
  c.credit.name = estimator
  c.credit.norm = 'mean_std_norm'   # the spec's default (the demo config picks mean_norm)
  c.rollout.num_tasks = 2
  c.rollout.group_size = 4
  c.rollout.prompt_len = 128
  c.rollout.max_new_tokens = 6
  c.env.max_steps = 4
  c.num_iterations = 1
  c.eval.every = 0
  c.ppo.minibatch_size = 16
  c.graph_image_every = 0
  for key, value in overrides.items():
    node = c
    *path, last = key.split('__')
    for part in path:
      node = node[part]
    node[last] = value
  return c
