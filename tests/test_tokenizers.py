"""Tests of the word and Hugging Face tokenizers and the prompt format."""

import json
import subprocess
import sys

from hypothesis import assume, given, settings, strategies as st
import numpy as np
import pytest
import tokenizers as hf_tokenizers

from g2po_jax import protocol
from g2po_jax import tokenizers
from g2po_jax.envs import split_words

ACTIONS = [
    'take apple 1 from countertop 2',
    'go to cabinet 3',
    'move mug 2 to coffeemachine 1',
    'put a clean lettuce in/on fridge.',
    'click[buy now]',
    'click[< prev]',
    'click[next >]',
    'click[x-large]',
    "click[men's]",
    "There's nothing special about keychain 1.",
    'search[red cotton shirt]',
    'examine the box (open).',
    'click[t-shirt - long sleeve]',  # the only one that needs a <sp> token
]
OBSERVATION = ('-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of '
               'a room. Looking quickly around you, you see a cabinet 3, and a '
               'countertop 2.')


def _vocab(texts):
  return {w for t in texts for w in split_words(t)}


@pytest.fixture(name='word')
def _word():
  return tokenizers.WordTokenizer.from_vocabulary(_vocab(ACTIONS + [OBSERVATION]))


@pytest.mark.parametrize('text', ACTIONS + [OBSERVATION])
def test_word_round_trip_is_exact(word, text):
  assert word.decode(word.encode(text)) == text


def test_word_common_actions_need_no_spacing_tokens(word):
  for text in ACTIONS[:-1] + [OBSERVATION]:
    ids = word.encode(text)
    assert len(ids) == len(split_words(text)) + text.count('\n'), text
  assert word.SPACE in word.encode(ACTIONS[-1])


def test_word_decode_drops_pad_and_eos_and_unknown_is_unk(word):
  ids = word.encode('go to cabinet 3') + [word.eos_id, word.pad_id, word.pad_id]
  assert word.decode(ids) == 'go to cabinet 3'
  assert word.decode(word.encode('go to sofa 3')) == 'go to <unk> 3'
  with pytest.raises(ValueError, match='outside'):
    word.decode([word.vocab_size])


_UNITS = ['go', 'to', 'cabinet', '3', '[', ']', '(', ')', '.', ',', ':', '-', "'", '>', 'x']


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(_UNITS), st.booleans()),
                         max_size=8), min_size=1, max_size=3))
def test_word_round_trip_property(lines):
  """Any text over the vocabulary with single or no spaces survives."""
  word = tokenizers.WordTokenizer.from_vocabulary(_UNITS)
  text = '\n'.join(''.join((' ' if spaced and i else '') + unit
                           for i, (unit, spaced) in enumerate(line))
                   for line in lines)
  # Unspaced word units would merge into one ('go' + 'to' -> 'goto').
  assume(all(split_words(l) == [u for u, _ in line]
             for l, line in zip(text.split('\n'), lines)))
  assert word.decode(word.encode(text)) == text


def test_word_vocabulary_is_sorted_deterministic_and_validated():
  a = tokenizers.WordTokenizer.from_vocabulary(['b', 'a', 'a'])
  b = tokenizers.WordTokenizer.from_vocabulary(['a', 'b'])
  assert a.tokens == b.tokens
  assert a.tokens[:len(a.SPECIALS)] == a.SPECIALS
  assert set(tokenizers.PROMPT_WORDS) <= set(a.tokens)
  with pytest.raises(ValueError, match='single split_words units'):
    tokenizers.WordTokenizer.from_vocabulary(['go to'])
  with pytest.raises(ValueError, match='start with'):
    tokenizers.WordTokenizer(['a', 'b'])


def test_encode_batch_right_pads_and_keeps_the_end(word):
  ids, lengths = word.encode_batch(['go to cabinet 3', 'click[buy now]'], max_length=3)
  assert ids.dtype == np.int32 and lengths.dtype == np.int32
  assert lengths.tolist() == [3, 3]
  assert word.decode(ids[0]) == 'to cabinet 3'
  ids, lengths = word.encode_batch(['go', 'go to'], max_length=4)
  np.testing.assert_array_equal(ids[0], word.encode('go') + [word.pad_id] * 3)
  assert lengths.tolist() == [1, 2]
  with pytest.raises(ValueError, match='max_length'):
    word.encode_batch(['go'], max_length=0)


def test_format_prompt_layout_and_word_coverage(word):
  prompt = tokenizers.format_prompt(
      'put a clean apple in fridge.',
      [('obs 1', 'go to cabinet 3'), ('obs 2', 'click[buy now]'), ('obs 3', 'go to cabinet 3')],
      'You arrive at cabinet 3.', ['go to cabinet 3', 'take apple 1 from countertop 2'],
      max_history=2)
  assert prompt == ('Task: put a clean apple in fridge.\n'
                    'Observation: obs 2\nAction: click[buy now]\n'
                    'Observation: obs 3\nAction: go to cabinet 3\n'
                    'Observation: You arrive at cabinet 3.\n'
                    'Admissible actions:\ngo to cabinet 3\ntake apple 1 from countertop 2\n'
                    'Action:')
  no_history = tokenizers.format_prompt('t', [('o', 'a')], 'o', [], max_history=0)
  assert no_history == 'Task: t\nObservation: o\nAdmissible actions:\nAction:'
  vocab = tokenizers.WordTokenizer.from_vocabulary(_vocab([prompt]))
  assert vocab.UNK not in vocab.encode(prompt)
  assert vocab.decode(vocab.encode(prompt)) == prompt
  with pytest.raises(ValueError, match='max_history'):
    tokenizers.format_prompt('t', [], 'o', [], max_history=-1)


def test_word_save_load(word, tmp_path):
  word.save(str(tmp_path))
  loaded = tokenizers.load_tokenizer(str(tmp_path))
  assert isinstance(loaded, tokenizers.WordTokenizer)
  assert loaded.tokens == word.tokens


def _bpe(tmp_path, eos='<|im_end|>', pad='<|endoftext|>'):
  tok = hf_tokenizers.Tokenizer(hf_tokenizers.models.BPE())
  tok.pre_tokenizer = hf_tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = hf_tokenizers.decoders.ByteLevel()
  trainer = hf_tokenizers.trainers.BpeTrainer(
      vocab_size=400, special_tokens=[pad, eos],
      initial_alphabet=hf_tokenizers.pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(ACTIONS + [OBSERVATION] * 3, trainer)
  tok.save(str(tmp_path / 'tokenizer.json'))
  (tmp_path / 'tokenizer_config.json').write_text(
      '{"eos_token": {"content": "%s"}, "pad_token": "%s", "model_max_length": 7}' % (eos, pad))
  return tok


def test_hf_tokenizer_from_dir_round_trip_and_save(tmp_path):
  raw = _bpe(tmp_path)
  tok = tokenizers.load_tokenizer(str(tmp_path))
  assert isinstance(tok, tokenizers.HFTokenizer)
  assert tok.eos_id == raw.token_to_id('<|im_end|>')
  assert tok.pad_id == raw.token_to_id('<|endoftext|>')
  assert tok.vocab_size == raw.get_vocab_size()
  prompt = tokenizers.format_prompt('find a shirt', [], OBSERVATION, ACTIONS)
  for text in ACTIONS + [OBSERVATION, prompt]:
    assert tok.decode(tok.encode(text)) == text
  assert tok.decode(tok.encode(' go to cabinet 3') + [tok.eos_id]) == ' go to cabinet 3'
  ids, lengths = tok.encode_batch(ACTIONS[:2], max_length=64)
  assert [list(ids[i, :n]) for i, n in enumerate(lengths)] == [tok.encode(a) for a in ACTIONS[:2]]

  out = tmp_path / 'saved'
  tok.save(str(out))
  again = tokenizers.load_tokenizer(str(out))
  assert (again.eos_id, again.pad_id) == (tok.eos_id, tok.pad_id)
  assert again.encode(prompt) == tok.encode(prompt)


def test_hf_tokenizer_errors(tmp_path):
  with pytest.raises(ValueError, match='holds no tokenizer'):
    tokenizers.load_tokenizer(str(tmp_path))
  _bpe(tmp_path)
  (tmp_path / 'tokenizer_config.json').write_text('{}')
  with pytest.raises(ValueError, match='eos_token'):
    tokenizers.HFTokenizer.from_dir(str(tmp_path))
  raw = hf_tokenizers.Tokenizer.from_file(str(tmp_path / 'tokenizer.json'))
  with pytest.raises(ValueError, match='not in the tokenizer vocabulary'):
    tokenizers.HFTokenizer(raw, eos_token='<nope>')


def test_tokenizers_module_does_not_import_jax():
  code = 'import sys, g2po_jax.tokenizers; print("jax" in sys.modules)'
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True)
  assert out.stdout.strip() == 'False'


def test_an_action_is_one_line(word, tmp_path):
  _bpe(tmp_path)
  for tok in (word, tokenizers.load_tokenizer(str(tmp_path))):
    newline = [i for i in tok.encode('go to cabinet 3\nlook') if '\n' in tok.decode([i])]
    assert newline and set(newline) <= set(tok.stop_ids)
    assert tok.eos_id in tok.stop_ids
    line = protocol.make_protocol('line', 'household')
    text = tok.decode(tok.encode(' go to cabinet 3\nlook around'))
    assert line.parse(text).action == 'go to cabinet 3'
    assert tok.decode_many([tok.encode('go to'), tok.encode('cabinet 3')]) == ['go to', 'cabinet 3']
    assert not {i for i in tok.encode('go to cabinet 3') if i in tok.stop_ids}


TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
            "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
MESSAGES = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'go to cabinet 3'}]


def _write_config(path, **entries):
  config = {'eos_token': '<|im_end|>', 'pad_token': '<|endoftext|>', 'model_max_length': 7}
  (path / 'tokenizer_config.json').write_text(json.dumps({**config, **entries}))


def test_hf_tokenizer_reads_its_chat_template(tmp_path):
  _bpe(tmp_path)
  assert tokenizers.load_tokenizer(str(tmp_path)).chat_template is None
  _write_config(tmp_path, chat_template=TEMPLATE, bos_token={'content': '<|endoftext|>'})
  tok = tokenizers.load_tokenizer(str(tmp_path))
  assert tok.chat_template == TEMPLATE
  assert tok.apply_chat_template(MESSAGES) == (
      '<|endoftext|>system: Be brief.<|im_end|>\nuser: go to cabinet 3<|im_end|>\nassistant:')
  assert tok.apply_chat_template(MESSAGES, add_generation_prompt=False).endswith('<|im_end|>\n')
  # Several named templates (transformers' list form): the default one.
  _write_config(tmp_path, chat_template=[{'name': 'tool_use', 'template': 'T'},
                                         {'name': 'default', 'template': 'D'}])
  assert tokenizers.load_tokenizer(str(tmp_path)).apply_chat_template(MESSAGES) == 'D'
  # chat_template.json, then chat_template.jinja, override the config (as in transformers).
  (tmp_path / 'chat_template.json').write_text(json.dumps({'chat_template': 'J'}))
  assert tokenizers.load_tokenizer(str(tmp_path)).chat_template == 'J'
  (tmp_path / 'chat_template.jinja').write_text('{{ messages | length }}')
  assert tokenizers.load_tokenizer(str(tmp_path)).apply_chat_template(MESSAGES) == '2'


def test_hf_tokenizer_bad_chat_templates(tmp_path):
  _bpe(tmp_path)
  _write_config(tmp_path, chat_template=[{'name': 'tool_use', 'template': 'T'}])
  with pytest.raises(ValueError, match=r"templates \['tool_use'\] but none named \"default\""):
    tokenizers.load_tokenizer(str(tmp_path))
  _write_config(tmp_path, chat_template={'default': 'D'})
  with pytest.raises(ValueError, match='neither a string nor a list'):
    tokenizers.load_tokenizer(str(tmp_path))


def test_hf_tokenizer_saves_its_chat_template_and_config(tmp_path):
  _bpe(tmp_path)
  _write_config(tmp_path, bos_token='<|endoftext|>')
  (tmp_path / 'chat_template.jinja').write_text(TEMPLATE)
  tok = tokenizers.load_tokenizer(str(tmp_path))
  out = tmp_path / 'saved'
  out.mkdir()
  (out / 'chat_template.jinja').write_text('stale')
  tok.save(str(out))
  assert not (out / 'chat_template.jinja').exists()
  config = json.loads((out / 'tokenizer_config.json').read_text())
  assert config['chat_template'] == TEMPLATE and config['model_max_length'] == 7
  again = tokenizers.load_tokenizer(str(out))
  assert again.chat_template == TEMPLATE
  assert again.apply_chat_template(MESSAGES) == tok.apply_chat_template(MESSAGES)
  # Saving a tokenizer without a template leaves none behind.
  bare = tokenizers.HFTokenizer(tok.tokenizer, eos_token='<|im_end|>')
  bare.save(str(out))
  assert tokenizers.load_tokenizer(str(out)).chat_template is None


def test_word_tokenizer_has_no_chat_template(word):
  assert word.chat_template is None
  with pytest.raises(ValueError, match='WordTokenizer has no chat template'):
    word.apply_chat_template(MESSAGES)
