"""Hugging Face Qwen2 / Qwen2.5 checkpoint directories <-> `Qwen2` models.

A directory holds config.json and the weights as model.safetensors or as
shards listed in model.safetensors.index.json (the layout `save_pretrained`
writes). Tensors are read one at a time into host memory, converted to this
model's layout and placed on devices (sharded when a mesh is given), so
loading needs about one tensor of extra host memory at a time.

Layout: Hugging Face linear weights are [out, in]; here kernels are
[in..., out...] with heads split out, e.g. q_proj.weight [H*Dh, D] <->
q_kernel [D, H, Dh] and o_proj.weight [D, H*Dh] <-> o_kernel [H, Dh, D].
A value head, when present, is saved as value_head.weight [1, D] and
value_head.bias [1], a Linear(D, 1) (tensors `transformers` ignores).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import NamedTuple

from flax import nnx
import jax
import numpy as np
import safetensors
import safetensors.numpy

from g2po_jax.models import qwen2
from g2po_jax.models import sharding

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
INDEX_FILE = 'model.safetensors.index.json'


class _Tensor(NamedTuple):
  path: tuple           # path of the Param in the model's State
  name: str             # Hugging Face tensor name
  hf_shape: tuple[int, ...]
  linear: bool          # stored transposed ([out, in]) by Hugging Face


def _tensors(config: qwen2.ModelConfig) -> list[_Tensor]:
  """Every checkpoint tensor of a config, in a fixed order."""
  d, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
  qd = config.num_heads * config.head_dim
  kd = config.num_kv_heads * config.head_dim
  out = [_Tensor(('embed',), 'model.embed_tokens.weight', (v, d), False),
         _Tensor(('final_norm', 'scale'), 'model.norm.weight', (d,), False)]
  if not config.tie_embeddings:
    out.append(_Tensor(('lm_head',), 'lm_head.weight', (v, d), True))
  for i in range(config.num_layers):
    pre, layer = f'model.layers.{i}.', ('layers', i)
    out += [
        _Tensor(layer + ('attn_norm', 'scale'), pre + 'input_layernorm.weight', (d,), False),
        _Tensor(layer + ('mlp_norm', 'scale'), pre + 'post_attention_layernorm.weight', (d,), False),
        _Tensor(layer + ('attn', 'q_kernel'), pre + 'self_attn.q_proj.weight', (qd, d), True),
        _Tensor(layer + ('attn', 'q_bias'), pre + 'self_attn.q_proj.bias', (qd,), False),
        _Tensor(layer + ('attn', 'k_kernel'), pre + 'self_attn.k_proj.weight', (kd, d), True),
        _Tensor(layer + ('attn', 'k_bias'), pre + 'self_attn.k_proj.bias', (kd,), False),
        _Tensor(layer + ('attn', 'v_kernel'), pre + 'self_attn.v_proj.weight', (kd, d), True),
        _Tensor(layer + ('attn', 'v_bias'), pre + 'self_attn.v_proj.bias', (kd,), False),
        _Tensor(layer + ('attn', 'o_kernel'), pre + 'self_attn.o_proj.weight', (d, qd), True),
        _Tensor(layer + ('mlp', 'gate'), pre + 'mlp.gate_proj.weight', (f, d), True),
        _Tensor(layer + ('mlp', 'up'), pre + 'mlp.up_proj.weight', (f, d), True),
        _Tensor(layer + ('mlp', 'down'), pre + 'mlp.down_proj.weight', (d, f), True),
    ]
  if config.value_head:
    out += [_Tensor(('value_head', 'kernel'), 'value_head.weight', (1, d), True),
            _Tensor(('value_head', 'bias'), 'value_head.bias', (1,), False)]
  return out


# ----------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------


def load_config(path: str, **overrides) -> qwen2.ModelConfig:
  """The ModelConfig of a checkpoint directory; overrides replace fields.

  Typical overrides: dtype/param_dtype='bfloat16', value_head=True, remat=True.
  """
  if not os.path.isdir(path):
    raise ValueError(f'{path!r} is not a directory.')
  config_path = os.path.join(path, CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise ValueError(f'{path!r} is not a Hugging Face model directory: it has '
                     f'no {CONFIG_FILE}.')
  with open(config_path) as f:
    hf = json.load(f)
  if hf.get('model_type') != 'qwen2':
    raise ValueError(f'{path!r} is not a Qwen2 checkpoint: config.json has '
                     f'model_type={hf.get("model_type")!r}, expected "qwen2".')
  required = ('vocab_size', 'hidden_size', 'intermediate_size',
              'num_hidden_layers', 'num_attention_heads')
  missing = [k for k in required if k not in hf]
  if missing:
    raise ValueError(f'{config_path} lacks {missing}.')
  if hf.get('hidden_act', 'silu') != 'silu':
    raise ValueError(f'hidden_act={hf["hidden_act"]!r} is not supported (only silu).')
  if hf.get('use_sliding_window'):
    raise ValueError('sliding-window attention (use_sliding_window=true) is '
                     'not supported.')
  # transformers >= 5 writes rope_parameters; older configs, including the
  # released Qwen2.5 ones, have rope_theta and rope_scaling at the top level.
  rope = hf.get('rope_parameters') or hf.get('rope_scaling') or {}
  rope_type = rope.get('rope_type', rope.get('type', 'default'))
  if rope_type != 'default':
    raise ValueError(f'rope type {rope_type!r} is not supported (only default).')
  heads = hf['num_attention_heads']
  fields = dict(
      vocab_size=hf['vocab_size'],
      hidden_size=hf['hidden_size'],
      num_layers=hf['num_hidden_layers'],
      num_heads=heads,
      num_kv_heads=hf.get('num_key_value_heads') or heads,
      head_dim=hf.get('head_dim') or hf['hidden_size'] // heads,
      intermediate_size=hf['intermediate_size'],
      rope_theta=float(hf.get('rope_theta', rope.get('rope_theta', 10000.0))),
      rms_norm_eps=float(hf.get('rms_norm_eps', 1e-6)),
      tie_embeddings=bool(hf.get('tie_word_embeddings', False)),
      max_position_embeddings=hf.get('max_position_embeddings', 32768),
  )
  return qwen2.ModelConfig(**{**fields, **overrides})


def _hf_config(config: qwen2.ModelConfig) -> dict:
  hf = {
      'architectures': ['Qwen2ForCausalLM'],
      'model_type': 'qwen2',
      'vocab_size': config.vocab_size,
      'hidden_size': config.hidden_size,
      'intermediate_size': config.intermediate_size,
      'num_hidden_layers': config.num_layers,
      'num_attention_heads': config.num_heads,
      'num_key_value_heads': config.num_kv_heads,
      'hidden_act': 'silu',
      'max_position_embeddings': config.max_position_embeddings,
      'rms_norm_eps': config.rms_norm_eps,
      'rope_theta': config.rope_theta,
      'tie_word_embeddings': config.tie_embeddings,
      'use_sliding_window': False,
      'attention_dropout': 0.0,
      'torch_dtype': config.param_dtype,
  }
  if config.head_dim * config.num_heads != config.hidden_size:
    hf['head_dim'] = config.head_dim
  return hf


# ----------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------


def _weight_files(path: str) -> dict[str, str]:
  """Tensor name -> safetensors file path."""
  index = os.path.join(path, INDEX_FILE)
  if os.path.isfile(index):
    with open(index) as f:
      weight_map = json.load(f)['weight_map']
    return {name: os.path.join(path, file) for name, file in weight_map.items()}
  single = os.path.join(path, WEIGHTS_FILE)
  if not os.path.isfile(single):
    raise ValueError(f'{path!r} has neither {WEIGHTS_FILE} nor {INDEX_FILE}.')
  with safetensors.safe_open(single, framework='np') as f:
    return {name: single for name in f.keys()}


def _ignorable(name: str, config: qwen2.ModelConfig) -> bool:
  # Old exports carry rotary buffers; tied checkpoints may still store the
  # head; a value head is optional.
  return (name.endswith('rotary_emb.inv_freq')
          or (name == 'lm_head.weight' and config.tie_embeddings)
          or name.startswith('value_head.'))


def load_hf(path: str, *, mesh: jax.sharding.Mesh | None = None,
            **overrides) -> qwen2.Qwen2:
  """Loads a Hugging Face Qwen2 directory into a `Qwen2`.

  Args:
    path: directory with config.json and safetensors weights.
    mesh: if given, every parameter is placed with `sharding.param_shardings`
      (works across hosts: each process keeps only its devices' slices).
    **overrides: ModelConfig fields, e.g. dtype='bfloat16',
      param_dtype='bfloat16', value_head=True. A value head missing from the
      checkpoint starts at zero, as a fresh one does.
  Returns:
    The model, parameters cast to config.param_dtype.
  Raises:
    ValueError: not a Qwen2 directory, missing or unexpected tensors, or a
      tensor whose shape does not match config.json.
  """
  config = load_config(path, **overrides)
  files = _weight_files(path)
  expected = _tensors(config)
  known = {t.name for t in expected}
  unexpected = sorted(n for n in files if n not in known and not _ignorable(n, config))
  if unexpected:
    raise ValueError(f'{path!r} has tensors a Qwen2 model does not: '
                     f'{unexpected[:5]}{" ..." if len(unexpected) > 5 else ""}')
  missing = [t.name for t in expected
             if t.name not in files and not t.name.startswith('value_head.')]
  if missing:
    raise ValueError(f'{path!r} lacks tensors {missing[:5]}'
                     f'{" ..." if len(missing) > 5 else ""} ({len(missing)} missing).')

  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: qwen2.Qwen2(config, rngs=nnx.Rngs(0))))
  shardings = None if mesh is None else sharding.param_shardings(abstract, mesh)
  variables = dict(nnx.to_flat_state(abstract))
  targets = dict(nnx.to_flat_state(shardings)) if shardings is not None else {}

  leaves = []
  with contextlib.ExitStack() as stack:
    readers = {}
    for t in expected:
      var = variables[t.path]
      if t.name in files:
        file = files[t.name]
        if file not in readers:
          readers[file] = stack.enter_context(safetensors.safe_open(file, framework='np'))
        w = readers[file].get_tensor(t.name)
        if w.shape != t.hf_shape:
          raise ValueError(f'tensor {t.name} has shape {w.shape}; config.json '
                           f'implies {t.hf_shape}.')
        w = w.T.reshape(var.shape) if t.linear else w.reshape(var.shape)
      else:
        w = np.zeros(var.shape)                      # a fresh value head
      w = np.asarray(w, var.dtype)
      if t.path in targets:
        value = jax.make_array_from_callback(
            w.shape, targets[t.path].get_value(), lambda index, w=w: w[index])
      else:
        value = jax.device_put(w)
      leaves.append((t.path, var.replace(value)))
  return nnx.merge(graphdef, nnx.from_flat_state(leaves))


def save_hf(model: qwen2.Qwen2, path: str, *,
            max_shard_bytes: int = 4 * 2**30) -> None:
  """Writes `model` as a Hugging Face Qwen2 directory (config + safetensors).

  Tensors keep the model's param_dtype. Weights larger than max_shard_bytes
  are split over numbered files with an index, as `save_pretrained` does.
  `transformers.Qwen2ForCausalLM.from_pretrained(path)` reads the result.
  The parameters must be addressable from this process.
  """
  config = model.config
  if max_shard_bytes < 1:
    raise ValueError(f'max_shard_bytes must be positive; got {max_shard_bytes}.')
  variables = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  shards, sizes = [{}], [0]
  for t in _tensors(config):
    value = variables[t.path].get_value()
    if not value.is_fully_addressable:
      raise ValueError(f'parameter {t.path} is not fully addressable from this '
                       f'process; gather it before saving.')
    x = np.asarray(jax.device_get(value))
    x = x.reshape(t.hf_shape[::-1]).T if t.linear else x.reshape(t.hf_shape)
    x = np.ascontiguousarray(x)
    if shards[-1] and sizes[-1] + x.nbytes > max_shard_bytes:
      shards.append({})
      sizes.append(0)
    shards[-1][t.name] = x
    sizes[-1] += x.nbytes

  os.makedirs(path, exist_ok=True)
  for stale in (WEIGHTS_FILE, INDEX_FILE):        # left by an earlier save
    if os.path.exists(os.path.join(path, stale)):
      os.remove(os.path.join(path, stale))
  with open(os.path.join(path, CONFIG_FILE), 'w') as f:
    json.dump(_hf_config(config), f, indent=2)
  metadata = {'format': 'pt'}  # transformers refuses files without it
  if len(shards) == 1:
    safetensors.numpy.save_file(shards[0], os.path.join(path, WEIGHTS_FILE),
                                metadata=metadata)
    return
  weight_map = {}
  for i, shard in enumerate(shards):
    file = f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors'
    safetensors.numpy.save_file(shard, os.path.join(path, file), metadata=metadata)
    weight_map.update(dict.fromkeys(shard, file))
  with open(os.path.join(path, INDEX_FILE), 'w') as f:
    json.dump({'metadata': {'total_size': sum(sizes)}, 'weight_map': weight_map},
              f, indent=2)
