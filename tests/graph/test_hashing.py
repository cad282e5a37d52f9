"""Tests for g2po_jax/graph/hashing.py."""

import hashlib
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from g2po_jax.graph import hash_tokens, mix, text_key, text_keys


def test_padding_never_changes_the_key():
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 150_000, (50, 700))
  lengths = rng.integers(0, 700, 50)
  garbage = np.where(np.arange(700) < lengths[:, None], tokens, rng.integers(0, 9, (50, 700)))
  np.testing.assert_array_equal(hash_tokens(tokens, lengths), hash_tokens(garbage, lengths))
  wider = np.pad(tokens, [(0, 0), (0, 5000)], constant_values=3)   # crosses a chunk
  np.testing.assert_array_equal(hash_tokens(tokens, lengths), hash_tokens(wider, lengths))


def test_length_is_part_of_the_key():
  keys = hash_tokens(np.array([[5, 0], [5, 0], [0, 0], [0, 0]]), np.array([2, 1, 1, 0]))
  assert len(set(keys.tolist())) == 4


def test_single_token_changes_change_the_key():
  rng = np.random.default_rng(1)
  base = rng.integers(0, 2**21, 5000)
  rows = np.repeat(base[None], 5000, 0)
  rows[np.arange(5000), np.arange(5000)] ^= 1 << rng.integers(0, 21, 5000)  # one bit flipped
  rows[0] = base
  keys = hash_tokens(rows, np.full(5000, 5000))
  assert len(np.unique(keys)) == 5000


def test_no_collisions_among_many_random_rows():
  rng = np.random.default_rng(2)
  rows = rng.integers(0, 4, (200_000, 12))   # small alphabet: many near-duplicates
  unique_rows = np.unique(rows, axis=0)
  assert len(np.unique(hash_tokens(unique_rows, np.full(len(unique_rows), 12)))) == len(unique_rows)


def test_batch_shape_and_dtype():
  keys = hash_tokens(np.zeros((2, 3, 4), np.int32), np.full((2, 3), 4))
  assert keys.shape == (2, 3) and keys.dtype == np.uint64


def test_text_key_is_blake2b_of_the_utf8_bytes():
  for text in ('You arrive at fridge 1.', '', 'café'):
    digest = hashlib.blake2b(text.encode('utf-8'), digest_size=8).digest()
    assert text_key(text) == int.from_bytes(digest, 'little')


def test_text_keys():
  keys = text_keys(['go to cabinet 1', 'go to cabinet 1', 'go to cabinet 10', '', 'é'])
  assert keys.shape == (5,) and keys.dtype == np.uint64
  assert keys[0] == keys[1] and len(set(keys.tolist())) == 4
  assert keys.tolist() == [text_key(t) for t in ['go to cabinet 1', 'go to cabinet 1',
                                                 'go to cabinet 10', '', 'é']]
  # A text's key does not depend on the other texts of its batch.
  assert text_keys(['look'])[0] == text_keys(['look', 'x' * 9000, 'café'])[0]
  assert text_keys(('look',))[0] == text_key('look')
  assert text_keys([]).shape == (0,)


def test_single_character_changes_change_the_string_key():
  base = 'You are in the middle of a room. ' * 20
  variants = [base] + [base[:i] + chr(ord(base[i]) ^ 1) + base[i + 1:] for i in range(len(base))]
  variants += [base[:i] + base[i + 1:] for i in range(len(base))]           # one deleted
  variants += [base[:i] + '\0' + base[i:] for i in range(len(base))]       # one NUL added
  assert len(set(text_keys(variants).tolist())) == len(set(variants))


def test_no_collisions_among_many_random_strings():
  rng = np.random.default_rng(4)
  texts = {''.join(rng.choice(list('ab1 '), rng.integers(0, 24))) for _ in range(200_000)}
  assert len(set(text_keys(list(texts)).tolist())) == len(texts)


def test_texts_are_keyed_one_at_a_time():
  """No copy of all texts (nor a fixed-width one, 4 bytes per character of
  the longest text for every row): at most one text's bytes at a time."""
  texts = ['x' * 200_000] + ['go to cabinet 1'] * 2000
  tracemalloc.start()
  text_keys(texts)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert peak < 200_000 + 16 * len(texts) + 4096, peak


def test_non_strings_are_a_value_error():
  for bad in ('a', 3), ('a', b'b'), (['a'],):
    with pytest.raises(ValueError, match='a state text must be a str'):
      text_keys(bad)


def test_keys_are_stable_across_processes():
  code = ('from g2po_jax.graph import text_key, hash_tokens; import numpy as np; '
          'print(text_key("You arrive at fridge 1."), '
          'hash_tokens(np.arange(9000).reshape(1, -1) % 777, np.array([8999]))[0])')
  runs = [subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout for _ in range(2)]
  here = f'{text_key("You arrive at fridge 1.")} ' \
         f'{hash_tokens(np.arange(9000).reshape(1, -1) % 777, np.array([8999]))[0]}\n'
  assert runs[0] == runs[1] == here


@pytest.mark.parametrize('tokens, lengths, match', [
    (np.zeros((2, 3)), np.full(2, 3), 'tokens must be an integer array'),
    (np.zeros((2, 3), int), np.full(3, 3), 'lengths must be an integer array of shape'),
    (np.zeros((2, 3), int), np.array([1, 4]), r'lengths must lie in \[0, 3\]'),
    (np.full((2, 3), -1), np.array([1, 0]), 'tokens must lie in'),
    (np.full((2, 3), 2**21), np.array([1, 0]), 'tokens must lie in'),
])
def test_bad_input(tokens, lengths, match):
  with pytest.raises(ValueError, match=match):
    hash_tokens(tokens, lengths)


def test_negative_padding_is_fine():
  assert hash_tokens(np.array([[4, -1]]), np.array([1]))[0] == hash_tokens(np.array([[4]]),
                                                                           np.array([1]))[0]


def test_mix_is_order_sensitive():
  a, b = np.uint64(1), np.uint64(2)
  assert mix(a, b) != mix(b, a) and mix(a, b) == mix(a, b)
