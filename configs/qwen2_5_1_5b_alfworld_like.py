r"""The published setting: Qwen2.5-1.5B-Instruct, G2PO on the full household world.

  # On every host of a TPU slice or GPU cluster (see README, "Scale-out"):
  python -m experiments.train \
      --config=configs/qwen2_5_1_5b_alfworld_like.py:init_from=/ckpt/Qwen2.5-1.5B-Instruct \
      --workdir=/shared/runs/g2po_qwen1.5b
  # Without downloaded weights: a random-init model of the same shape, the
  # real Qwen2.5 tokenizer (built offline), the whole recipe.
  python -m experiments.train --config=configs/qwen2_5_1_5b_alfworld_like.py \
      --workdir=/shared/runs/random_qwen1.5b
  # The same recipe at CPU size (a 2-layer model, the real tokenizer): minutes.
  python -m experiments.train --config=configs/qwen2_5_1_5b_alfworld_like.py:runlocal \
      --workdir=/tmp/recipe_smoke

The workdir must be a filesystem path every host sees (NFS, Filestore, a
bucket mounted with gcsfuse). `init_from` is a Hugging Face model directory
(config.json, *.safetensors, tokenizer.json, tokenizer_config.json with its
chat template), e.g. `huggingface-cli download Qwen/Qwen2.5-1.5B-Instruct`.

The recipe of the G2PO / GiGPO papers (spec section 11): each step is one
user message through the model's chat template (task, step number, the last
two (observation, action) pairs, the observation, the admissible actions,
and the instruction to reason in <think> </think> and answer with one
admissible action in <action> </action>); responses of up to 512 tokens,
stopped right after </action>. 16 tasks x 8 attempts, lr 1e-6, low-variance
KL 0.01, clip 0.2, entropy 0.001, one PPO epoch, rollout temperature 1.0
(eval 0.4), 50 steps per episode. Parameters and Adam moments are float32
and fully sharded over every device (fsdp); activations are bfloat16 and
every layer is rematerialized; the LM head runs only at the response tokens,
in blocks of 1,024.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, init_from='', model='qwen2.5-1.5b', runlocal=False)
  c = common.base_config()
  c.env.name = 'household'
  c.env.max_steps = 50
  c.rollout.num_tasks = 16
  c.rollout.group_size = 8
  c.rollout.history = 2
  c.rollout.prompt_len = 2048
  c.rollout.max_new_tokens = 512
  c.rollout.protocol = 'think_action'
  c.rollout.temperature = 1.0
  c.eval.temperature = 0.4
  c.eval.num_tasks = 128
  c.eval.every = 10
  c.credit.name = 'g2po'
  c.model.preset = arg.model      # the shape of a fresh model; init_from brings its own
  if arg.init_from:
    c.model.init_from = arg.init_from
  else:
    c.model.tokenizer = 'qwen2.5'
  c.model.dtype = 'bfloat16'
  c.model.param_dtype = 'float32'
  c.model.remat = True
  c.optim.lr = 1e-6
  c.optim.warmup_steps = 10
  c.ppo.minibatch_size = 128
  c.ppo.epochs = 1
  c.num_iterations = 150
  c.ckpt.every = 5
  c.mesh.data = 1
  c.mesh.fsdp = -1
  if arg.runlocal:
    # A 2-layer Qwen2-shaped model on the real 151k vocabulary: one
    # iteration with checkpoint and logs in a few minutes on a CPU. A random
    # model never writes </action>, so every response runs to the limit.
    common.shrink_for_runlocal(c)
    c.model.preset = 'tiny'
    c.model.dtype = 'float32'
    c.rollout.group_size = 2
    c.rollout.max_new_tokens = 24
    c.rollout.prompt_len = 1024
    c.env.max_steps = 3
    c.num_iterations = 1
    c.eval.every = 0
    c.ppo.minibatch_size = 8
    c.ppo.logit_chunk = 256
  return c


def sweep(add):
  """The papers' comparison on this setting: 3 seeds per estimator."""
  for name in ('ppo', 'rloo', 'grpo', 'gigpo', 'g2po'):
    for seed in (0, 1, 2):
      add({'credit.name': name, 'seed': seed})
