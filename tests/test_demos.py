"""Tests of the warm start's demonstrations: oracle plans, reasoning texts, the
small ChatML BPE, and the rows experiments/sft.py learns from."""

import subprocess
import sys

import numpy as np
import pytest

from g2po_jax import bpe
from g2po_jax import demos
from g2po_jax import envs
from g2po_jax import protocol
from g2po_jax import tokenizers
from g2po_jax.train import batch as batch_lib


@pytest.fixture(name='env', scope='module')
def _env():
  with envs.make('household-small') as env:
    yield env


@pytest.fixture(name='tokenizer', scope='module')
def _tokenizer(env):
  return bpe.for_env(env)


@pytest.fixture(name='played', scope='module')
def _played(env):
  return demos.play(env, envs.split_seeds('train', 30), noise=0.3, max_steps=env.max_steps,
                    rng=np.random.default_rng(0))


def test_plans_start_with_the_oracle_action_and_win(env, played):
  assert len(played) > 30
  first = [d for d in played if d.step == 0]
  env.reset(envs.split_seeds('train', 30))
  assert [d.plan[0] for d in first] == env.oracle_actions()
  # Following a plan to its end wins the task.
  d = first[0]
  env.reset(envs.split_seeds('train', 1))
  for action in d.plan:
    step = env.step([action])[0]
  assert step.won


def test_invalid_steps_show_how_to_go_on_after_nothing_happens(env, played):
  assert not any(d.observation == 'Nothing happens.' for d in played)
  mixed = demos.play(env, envs.split_seeds('train', 30), noise=0.2, invalid=0.2,
                     max_steps=env.max_steps, rng=np.random.default_rng(0))
  failed = [d for d in mixed if d.observation == 'Nothing happens.']
  assert len(failed) > 10
  for d in failed:
    # The inadmissible action sent changed nothing, so the oracle's plan
    # (the label) is the one of the state before it.
    before = next(p for p in reversed(mixed) if p.task == d.task and p.step == d.step - 1
                  and p.history == d.history[:-1])
    assert d.history[-1][1] not in before.admissible
    assert d.plan == before.plan and d.admissible == before.admissible
  with pytest.raises(ValueError, match='noise \\+ invalid'):
    demos.play(env, envs.split_seeds('train', 2), noise=0.6, invalid=0.5, max_steps=3,
               rng=np.random.default_rng(0))


def test_reasoning_is_varied_and_does_not_copy_the_admissible_list(played):
  rng = np.random.default_rng(0)
  texts = [demos.reasoning(d.task, d.plan, rng) for d in played]
  assert all('\n' not in t and 10 <= len(t.split()) <= 45 for t in texts)
  # The same state gets different wordings.
  d = played[0]
  assert len({demos.reasoning(d.task, d.plan, rng) for _ in range(20)}) > 5
  for d, text in zip(played, texts):
    assert d.task.rstrip('.') in text
    # At most the next action's own words ('go to fridge 1'; 'look' is in 'look at').
    assert sum(a in text for a in d.admissible if ' ' in a) <= 1, text
  with pytest.raises(ValueError, match='empty plan'):
    demos.reasoning('t', (), rng)


def test_reasoning_says_where_the_object_is_and_what_the_step_does():
  plan = ('go to countertop 2', 'take apple 1 from countertop 2', 'go to fridge 1')
  rng = np.random.default_rng(1)
  texts = {demos.reasoning('put a cool apple in fridge.', plan, rng) for _ in range(30)}
  assert all('apple' in t and 'countertop 2' in t and 'pick up the apple' in t
             for t in texts if 'go to countertop 2' in t)
  assert all('countertop 2' in t for t in texts)
  held = demos.reasoning('put a mug in shelf.', ('go to shelf 1', 'move mug 1 to shelf 1'), rng)
  assert 'mug' in held and 'put the mug there' in held


def test_bpe_is_deterministic_chatml_and_round_trips(env, tokenizer, tmp_path):
  assert tokenizer.tokenizer.to_str() == bpe.for_env(env).tokenizer.to_str()
  assert 500 < tokenizer.vocab_size <= bpe.VOCAB_SIZE
  assert [tokenizer.tokenizer.id_to_token(i) for i in range(3)] == [
      '<|endoftext|>', '<|im_start|>', '<|im_end|>']
  assert (tokenizer.pad_id, tokenizer.eos_id) == (0, 2)
  tokenizer.save(str(tmp_path))
  loaded = tokenizers.load_tokenizer(str(tmp_path))
  assert isinstance(loaded, tokenizers.HFTokenizer)
  text = loaded.apply_chat_template([{'role': 'user', 'content': 'go to fridge 1'}])
  assert text.startswith('<|im_start|>system\nYou are Qwen')
  assert text.endswith('<|im_start|>user\ngo to fridge 1<|im_end|>\n<|im_start|>assistant\n')
  ids = loaded.encode(text)
  assert ids[0] == 1 and ids.count(2) == 2          # ChatML tokens encode as such
  assert loaded.encode('Zürich </action>\n') and loaded.decode(
      loaded.encode('Zürich </action>\n')) == 'Zürich </action>\n'   # bytes: nothing unknown
  with pytest.raises(ValueError, match='vocab_size must exceed'):
    bpe.train(['x'], vocab_size=259)


def test_transformers_reads_the_bpe_directory_as_ours(tokenizer, played, tmp_path):
  transformers = pytest.importorskip('transformers')
  tokenizer.save(str(tmp_path))
  theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  assert (theirs.eos_token, theirs.pad_token) == ('<|im_end|>', '<|endoftext|>')
  p = protocol.make_protocol('think_action', 'household-small')
  messages = [{'role': 'user', 'content': p.message(
      task=d.task, history=d.history, observation=d.observation, admissible=d.admissible,
      step=d.step, max_history=1)} for d in played[:5]]
  for m in messages:
    text = theirs.apply_chat_template([m], tokenize=False, add_generation_prompt=True)
    assert text == tokenizer.apply_chat_template([m])
    assert theirs.encode(text, add_special_tokens=False) == tokenizer.encode(text)


@pytest.mark.parametrize('name', ['think_action', 'line'])
def test_warm_start_rows_parse_back_to_the_oracle_actions(env, tokenizer, played, name):
  p = protocol.make_protocol(name, env.name)
  tok = tokenizer if name == 'think_action' else tokenizers.WordTokenizer.from_vocabulary(
      env.vocabulary())
  ids, lengths, label_ids, label_mask = batch_lib.demonstration_rows(
      played, tok, p, history=1, prompt_len=512, rng=np.random.default_rng(0))
  assert ids.shape == (len(played), 512) and label_ids.shape[0] == len(played)
  for row, d in enumerate(played):
    label = label_ids[row][label_mask[row]]
    assert label[-1] == tok.eos_id
    response = tok.decode(label)
    assert p.parse(response) == protocol.Parsed(d.plan[0], False), response
    if name == 'think_action':
      assert response.startswith('<think>') and response.endswith('</action>')
      prompt = tok.tokenizer.decode(ids[row, :lengths[row]].tolist(), skip_special_tokens=False)
      assert prompt.startswith('<|im_start|>system\n')
      assert prompt.endswith('tags.<|im_end|>\n<|im_start|>assistant\n')
      assert f'Your task is to: {d.task}' in prompt


def test_demos_and_bpe_do_not_import_jax():
  code = 'import sys, g2po_jax.demos, g2po_jax.bpe; print("jax" in sys.modules)'
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == 'False'
