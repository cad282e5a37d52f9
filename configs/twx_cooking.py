r"""G2PO on TextWorldExpress CookingWorld (an external engine; needs Java).

  python -m experiments.train --config=configs/twx_cooking.py --workdir=runs/twx_cooking
  python -m experiments.train --config=configs/twx_cooking.py:runlocal --workdir=/tmp/twx

A small kitchen world (2 locations, 2 ingredients, 2 distractors, no doors):
gold paths of about 10-20 steps, and a random policy almost never wins, so
start from a warm start (experiments/sft.py with this config) as for the
household world.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, runlocal=False)
  c = common.base_config()
  c.env.name = 'twx-cooking'
  c.env.max_steps = 30
  c.env.kwargs = mlc.ConfigDict(dict(num_locations=2, num_ingredients=2,
                                     num_distractor_items=2, num_workers=2))
  c.rollout.num_tasks = 8
  c.rollout.group_size = 8
  c.rollout.prompt_len = 384
  c.rollout.max_new_tokens = 12
  c.credit.name = 'g2po'
  c.credit.norm = 'mean_norm'     # as for household-small (see that config)
  c.optim.lr = 1e-4
  c.num_iterations = 100
  c.eval.num_tasks = 32
  if arg.runlocal:               # a smoke run in seconds
    common.shrink_for_runlocal(c)
  return c


def sweep(add):
  """G2PO against its strongest baselines, 3 seeds each."""
  for name in ('grpo', 'gigpo', 'g2po'):
    for seed in (0, 1, 2):
      add({'credit.name': name, 'seed': seed})
