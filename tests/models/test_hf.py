"""Parity with the `transformers` reference Qwen2 (torch, CPU) and checkpoint I/O.

All tests that import torch/transformers live here: the import costs seconds.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from flax import nnx  # pylint: disable=g-import-not-at-top
from g2po_jax import sampling  # pylint: disable=g-import-not-at-top
from g2po_jax.models import hf  # pylint: disable=g-import-not-at-top
from g2po_jax.models import sharding  # pylint: disable=g-import-not-at-top

VOCAB = 200


def _reference(tie):
  config = transformers.Qwen2Config(
      vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie,
      rope_theta=10000.0, max_position_embeddings=128,
      # Larger weights than the default 0.02 make logits far from uniform, so
      # greedy choices are not decided by float rounding.
      initializer_range=0.2)
  torch.manual_seed(0)
  model = transformers.Qwen2ForCausalLM(config).eval()
  with torch.no_grad():                          # random biases, as trained models have
    for name, p in model.named_parameters():
      if name.endswith('bias'):
        p.normal_(0.0, 0.2)
  return model


@pytest.fixture(name='ref_dir', scope='module')
def _ref_dir(tmp_path_factory):
  """An untied reference model saved in 20 KB shards (with an index)."""
  path = str(tmp_path_factory.mktemp('untied'))
  model = _reference(tie=False)
  model.save_pretrained(path, max_shard_size='20KB')
  return model, path


def _batch():
  rng = np.random.RandomState(0)
  tokens = rng.randint(0, VOCAB, (4, 12))
  mask = np.ones((4, 12), bool)
  mask[0, :5] = False                             # left padding
  mask[1, 7:] = False                             # right padding
  mask[2, :2] = mask[2, 10:] = False              # both
  return tokens, mask


def _reference_logits(model, tokens, mask):
  positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
  with torch.no_grad():
    return model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
                 position_ids=torch.tensor(positions)).logits.numpy()


@nnx.jit
def _forward(model, tokens, mask):
  return model(tokens, mask)


def _logits(model, tokens, mask):
  return np.asarray(_forward(model, jnp.asarray(tokens, jnp.int32), jnp.asarray(mask)))


@pytest.mark.parametrize('tie', [False, True])
def test_logits_match_transformers_with_padding(ref_dir, tie, tmp_path):
  if tie:
    reference, path = _reference(tie=True), str(tmp_path)
    reference.save_pretrained(path)               # one file, no index
  else:
    reference, path = ref_dir
    assert os.path.exists(os.path.join(path, hf.INDEX_FILE))
  model = hf.load_hf(path)
  assert model.config.tie_embeddings == tie and model.config.num_kv_heads == 2
  tokens, mask = _batch()
  diff = np.abs(_logits(model, tokens, mask) - _reference_logits(reference, tokens, mask))
  assert diff[mask].max() < 1e-4


def test_greedy_generation_matches_transformers(ref_dir):
  reference, path = ref_dir
  graphdef, params = nnx.split(hf.load_hf(path))
  tokens, mask = _batch()
  tokens, mask = tokens[:2, :7], mask[:2, :7]     # row 0 left-padded
  mask[1] = True
  with torch.no_grad():
    expected = reference.generate(
        input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
        max_new_tokens=20, do_sample=False, pad_token_id=0, eos_token_id=None,
    ).numpy()[:, 7:]
  config = sampling.SamplingConfig(max_new_tokens=20, temperature=0.0)
  got = jax.jit(sampling.generate, static_argnums=(0, 5))(
      graphdef, params, jnp.asarray(tokens, jnp.int32), jnp.asarray(mask),
      jax.random.split(jax.random.key(0), 2), config)
  np.testing.assert_array_equal(got.tokens, expected)


def test_save_round_trips_through_both_implementations(ref_dir, tmp_path):
  reference, path = ref_dir
  model = hf.load_hf(path)
  hf.save_hf(model, str(tmp_path / 'one'))
  hf.save_hf(model, str(tmp_path / 'many'), max_shard_bytes=40_000)
  assert not os.path.exists(tmp_path / 'one' / hf.INDEX_FILE)
  index = json.loads((tmp_path / 'many' / hf.INDEX_FILE).read_text())
  assert len(set(index['weight_map'].values())) > 1
  tokens, mask = _batch()
  expected = _logits(model, tokens, mask)
  for sub in ('one', 'many'):
    again = hf.load_hf(str(tmp_path / sub))
    jax.tree.map(np.testing.assert_array_equal, nnx.state(again), nnx.state(model))
    theirs = transformers.Qwen2ForCausalLM.from_pretrained(str(tmp_path / sub)).eval()
    diff = np.abs(_reference_logits(theirs, tokens, mask) - expected)
    assert diff[mask].max() < 1e-4


def test_overrides_value_head_and_bfloat16(ref_dir, tmp_path):
  _, path = ref_dir
  model = hf.load_hf(path, value_head=True, param_dtype='bfloat16', dtype='bfloat16')
  assert model.embed[...].dtype == jnp.bfloat16
  np.testing.assert_array_equal(model.value_head.kernel[...], 0.0)
  model.value_head.bias[...] = jnp.float32(0.5)
  hf.save_hf(model, str(tmp_path))
  again = hf.load_hf(str(tmp_path), value_head=True)
  assert again.embed[...].dtype == jnp.float32
  assert float(again.value_head.bias[...]) == 0.5
  assert hf.load_hf(str(tmp_path)).value_head is None        # ignored when not asked for


def test_load_with_a_mesh_places_params_by_the_rules(ref_dir):
  _, path = ref_dir
  mesh = sharding.make_mesh()
  model = hf.load_hf(path, mesh=mesh)
  expected = sharding.param_shardings(nnx.state(model), mesh)
  same = jax.tree.leaves(jax.tree.map(lambda x, s: x.sharding == s, nnx.state(model), expected))
  assert len(same) == 2 + 2 * 12 + 1 and all(same)        # untied: lm_head too
  assert model.layers[0].attn.q_kernel[...].sharding.spec == jax.sharding.PartitionSpec(
      'fsdp', None, None)


def _copy(src, dst):
  os.makedirs(dst)
  for name in os.listdir(src):
    with open(os.path.join(src, name), 'rb') as f, open(os.path.join(dst, name), 'wb') as g:
      g.write(f.read())


def test_clear_errors(ref_dir, tmp_path):
  _, path = ref_dir
  with pytest.raises(ValueError, match='not a directory'):
    hf.load_hf(str(tmp_path / 'nope'))
  with pytest.raises(ValueError, match='no config.json'):
    hf.load_hf(str(tmp_path))

  llama = tmp_path / 'llama'
  _copy(path, llama)
  config = json.loads((llama / 'config.json').read_text())
  (llama / 'config.json').write_text(json.dumps({**config, 'model_type': 'llama'}))
  with pytest.raises(ValueError, match='not a Qwen2 checkpoint.*llama'):
    hf.load_hf(str(llama))

  single = tmp_path / 'single'
  hf.save_hf(hf.load_hf(path), str(single))
  tensors = safetensors.numpy.load_file(str(single / hf.WEIGHTS_FILE))
  missing = dict(tensors)
  del missing['model.layers.1.mlp.up_proj.weight']
  safetensors.numpy.save_file(missing, str(single / hf.WEIGHTS_FILE))
  with pytest.raises(ValueError, match=r'lacks tensors \[.model.layers.1.mlp.up_proj.weight'):
    hf.load_hf(str(single))

  wrong = dict(tensors)
  wrong['model.layers.0.self_attn.k_proj.weight'] = np.zeros((64, 64), np.float32)
  safetensors.numpy.save_file(wrong, str(single / hf.WEIGHTS_FILE))
  with pytest.raises(ValueError, match=r'k_proj.weight has shape \(64, 64\).*\(32, 64\)'):
    hf.load_hf(str(single))

  extra = {**tensors, 'model.layers.0.self_attn.q_norm.weight': np.ones(16, np.float32)}
  safetensors.numpy.save_file(extra, str(single / hf.WEIGHTS_FILE))
  with pytest.raises(ValueError, match='does not: .*q_norm'):
    hf.load_hf(str(single))

  os.remove(single / hf.WEIGHTS_FILE)
  with pytest.raises(ValueError, match='has neither'):
    hf.load_hf(str(single))
