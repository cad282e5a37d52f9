r"""G2PO on household-noisy: state matching on messy observations (issue 13).

  python -m experiments.sft --config=configs/household_noisy_g2po.py --workdir=runs/noisy_sft
  python -m experiments.sweep --config=configs/household_noisy_g2po.py \
      --workdir=runs/matching --set=model.init_from=runs/noisy_sft/policy

The household-small world behind a clock, request ids, shuffled listings,
chatter and case/space jitter (`g2po_jax.envs.noisy`), with the CPU demo's
sizes (configs/household_small_g2po.py) cut to fit a 2-core machine: 8 tasks
x 8 attempts, 12 iterations, one evaluation on 64 unseen tasks at the end.
The sweep trains G2PO with each state-matching rule, and GRPO (which reads
no state keys), from one warm start.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, runlocal=False)
  c = common.base_config()
  c.env.name = 'household-noisy'
  c.env.max_steps = 20
  c.rollout.num_tasks = 8
  c.rollout.group_size = 8
  c.rollout.prompt_len = 256     # the header and chatter add about 20 tokens a step
  c.rollout.max_new_tokens = 10
  c.credit.name = 'g2po'
  c.credit.norm = 'mean_norm'    # as household_small_g2po.py (see its docstring)
  c.optim.lr = 1e-4
  c.optim.warmup_steps = 3
  c.ppo.minibatch_size = 128
  c.num_iterations = 12
  c.eval.every = 12
  c.eval.num_tasks = 64
  c.sft.target_success = 0.2
  c.ckpt.every = 6
  if arg.runlocal:               # a smoke run in seconds
    common.shrink_for_runlocal(c)
  return c


def sweep(add):
  """Each matching rule for G2PO, and GRPO, on the same seeds."""
  rules = ([{'graph.matching': 'exact'}, {'graph.matching': 'normalized'}]
           + [{'graph.matching': 'near', 'graph.similarity': s} for s in (0.7, 0.75, 0.8)]
           + [{'graph.matching': 'difflib', 'graph.similarity': 0.95}])
  for seed in (0, 1, 2):
    for rule in rules:
      add({**rule, 'seed': seed})
    add({'credit.name': 'grpo', 'seed': seed})
