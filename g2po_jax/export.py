"""The trained policy of a training workdir, as a Hugging Face directory.

`export(workdir, out)` is what `python -m experiments.export --workdir=RUN
--out=DIR` runs:

  python -m experiments.export --workdir=runs/g2po --out=runs/g2po_hf
  # then, e.g.
  import transformers
  model = transformers.AutoModelForCausalLM.from_pretrained('runs/g2po_hf')
  tokenizer = transformers.AutoTokenizer.from_pretrained('runs/g2po_hf')

What is read (nothing in the workdir is changed, so a run may still be going):
  checkpoints/<step>/   the newest readable checkpoint's policy parameters
                        (only those: not the Adam moments, the KL reference
                        or a critic head); an unreadable newest step is
                        skipped with a warning, as a resume does.
  config.json           the run's config: the policy's shape is that of
                        `model.init_from`'s config.json when the run started
                        from a checkpoint, else `model.preset` with the
                        checkpoint's vocabulary size and dtype.
  tokenizer/            the tokenizer the run trained with.
What is written (--out must not exist or be empty): config.json and
model.safetensors (sharded above 4 GiB) in the parameters' dtype, the
tokenizer's files (with its chat template) and generation_config.json (eos
and pad ids). `transformers` reads the tokenizer of a Hugging Face tokenizer
run; a word-tokenizer run (the CPU demo) exports word_vocab.json, which only
`g2po_jax.tokenizers.load_tokenizer` reads. The result is also a policy
directory for `model.init_from`.
"""

import json
import os

from absl import logging
from etils import epath
from flax import nnx
import jax
import orbax.checkpoint as ocp

from g2po_jax import tokenizers
from g2po_jax.models import hf
from g2po_jax.models import qwen2
from g2po_jax.train import checkpoint as ckpt_lib

def _steps(directory: str) -> list[int]:
  """Checkpoint steps in directory, oldest first (orbax names them by number)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory)
                if name.isdigit() and os.path.isdir(os.path.join(directory, name, 'state')))


def _model_config(run: dict, workdir: str, embed) -> qwen2.ModelConfig:
  """The policy's ModelConfig as the trainer built it; embed is the checkpoint's
  ArrayMetadata of the embedding (its rows and dtype)."""
  model = run.get('model') or {}
  param_dtype = str(embed.dtype)
  if model.get('init_from'):
    init_from = model['init_from']
    if not os.path.isfile(os.path.join(init_from, hf.CONFIG_FILE)):
      raise ValueError(f'the run in {workdir!r} started from model.init_from={init_from!r}, '
                       f'whose {hf.CONFIG_FILE} gives the policy its shape; it is not there '
                       f'any more.')
    return hf.load_config(init_from, param_dtype=param_dtype)
  if not model.get('preset'):
    raise ValueError(f'{workdir}/config.json names neither model.init_from nor model.preset.')
  return qwen2.make_config(model['preset'], vocab_size=int(embed.shape[0]),
                           param_dtype=param_dtype)


def load_trained_policy(workdir: str) -> tuple[qwen2.Qwen2, tokenizers.Tokenizer, int]:
  """(policy, tokenizer, iteration) of the newest readable checkpoint of workdir.

  The parameters are restored onto the first CPU device.

  Raises:
    ValueError: not a training workdir, no checkpoint, none readable, or a
      checkpoint that does not fit the run's model config.
  """
  if not os.path.isdir(workdir):
    raise ValueError(f'workdir {workdir!r} is not a directory.')
  config_path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(config_path):
    raise ValueError(f'{workdir!r} has no config.json: it is not a training workdir '
                     f'(python -m experiments.train --workdir=...).')
  with open(config_path) as f:
    run = json.load(f)
  tokenizer_dir = os.path.join(workdir, 'tokenizer')
  if not os.path.isdir(tokenizer_dir):
    raise ValueError(f'{workdir!r} has no tokenizer/ directory (the trainer writes it at its '
                     f'first iteration).')
  tokenizer = tokenizers.load_tokenizer(tokenizer_dir)
  checkpoints = os.path.join(os.path.abspath(workdir), 'checkpoints')   # orbax: absolute
  steps = _steps(checkpoints)
  if not steps:
    raise ValueError(f'{checkpoints} holds no checkpoint yet (the trainer saves one every '
                     f'ckpt.every iterations and at the end).')
  cpu = jax.sharding.SingleDeviceSharding(jax.devices('cpu')[0])
  handler = ocp.PyTreeCheckpointHandler()
  for step in reversed(steps):
    path = epath.Path(checkpoints) / str(step) / 'state'
    try:
      embed = handler.metadata(path).tree['params']['embed']['value']
    except Exception as e:  # orbax raises many types for damaged files
      error = e
    else:
      config = _model_config(run, workdir, embed)
      graphdef, abstract = nnx.split(nnx.eval_shape(
          lambda config=config: qwen2.Qwen2(config, rngs=nnx.Rngs(0))))
      target = {'params': jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu), abstract)}
      try:
        restored = handler.restore(path, args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True))
      except Exception as e:  # pylint: disable=broad-except
        error = e
      else:
        if tokenizer.vocab_size > config.vocab_size:
          raise ValueError(f'the tokenizer of {workdir!r} has {tokenizer.vocab_size} tokens '
                           f'but the policy only {config.vocab_size} embedding rows.')
        return nnx.merge(graphdef, restored['params']), tokenizer, step
    logging.warning('checkpoint %d in %s is unreadable (%s: %s); trying the one before.',
                    step, checkpoints, type(error).__name__, str(error)[:300])
  raise ValueError(f'none of the checkpoints {steps} in {checkpoints} is readable; the last '
                   f'error: {type(error).__name__}: {str(error)[:300]}')


def export(workdir: str, out: str) -> int:
  """Writes the workdir's trained policy to `out` (see the module doc).

  Returns:
    The iteration of the exported checkpoint.
  Raises:
    ValueError: see `load_trained_policy`; or `out` exists and is not empty.
  """
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise ValueError(f'out {out!r} already exists and is not an empty directory; choose a '
                     f'new one.')
  model, tokenizer, step = load_trained_policy(workdir)
  ckpt_lib.save_policy(out, model, tokenizer)
  with open(os.path.join(out, 'generation_config.json'), 'w') as f:
    json.dump({'eos_token_id': tokenizer.eos_id, 'pad_token_id': tokenizer.pad_id}, f, indent=2)
  return step
