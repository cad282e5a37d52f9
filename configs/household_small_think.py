r"""The reasoning recipe at CPU size: think_action on household-small.

  python -m experiments.sft --config=configs/household_small_think.py --workdir=runs/think_sft
  python -m experiments.train \
      --config=configs/household_small_think.py:init_from=runs/think_sft/policy \
      --workdir=runs/think_g2po
  python -m experiments.train \
      --config=configs/household_small_think.py:init_from=runs/think_sft/policy,credit=grpo \
      --workdir=runs/think_grpo
  python -m experiments.sweep \
      --config=configs/household_small_think.py:init_from=runs/think_sft/policy \
      --workdir=runs/recipe_small --parallel=6     # G2PO and GRPO x 3 seeds
  python -m experiments.train --config=configs/household_small_think.py:runlocal \
      --workdir=/tmp/think_smoke                 # one iteration from scratch, ~1 min

The papers' protocol (`configs/qwen2_5_1_5b_alfworld_like.py`): a chat-template
user message per step, the reply `<think>...</think><action>...</action>`,
stopped right after </action>. The policy is the tiny Qwen2-shaped model (2
layers, 64 wide) on a byte-level BPE trained on household-small's texts with
ChatML tokens and Qwen2.5's chat template (`model.tokenizer=bpe`, about 840
tokens: the environment's words need no more), so it runs the Qwen2.5 code
path (HF tokenizer directory, template rendering, stop strings). Qwen2.5's
151k vocabulary would work as well, but its LM head would cost more than the
whole model on a CPU.

Sized for 2 CPU cores: 2 tasks x 8 attempts, episodes of at most 15 steps
(the oracle needs 3-11), no history steps (prompts of about 225 tokens;
the observation says what the last action did), responses of at most 64
tokens (a demonstrated one is about 45), 32 unseen evaluation tasks before
training and every 5 iterations, 10 iterations. The warm start
(experiments/sft.py) imitates noisy-oracle demonstrations rendered as
think_action replies (200 tasks, about 2,000 steps) and stops at 0.15
success on the evaluation tasks, or after 600 updates, so RL starts with low
success and some format errors left.
"""

import ml_collections as mlc

from configs import common

_CREDIT = ('g2po', 'grpo')


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, credit='g2po', init_from='', runlocal=False)
  if arg.credit not in _CREDIT:
    raise common.ConfigError(f'config arg credit must be one of {", ".join(_CREDIT)}; got '
                             f'{arg.credit!r}.')
  c = common.base_config()
  c.env.name = 'household-small'
  c.env.max_steps = 15
  c.rollout.protocol = 'think_action'
  c.rollout.num_tasks = 2
  c.rollout.group_size = 8
  c.rollout.history = 0
  c.rollout.prompt_len = 256
  c.rollout.max_new_tokens = 64
  if arg.init_from:             # the warm start brings its tokenizer
    c.model.init_from = arg.init_from
  else:
    c.model.tokenizer = 'bpe'
  c.credit.name = arg.credit
  c.credit.norm = 'mean_norm'   # as configs/household_small_g2po.py explains
  c.optim.lr = 1e-4
  c.optim.warmup_steps = 2
  c.ppo.minibatch_size = 128
  c.num_iterations = 10
  c.eval.every = 5
  c.eval.num_tasks = 32
  c.ckpt.every = 5
  c.sft.demo_tasks = 200
  c.sft.lr = 3e-3
  c.sft.batch_size = 32
  c.sft.eval_every = 100
  c.sft.max_updates = 600
  c.sft.target_success = 0.15
  if arg.runlocal:              # one iteration from a fresh model, about a minute of CPU
    common.shrink_for_runlocal(c, max_steps=2)
    c.rollout.group_size = 2
    c.rollout.max_new_tokens = 16
    c.num_iterations = 1
    c.eval.every = 0
  return c


def sweep(add):
  """The comparison: G2PO and GRPO from the same warm start, 3 seeds each."""
  for name in _CREDIT:
    for seed in (0, 1, 2):
      add({'credit.name': name, 'seed': seed})
