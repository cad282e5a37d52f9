"""The policy a run trains: model (graphdef + params), tokenizer, shape."""

import dataclasses

from flax import nnx
import jax
import ml_collections as mlc

from g2po_jax import envs
from g2po_jax import tokenizers
from g2po_jax.models import qwen2
from g2po_jax.train import checkpoint as ckpt_lib


@dataclasses.dataclass
class Policy:
  graphdef: nnx.GraphDef
  params: nnx.State
  tokenizer: tokenizers.Tokenizer
  model_config: qwen2.ModelConfig


def init_policy(c: mlc.ConfigDict, env: envs.BatchEnv, mesh: jax.sharding.Mesh) -> Policy:
  """The policy to train: loaded from `model.init_from`, or fresh.

  A fresh policy gets a word tokenizer over the environment's vocabulary and
  the `model.preset` shape.
  """
  overrides = dict(dtype=c.model.dtype, param_dtype=c.model.param_dtype, remat=c.model.remat,
                   value_head=c.credit.name == 'ppo')
  if c.model.init_from:
    model, tokenizer = ckpt_lib.load_policy(c.model.init_from, mesh=mesh, **overrides)
  else:
    tokenizer = tokenizers.WordTokenizer.from_vocabulary(env.vocabulary())
    config = qwen2.make_config(c.model.preset, vocab_size=tokenizer.vocab_size, **overrides)
    model = qwen2.init_model(config, seed=c.seed, mesh=mesh)
  graphdef, params = nnx.split(model)
  return Policy(graphdef, params, tokenizer, model.config)
