r"""The published setting: Qwen2.5-1.5B-Instruct, G2PO on the full household world.

  # On every host of a TPU slice or GPU cluster (see README, "Scale-out"):
  python -m experiments.train \
      --config=configs/qwen2_5_1_5b_alfworld_like.py:init_from=/ckpt/Qwen2.5-1.5B-Instruct \
      --workdir=/shared/runs/g2po_qwen1.5b

The workdir must be a filesystem path every host sees (NFS, Filestore, a
bucket mounted with gcsfuse). `init_from` is a Hugging Face model directory (config.json, *.safetensors,
tokenizer.json), e.g. `huggingface-cli download Qwen/Qwen2.5-1.5B-Instruct`.
Hyper-parameters are the papers' (spec section 11): 16 tasks x 8 attempts,
lr 1e-6, low-variance KL 0.01, clip 0.2, entropy 0.001, one PPO epoch,
rollout temperature 1.0 (eval 0.4), two history steps, 50 steps per episode.
Parameters and Adam moments are float32 and fully sharded over every device
(fsdp); activations are bfloat16 and every layer is rematerialized.
"""

import ml_collections as mlc

from configs import common
from g2po_jax.train.config import ConfigError


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, init_from='', model='qwen2.5-1.5b')
  if not arg.init_from:
    raise ConfigError('this config fine-tunes a pretrained model: pass its Hugging Face '
                     'directory, --config=configs/qwen2_5_1_5b_alfworld_like.py:'
                     'init_from=/path/to/Qwen2.5-1.5B-Instruct')
  c = common.base_config()
  c.env.name = 'household'
  c.env.max_steps = 50
  c.rollout.num_tasks = 16
  c.rollout.group_size = 8
  c.rollout.history = 2
  c.rollout.prompt_len = 2048
  c.rollout.max_new_tokens = 32
  c.rollout.temperature = 1.0
  c.eval.temperature = 0.4
  c.eval.num_tasks = 128
  c.eval.every = 10
  c.credit.name = 'g2po'
  c.model.init_from = arg.init_from
  c.model.preset = arg.model        # documents the expected shape; weights come from init_from
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
  return c


def sweep(add):
  """The papers' comparison on this setting: 3 seeds per estimator."""
  for name in ('ppo', 'rloo', 'grpo', 'gigpo', 'g2po'):
    for seed in (0, 1, 2):
      add({'credit.name': name, 'seed': seed})
