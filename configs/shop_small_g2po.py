r"""G2PO on shop-small, the built-in WebShop-like environment.

  python -m experiments.sft --config=configs/shop_small_g2po.py --workdir=runs/shop_sft
  python -m experiments.train --config=configs/shop_small_g2po.py \
      --config.model.init_from=runs/shop_sft/policy --workdir=runs/shop_g2po

WebShop's published settings: 15 steps, mean normalization (`mean_norm`) and
GraphGPO's omega 0.2. Rewards are partial (the purchase score times
success_reward); success is a perfect purchase.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, runlocal=False)
  c = common.base_config()
  c.env.name = 'shop-small'
  c.env.max_steps = 15
  c.rollout.num_tasks = 8
  c.rollout.group_size = 8
  c.rollout.prompt_len = 384
  c.rollout.max_new_tokens = 16
  c.credit.name = 'g2po'
  c.credit.norm = 'mean_norm'
  c.optim.lr = 1e-4
  c.num_iterations = 100
  c.eval.num_tasks = 32
  if arg.runlocal:               # a smoke run in seconds
    common.shrink_for_runlocal(c, max_steps=5)
  return c


def sweep(add):
  """G2PO against its baselines on the shop, 3 seeds each."""
  for name in ('grpo', 'rloo', 'gigpo', 'g2po'):
    for seed in (0, 1, 2):
      add({'credit.name': name, 'seed': seed})
