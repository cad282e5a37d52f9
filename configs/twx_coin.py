r"""G2PO on TextWorldExpress's Coin Collector: find the coin in a few rooms.

  python -m experiments.sft --config=configs/twx_coin.py --workdir=runs/coin_sft
  python -m experiments.train --config=configs/twx_coin.py \
      --config.model.init_from=runs/coin_sft/policy --workdir=runs/coin_g2po

Five rooms, no distractors (gold paths of about 5 steps, but the coin's room
is unknown); attempts revisit the same rooms, so the graph is dense (about
16 visits per node under a noisy oracle). Otherwise the CookingWorld config
(`twx_cooking.py`).
"""

import ml_collections as mlc

from configs import common
from configs import twx_cooking


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  c = twx_cooking.get_config(arg)
  c.env.name = 'twx-coin'
  c.env.kwargs = mlc.ConfigDict(dict(num_locations=5, num_distractor_items=0, num_workers=2))
  c.rollout.max_new_tokens = 8
  # A policy picking uniformly among the listed actions wins about half the
  # time, so success alone stops imitation before the policy reads the list;
  # demonstrations of failed moves and an invalid-rate bar fix that
  # (experiments/results/twx_coin: invalid 0.76 -> 0.08 in 500 updates).
  c.sft.invalid = 0.1
  c.sft.max_invalid_rate = 0.3
  if not common.parse_arg(arg, runlocal=False).runlocal:
    c.env.max_steps = 15
  return c


sweep = twx_cooking.sweep
