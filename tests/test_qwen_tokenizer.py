"""The offline Qwen2.5 tokenizer: ids equal to tiktoken's on the same ranks."""

import os
import subprocess
import sys
import unicodedata

import numpy as np
import pytest
import tiktoken

from g2po_jax import envs
from g2po_jax import protocol
from g2po_jax import qwen_tokenizer
from g2po_jax import tokenizers

TRICKY = [
    "I'LL be there, don't WORRY; it's 12345 dollars (or 3.14e-5).",
    'tabs\tand   spaces  \n\n\n  then   \r\n windows line\n',
    'Unicode: 苹果 café, e\u0301 (decomposed), Ωmega, emoji 🍎🧊, ﬁ ligature',
    'code: def f(x):\n    return {"a": [1, 2]}  # comment\n',
    '<|im_start|>user\nhi<|im_end|>\n<|endoftext|><tool_call>{"x": 1}</tool_call>',
    '<think> </think> <action>click[t-shirt - long sleeve]</action>',
    ' ', '', '\n', 'a' * 300,
]


@pytest.fixture(name='qwen', scope='module')
def _qwen(qwen_dir):
  return tokenizers.load_tokenizer(qwen_dir)


@pytest.fixture(name='reference', scope='module')
def _reference():
  """tiktoken over the same ranks, Qwen's pattern and Qwen2.5's added tokens."""
  return tiktoken.Encoding(
      'qwen2.5', pat_str=qwen_tokenizer.PATTERN, mergeable_ranks=qwen_tokenizer.load_ranks(),
      special_tokens={t: qwen_tokenizer.NUM_RANKS + i
                      for i, (t, _) in enumerate(qwen_tokenizer.ADDED_TOKENS)})


def _reference_ids(reference, text):
  # Qwen normalizes to NFC before splitting (as the Hugging Face normalizer does).
  return reference.encode(unicodedata.normalize('NFC', text), allowed_special='all')


def _episode_texts(name: str, seeds=(0, 1, 2), max_steps=6) -> list[str]:
  """Every prompt (line and think_action, before the chat template) and every
  observation and action of a few oracle-played episodes with noise."""
  rng = np.random.default_rng(0)
  think = protocol.make_protocol('think_action', name)
  texts = []
  with envs.make(name) as env:
    steps = env.reset(list(seeds))
    pairs = [[] for _ in seeds]
    for t in range(max_steps):
      oracle = env.oracle_actions()
      actions = [None] * len(seeds)
      for i, s in enumerate(steps):
        if s.done or oracle[i] is None:
          continue
        kw = dict(task=s.task, history=pairs[i], observation=s.observation,
                  admissible=s.admissible, step=t, max_history=2)
        texts += [tokenizers.format_prompt(s.task, pairs[i], s.observation, s.admissible),
                  think.message(**kw), s.observation, *s.admissible]
        actions[i] = oracle[i] if rng.random() < 0.7 else str(rng.choice(s.admissible))
        pairs[i].append((s.observation, actions[i]))
      if all(a is None for a in actions):
        break
      steps = [r if r is not None else s for r, s in zip(env.step(actions), steps)]
  return texts


_TWX = [pytest.param(n, marks=pytest.mark.slow) for n in envs.NAMES if n.startswith('twx')]
# The real ALFWorld engine needs generated games; household writes its wording.
_BUILT_IN = [n for n in envs.NAMES if not n.startswith('twx') and n != 'alfworld']


@pytest.mark.parametrize('name', _BUILT_IN + _TWX)
def test_ids_equal_tiktoken_on_environment_prompts(qwen, reference, name):
  texts = _episode_texts(name)
  think = protocol.make_protocol('think_action', name, system_prompt='Act well.')
  chats = [qwen.apply_chat_template([{'role': 'user', 'content': m}]) for m in texts[1::4]]
  chats += [think.prompt(qwen, task='t', history=[], observation=texts[2], admissible=['look'],
                         step=0, max_history=2)]
  for text in texts + chats:
    ids = qwen.encode(text)
    assert ids == _reference_ids(reference, text), text[:200]
    assert qwen.decode(ids) == text.replace('<|im_start|>', '').replace('<|im_end|>', '')
  assert len(texts) > 20


def test_ids_equal_tiktoken_on_tricky_text(qwen, reference):
  assert qwen.encode_many(TRICKY) == [_reference_ids(reference, t) for t in TRICKY]
  assert qwen.decode(qwen.encode(TRICKY[2])) == unicodedata.normalize('NFC', TRICKY[2])


def test_special_tokens(qwen):
  assert qwen.vocab_size == qwen_tokenizer.NUM_RANKS + 22 == 151665
  ids = {t: qwen_tokenizer.NUM_RANKS + i for i, (t, _) in enumerate(qwen_tokenizer.ADDED_TOKENS)}
  assert (ids['<|endoftext|>'], ids['<|im_start|>'], ids['<|im_end|>']) == (151643, 151644, 151645)
  assert (ids['<tool_call>'], ids['</tool_call>'], ids['<|fim_prefix|>']) == (151657, 151658, 151659)
  assert ids['<|file_sep|>'] == 151664
  for token, i in ids.items():
    assert qwen.encode(token) == [i] and qwen.tokenizer.id_to_token(i) == token
  assert (qwen.eos_id, qwen.pad_id) == (151645, 151643)
  assert qwen.eos_id in qwen.stop_ids and qwen.pad_id not in qwen.stop_ids
  # Special ones vanish when decoding; <tool_call> and the FIM tokens are text.
  assert qwen.decode([151644, 9707, 151645, 151643]) == 'Hello'
  assert qwen.decode([151657, 151659]) == '<tool_call><|fim_prefix|>'
  config = qwen.config
  assert config['bos_token'] is None and config['eos_token'] == '<|im_end|>'
  assert len(config['added_tokens_decoder']) == 22
  assert qwen.chat_template == qwen_tokenizer.CHAT_TEMPLATE


def test_the_tokens_around_action_tags(qwen):
  """The stop string is several tokens, and the one completing it may carry
  more text (why protocol parsing ignores what follows '</action>')."""
  assert len(qwen.encode('</action>')) > 1
  ids = qwen.encode('<action>look</action>\n\n')
  assert qwen.decode(ids[-1:]).startswith('>') and qwen.decode(ids[-1:]) != '>'


@pytest.mark.slow
def test_transformers_loads_the_directory(qwen_dir, qwen, reference):
  transformers = pytest.importorskip('transformers')
  theirs = transformers.AutoTokenizer.from_pretrained(qwen_dir)
  assert (theirs.eos_token, theirs.pad_token, theirs.bos_token) == ('<|im_end|>',
                                                                    '<|endoftext|>', None)
  assert len(theirs) == qwen.vocab_size
  for text in TRICKY:
    assert theirs.encode(text, add_special_tokens=False) == qwen.encode(text), text


def test_cache_is_built_once_and_atomically(tmp_path, monkeypatch):
  calls = []

  def write(out_dir):    # what a build leaves, without the seconds it takes
    calls.append(out_dir)
    if len(calls) == 2:
      raise OSError('disk full')
    for name in ('tokenizer.json', 'tokenizer_config.json'):
      with open(os.path.join(out_dir, name), 'w') as f:
        f.write('{}')

  monkeypatch.setattr(qwen_tokenizer, 'write_qwen2_5_tokenizer', write)
  first = qwen_tokenizer.qwen2_5_dir(str(tmp_path / 'a'))
  assert first == str(tmp_path / 'a' / 'qwen2.5-tokenizer-1')
  assert qwen_tokenizer.qwen2_5_dir(str(tmp_path / 'a')) == first and len(calls) == 1
  assert os.listdir(tmp_path / 'a') == ['qwen2.5-tokenizer-1']   # no temporary left
  assert calls[0] != first                 # written elsewhere, then renamed into place
  with pytest.raises(OSError, match='disk full'):
    qwen_tokenizer.qwen2_5_dir(str(tmp_path / 'b'))
  assert os.listdir(tmp_path / 'b') == []  # a failed build leaves nothing behind
  # Another process finished first: its directory is kept, ours dropped.
  os.makedirs(tmp_path / 'c' / 'qwen2.5-tokenizer-1')
  real_rename = os.rename
  def rename(src, dst):
    write(dst)
    real_rename(src, dst)                  # fails: dst exists and is not empty
  monkeypatch.setattr(os, 'rename', rename)
  assert qwen_tokenizer.qwen2_5_dir(str(tmp_path / 'c')).endswith('qwen2.5-tokenizer-1')
  assert os.listdir(tmp_path / 'c') == ['qwen2.5-tokenizer-1']


def test_make_tokenizer(qwen_dir):
  env = envs.make('household-small')
  for name in ('', 'word'):
    word = tokenizers.make_tokenizer(name, env)
    assert isinstance(word, tokenizers.WordTokenizer)
    assert word.tokens == tokenizers.WordTokenizer.from_vocabulary(env.vocabulary()).tokens
  qwen = tokenizers.make_tokenizer('qwen2.5', cache_dir=os.path.dirname(qwen_dir))
  assert qwen.chat_template is not None and qwen.vocab_size == 151665
  assert tokenizers.make_tokenizer(qwen_dir).encode('go to cabinet 1') == qwen.encode(
      'go to cabinet 1')
  with pytest.raises(ValueError, match="neither 'word', 'qwen2.5' nor a directory"):
    tokenizers.make_tokenizer('qwen3')
  with pytest.raises(ValueError, match='pass env'):
    tokenizers.make_tokenizer('word')


def test_bad_ranks(tmp_path):
  path = tmp_path / 'other.tiktoken'
  path.write_bytes(b'YQ== 0\nYg== 1\n')
  with pytest.raises(ValueError, match='not that of qwen-tokenizer 0.3.0'):
    qwen_tokenizer.load_ranks(str(path))
  with pytest.raises(ValueError, match=r"rank 2 \(b'abc'\) is not the merge"):
    qwen_tokenizer.bpe_merges({b'a': 0, b'b': 1, b'c': 3, b'abc': 2})
  assert qwen_tokenizer.bpe_merges({b'a': 0, b'b': 1, b'ab': 2, b'abb': 3}) == [
      (b'a', b'b'), (b'ab', b'b')]


def test_byte_to_unicode_is_a_printable_bijection():
  table = qwen_tokenizer.byte_to_unicode()
  assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
  assert all(c.isprintable() and not c.isspace() for c in table.values())
  assert table[ord('A')] == 'A' and table[ord(' ')] == 'Ġ' and table[ord('\n')] == 'Ċ'


@pytest.mark.slow
def test_command_line_tool(tmp_path):
  out = tmp_path / 'qwen'
  subprocess.run([sys.executable, '-m', 'experiments.make_qwen_tokenizer', f'--out={out}'],
                 check=True, capture_output=True)
  assert tokenizers.load_tokenizer(str(out)).encode('hello world') == [14990, 1879]
