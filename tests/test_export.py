"""g2po_jax/export.py (experiments/export.py): a training workdir -> a Hugging Face directory."""

import json
import os
import shutil
import subprocess
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from g2po_jax import export
from g2po_jax import tokenizers
from g2po_jax.models import qwen2
from g2po_jax.train import checkpoint as ckpt_lib
from g2po_jax.train import loop
from g2po_jax.train import step as step_lib
from tests.train.common import micro_config
from tests.train.test_loop import read_checkpoint

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')


@pytest.fixture(name='trained', scope='module')
def _trained(tmp_path_factory):
  """A workdir after one iteration of the micro config (word tokenizer)."""
  workdir = str(tmp_path_factory.mktemp('run'))
  loop.train(micro_config('g2po'), workdir)
  return workdir


def _batch(vocab_size: int):
  rng = np.random.RandomState(0)
  tokens = rng.randint(0, vocab_size, (3, 10))
  mask = np.ones((3, 10), bool)
  mask[0, :4] = False                           # left padding
  return tokens, mask


def _assert_same_logits(model, directory):
  """Our logits of `model` equal transformers' of the exported directory (1e-4)."""
  tokens, mask = _batch(model.config.vocab_size)
  ours = np.asarray(nnx.jit(lambda m, t, k: m(t, k))(model, jnp.asarray(tokens, jnp.int32),
                                                     jnp.asarray(mask)))
  theirs = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
  positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
  with torch.no_grad():
    expected = theirs(input_ids=torch.tensor(tokens),
                      attention_mask=torch.tensor(mask.astype(np.int64)),
                      position_ids=torch.tensor(positions)).logits.numpy()
  assert np.abs(ours - expected)[mask].max() < 1e-4


@pytest.mark.slow
def test_export_of_a_training_run(trained, tmp_path):
  out = str(tmp_path / 'hf')
  subprocess.run([sys.executable, '-m', 'experiments.export', f'--workdir={trained}',
                  f'--out={out}'], check=True, capture_output=True)
  assert sorted(os.listdir(out)) == ['config.json', 'generation_config.json',
                                     'model.safetensors', 'word_vocab.json']
  model, tokenizer, step = export.load_trained_policy(trained)
  # The checkpoint's trained parameters, not a fresh init.
  _, state = read_checkpoint(trained)
  saved = ocp.tree.to_flat_dict(state['params'])
  ours = ocp.tree.to_flat_dict(jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model))))
  assert {k[:-1] if k[-1] == 'value' else k for k in saved} == set(ours)
  for key, value in saved.items():
    np.testing.assert_array_equal(ours[key[:-1] if key[-1] == 'value' else key], value)
  _assert_same_logits(model, out)
  generation = json.loads(open(os.path.join(out, 'generation_config.json')).read())
  assert generation == {'eos_token_id': tokenizer.eos_id, 'pad_token_id': tokenizer.pad_id}
  # It is also a policy directory (model.init_from).
  again, again_tokenizer = ckpt_lib.load_policy(out)
  jax.tree.map(np.testing.assert_array_equal, nnx.state(again), nnx.state(model))
  assert again_tokenizer.tokens == tokenizer.tokens and step == 0


def test_a_relative_workdir_loads(trained, tmp_path, monkeypatch):
  workdir = tmp_path / 'run'
  shutil.copytree(trained, workdir)
  monkeypatch.chdir(tmp_path)
  _, _, step = export.load_trained_policy('run')     # orbax needs absolute paths
  assert step == 0


@pytest.mark.slow
def test_unreadable_newest_checkpoint_is_skipped_and_left_alone(trained, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained, workdir)
  broken = os.path.join(workdir, 'checkpoints', '7')
  shutil.copytree(os.path.join(workdir, 'checkpoints', '0'), broken)
  for name in ('d', 'ocdbt.process_0'):          # the array data
    shutil.rmtree(os.path.join(broken, 'state', name))
  _, _, step = export.load_trained_policy(workdir)
  assert step == 0 and os.path.isdir(broken)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '0', 'state', 'd'))
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '0', 'state', 'ocdbt.process_0'))
  with pytest.raises(ValueError, match=r'none of the checkpoints \[0, 7\] .* is readable'):
    export.load_trained_policy(workdir)


def _synthetic_workdir(workdir, tokenizer, config, init_from=None):
  """What the trainer leaves: config.json, tokenizer/ and a TrainState
  checkpoint, written with the trainer's own Checkpointer."""
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump({'model': {'preset': 'micro', 'init_from': init_from}}, f)
  tokenizer.save(os.path.join(workdir, 'tokenizer'))
  model = qwen2.init_model(config, seed=1)
  params = nnx.split(model)[1]
  tx = step_lib.make_optimizer(step_lib.make_schedule(1e-3, 0), 0.9, 0.999, 0.0, 1.0)
  state = step_lib.TrainState(params, tx.init(params), params, jnp.int32(3))
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), keep=2)
  ckpt.save(4, state, {'iteration': 4})
  ckpt.close()
  return model


@pytest.mark.slow
def test_export_keeps_the_qwen_tokenizer_and_its_chat_template(qwen_dir, tmp_path):
  qwen = tokenizers.load_tokenizer(qwen_dir)
  config = qwen2.make_config('micro', vocab_size=qwen.vocab_size, value_head=True)
  model = _synthetic_workdir(str(tmp_path / 'run'), qwen, config)
  out = str(tmp_path / 'hf')
  assert export.export(str(tmp_path / 'run'), out) == 4
  theirs = transformers.AutoTokenizer.from_pretrained(out)
  messages = [{'role': 'user', 'content': 'You arrive at cabinet 1. <action>?</action>'}]
  text = qwen.apply_chat_template(messages)
  assert theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == text
  assert list(theirs.apply_chat_template(messages, add_generation_prompt=True,
                                         return_dict=False)) == qwen.encode(text)
  exported, _, _ = export.load_trained_policy(str(tmp_path / 'run'))
  assert exported.value_head is None               # the critic stays behind
  np.testing.assert_array_equal(exported.embed[...], model.embed[...])
  _assert_same_logits(exported, out)
  # A run that started from a Hugging Face directory takes its shape from there.
  ckpt_lib.save_policy(str(tmp_path / 'init'), exported, qwen)
  _synthetic_workdir(str(tmp_path / 'warm'), qwen, config, init_from=str(tmp_path / 'init'))
  warm, _, _ = export.load_trained_policy(str(tmp_path / 'warm'))
  assert warm.config.vocab_size == qwen.vocab_size
  shutil.rmtree(tmp_path / 'init')
  with pytest.raises(ValueError, match='started from model.init_from=.*not there any more'):
    export.load_trained_policy(str(tmp_path / 'warm'))


@pytest.mark.slow
def test_command_line_errors_are_one_line(tmp_path):
  out = subprocess.run([sys.executable, '-m', 'experiments.export', f'--workdir={tmp_path}',
                        f'--out={tmp_path / "out"}'], capture_output=True, text=True)
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1] == (
      f"error: '{tmp_path}' has no config.json: it is not a training workdir "
      f"(python -m experiments.train --workdir=...).")


def test_clear_errors(tmp_path):
  with pytest.raises(ValueError, match='is not a directory'):
    export.export(str(tmp_path / 'nope'), str(tmp_path / 'out'))
  with pytest.raises(ValueError, match='has no config.json'):
    export.export(str(tmp_path), str(tmp_path / 'out'))
  (tmp_path / 'config.json').write_text('{"model": {"preset": "micro"}}')
  with pytest.raises(ValueError, match='has no tokenizer/ directory'):
    export.export(str(tmp_path), str(tmp_path / 'out'))
  tokenizers.WordTokenizer.from_vocabulary(['look']).save(str(tmp_path / 'tokenizer'))
  with pytest.raises(ValueError, match='holds no checkpoint yet'):
    export.export(str(tmp_path), str(tmp_path / 'out'))
  (tmp_path / 'out').mkdir()
  (tmp_path / 'out' / 'x').write_text('')
  with pytest.raises(ValueError, match='already exists and is not an empty directory'):
    export.export(str(tmp_path), str(tmp_path / 'out'))
