"""The policy a run trains: model (graphdef + params), tokenizer, shape."""

import dataclasses

from flax import nnx
import jax
import ml_collections as mlc

from g2po_jax import bpe
from g2po_jax import envs
from g2po_jax import tokenizers
from g2po_jax.models import qwen2
from g2po_jax.train import checkpoint as ckpt_lib
from g2po_jax.train import config as config_lib


@dataclasses.dataclass
class Policy:
  graphdef: nnx.GraphDef
  params: nnx.State
  tokenizer: tokenizers.Tokenizer
  model_config: qwen2.ModelConfig


def make_tokenizer(c: mlc.ConfigDict, env: envs.BatchEnv) -> tokenizers.Tokenizer:
  """The tokenizer of a fresh policy: `model.tokenizer` 'bpe' trains the
  small ChatML BPE on the environment's texts (`g2po_jax.bpe`); other names
  go to `tokenizers.make_tokenizer`."""
  try:
    if c.model.tokenizer == 'bpe':
      return bpe.for_env(env)
    return tokenizers.make_tokenizer(c.model.tokenizer, env)
  except ValueError as e:
    raise config_lib.ConfigError(f'model.tokenizer: {e}') from None


def init_policy(c: mlc.ConfigDict, env: envs.BatchEnv, mesh: jax.sharding.Mesh) -> Policy:
  """The policy to train: loaded from `model.init_from`, or fresh.

  A fresh policy has the `model.preset` shape and the `model.tokenizer`
  tokenizer (`make_tokenizer`; default: a word tokenizer over the
  environment's vocabulary);
  a preset's own vocabulary size (Qwen2.5's padded 151,936) is kept when the
  tokenizer fits in it.
  """
  overrides = dict(dtype=c.model.dtype, param_dtype=c.model.param_dtype, remat=c.model.remat,
                   value_head=c.credit.name == 'ppo')
  if c.model.init_from:
    model, tokenizer = ckpt_lib.load_policy(c.model.init_from, mesh=mesh, **overrides)
  else:
    tokenizer = make_tokenizer(c, env)
    vocab = qwen2.PRESETS[c.model.preset].get('vocab_size', 0)
    if vocab < tokenizer.vocab_size:
      vocab = tokenizer.vocab_size
    if c.model.num_layers:
      overrides['num_layers'] = c.model.num_layers
    config = qwen2.make_config(c.model.preset, vocab_size=vocab, **overrides)
    model = qwen2.init_model(config, seed=c.seed, mesh=mesh)
  graphdef, params = nnx.split(model)
  return Policy(graphdef, params, tokenizer, model.config)
