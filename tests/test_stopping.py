"""Tests of the stop-string automaton (host) and its use in `generate` (device)."""

from flax import nnx
import jax
import numpy as np
import pytest
import tokenizers as hf_tokenizers

from g2po_jax import models
from g2po_jax import sampling
from g2po_jax import stopping
from g2po_jax import tokenizers

STOP = '</action>'
# A vocabulary that can write the stop string in many ways, and text around it.
PIECES = ['</action>', '</', 'action', '>', '<', '/', 'act', 'ion', 'ion>', '>\n',
          ' </action> done', 'a', 'x', ' ', '<action>', '\n', 'ok']


def _run(table: np.ndarray, ids) -> int | None:
  """Index of the token after which the automaton accepts, or None."""
  state, accept = 0, stopping.accept_state(table)
  for i, token in enumerate(ids):
    state = table[state, token]
    if state == accept:
      return i
  return None


def _first_stop(texts: list[bytes], ids, strings) -> int | None:
  """Brute force: the first token whose text completes a stop string."""
  text = b''
  for i, token in enumerate(ids):
    text += texts[token]
    if any(s.encode() in text for s in strings):
      return i
  return None


def test_table_matches_brute_force_on_random_token_sequences():
  texts = [p.encode() for p in PIECES] + [b'']
  strings = [STOP, 'ok</', 'xx']
  table = stopping.stop_table(texts, strings)
  assert table.dtype == np.int32 and table.shape[1] == len(texts)
  rng = np.random.default_rng(0)
  hits = 0
  for _ in range(3000):
    ids = rng.integers(0, len(texts), rng.integers(1, 12))
    expected = _first_stop(texts, ids, strings)
    assert _run(table, ids) == expected, [texts[i] for i in ids]
    hits += expected is not None
  assert 300 < hits < 2900                      # both outcomes are exercised


def test_bad_stop_strings_are_rejected():
  with pytest.raises(ValueError, match='stop strings'):
    stopping.stop_table([b'a'], [''])
  with pytest.raises(ValueError, match='stop strings'):
    stopping.stop_table([b'a'], [])


def _bpe_tokenizer() -> tokenizers.HFTokenizer:
  """A small byte-level BPE that writes '</action>' as several tokens."""
  tok = hf_tokenizers.Tokenizer(hf_tokenizers.models.BPE())
  tok.pre_tokenizer = hf_tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = hf_tokenizers.decoders.ByteLevel()
  trainer = hf_tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=['<|endoftext|>', '<|im_end|>'],
      initial_alphabet=hf_tokenizers.pre_tokenizers.ByteLevel.alphabet())
  corpus = ['<think>go to the fridge</think>\n<action>open fridge 1</action>',
            'é naïve café </act ion> action act', 'take apple 1 from countertop 2'] * 20
  tok.train_from_iterator(corpus, trainer)
  return tokenizers.HFTokenizer(tok, '<|im_end|>', '<|endoftext|>')


def test_hf_token_bytes_concatenate_to_the_text():
  tok = _bpe_tokenizer()
  texts = stopping.token_bytes(tok)
  for sample in ('<action>open fridge 1</action>', 'é naïve café', 'a  b\n\nc'):
    ids = tok.encode(sample)
    assert b''.join(texts[i] for i in ids) == sample.encode()
  assert texts[tok.eos_id] == b'' and texts[tok.pad_id] == b''


def test_word_token_bytes():
  word = tokenizers.WordTokenizer.from_vocabulary(['go', 'to', 'fridge', '1'])
  texts = stopping.token_bytes(word)
  assert texts[word.NEWLINE] == b'\n' and texts[word.EOS] == b''
  assert b''.join(texts[i] for i in word.encode('go to')) == b'goto'


def _small_bpe() -> tokenizers.HFTokenizer:
  """About 40 byte-level tokens over the characters of '</action> x', with
  merges such as '</', 'action' and '</action>': a random model writes the
  stop string often, as one token or several."""
  tok = hf_tokenizers.Tokenizer(hf_tokenizers.models.BPE())
  tok.pre_tokenizer = hf_tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                             use_regex=False)
  tok.decoder = hf_tokenizers.decoders.ByteLevel()
  trainer = hf_tokenizers.trainers.BpeTrainer(vocab_size=40,
                                              special_tokens=['<|endoftext|>', '<|im_end|>'])
  corpus = ['x </action> x', '</act ion>', '</ action>', 'x</', 'action>x', 'tion',
            '</action>', 'a c t i o n'] * 10
  tok.train_from_iterator(corpus, trainer)
  return tokenizers.HFTokenizer(tok, '<|im_end|>', '<|endoftext|>')


@pytest.fixture(name='model', scope='module')
def _model():
  tok = _small_bpe()
  config = models.ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, num_layers=1,
                              num_heads=2, num_kv_heads=1, head_dim=16, intermediate_size=64,
                              rope_theta=1e4, max_position_embeddings=256)
  graphdef, params = nnx.split(models.init_model(config, 0))
  # Larger weights: row-dependent, peaked next-token distributions.
  return tok, graphdef, jax.tree.map(lambda x: x * 4 if x.ndim > 1 else x, params)


@pytest.mark.parametrize('temperature, least', [(0.0, 1), (1.0, 5)])
def test_generation_ends_right_after_the_stop_string(model, temperature, least):
  tok, graphdef, params = model
  texts = stopping.token_bytes(tok)
  assert any(len(t) > 2 and STOP.encode() in t for t in texts)   # one-token stop
  table = stopping.stop_table(texts, [STOP])
  config = sampling.SamplingConfig(max_new_tokens=32, temperature=temperature,
                                   stop_ids=(tok.eos_id,), pad_id=tok.pad_id)
  sampler = sampling.Sampler(graphdef, config, stop_table=table, length_buckets=(8,),
                             batch_buckets=(64,))
  prompts = np.random.default_rng(1).integers(0, tok.vocab_size, (64, 8)).astype(np.int32)
  out = sampler(params, prompts, np.full(64, 8), jax.random.key(3))
  stopped, multi = 0, 0
  for row in range(64):
    ids = out.tokens[row][out.mask[row]]
    first = _first_stop(texts, ids, [STOP])
    if out.done[row] and ids[-1] not in (tok.eos_id, tok.pad_id):
      assert first == len(ids) - 1          # ends exactly after the completing token
      stopped += 1
      multi += STOP.encode() not in texts[ids[-1]]
    else:
      assert first is None                  # never ran past a stop string
      assert out.done[row] or out.mask[row].all()
  assert stopped >= least, stopped
  if temperature:
    assert multi >= 1                       # some completed across several tokens


def test_per_row_limits(model):
  tok, graphdef, params = model
  config = sampling.SamplingConfig(max_new_tokens=12, temperature=1.0, pad_id=tok.pad_id)
  sampler = sampling.Sampler(graphdef, config, length_buckets=(8,), batch_buckets=(4,))
  prompts = np.ones((3, 8), np.int32)
  limits = np.array([0, 5, 12])
  out = sampler(params, prompts, np.full(3, 8), jax.random.key(0), limits=limits)
  np.testing.assert_array_equal(out.mask.sum(1), limits)
  assert not out.done.any()
  free = sampler(params, prompts, np.full(3, 8), jax.random.key(0))
  np.testing.assert_array_equal(out.tokens[1, :5], free.tokens[1, :5])
  with pytest.raises(ValueError, match='limits'):
    sampler(params, prompts, np.full(3, 8), jax.random.key(0), limits=np.array([1, 2, 13]))


def test_stopping_module_does_not_import_jax():
  import subprocess
  import sys
  code = ('import sys; import g2po_jax.stopping; '
          'sys.exit(int("jax" in sys.modules))')
  assert subprocess.run([sys.executable, '-c', code]).returncode == 0
