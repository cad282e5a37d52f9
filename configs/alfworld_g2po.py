r"""G2PO on the real ALFWorld engine, sized for 2 CPU cores (needs the extra:
pip install -e '.[alfworld]').

  python -m experiments.sft --config=configs/alfworld_g2po.py --workdir=runs/alfworld_sft
  python -m experiments.train --config=configs/alfworld_g2po.py \
      --config.model.init_from=runs/alfworld_sft/policy --workdir=runs/alfworld_g2po
  python -m experiments.evaluate --policy=runs/alfworld_g2po --env=alfworld

Games: the official `json_2.1.1` files when `$ALFWORLD_DATA` holds them, else
the set the project generates from the wheel's scenes on first use (20 games
of each of the six task types from the training scenes, 5 of each from the
unseen evaluation scenes; `g2po_jax/envs/alfworld.py`). The warm start
imitates the engine's own planner with 30% random actions; RL starts from it
as from household's. The tiny policy over the engine's word vocabulary (every
word its grammar and ALFRED's types can write), as in the CPU demo.

Sizes: real rooms hold 6-51 receptacles, so the first observation lists up
to 51 names and the admissible list holds up to about 60 actions; prompts
are cut to 384 tokens (the task line is kept in the observation history of
the first steps only, as in the papers' prompts once history is cut).
8 tasks x 4 attempts x at most 30 steps per iteration: the engine costs
about 23 ms per step and dominates an iteration on 2 cores.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, runlocal=False)
  c = common.base_config()
  c.env.name = 'alfworld'
  c.env.max_steps = 30
  c.env.kwargs = mlc.ConfigDict(dict(num_workers=2))
  c.rollout.num_tasks = 8
  c.rollout.group_size = 4
  c.rollout.prompt_len = 384
  c.rollout.max_new_tokens = 12
  c.credit.name = 'g2po'
  c.credit.norm = 'mean_norm'     # as household-small's demo (see that config)
  c.optim.lr = 1e-4
  c.optim.warmup_steps = 3
  c.ppo.minibatch_size = 128
  c.num_iterations = 12
  c.eval.every = 6
  c.eval.num_tasks = 30           # the whole generated evaluation split
  c.sft.demo_tasks = 120          # the generated training split, once each
  c.sft.target_success = 0.2
  c.ckpt.every = 5
  c.graph_image_every = 0
  if arg.runlocal:               # a smoke run
    common.shrink_for_runlocal(c)
  return c


def sweep(add):
  """G2PO against GRPO from the same warm start, 3 seeds each."""
  for seed in (0, 1, 2):          # seed-major: a cut-short sweep still holds pairs
    for name in ('g2po', 'grpo'):
      add({'credit.name': name, 'seed': seed})
