"""Stable 64-bit keys of state observations. Host only: numpy, never jax.

Two key functions, both equal across processes, runs and machines (fixed
constants, explicit little-endian reads; never Python's salted `hash()`):

`hash_tokens` (token id rows) is computed in two stages:

1. Four exact integer lanes per row, `lane_k = sum_i x_i * W[i, k]`, with
   secret-free but fixed random weights `W` in [0, 2**20) and values
   `x_i` in [0, 2**21). Rows are processed in chunks of 4096 positions, so each
   chunk's sums stay below 2**53 and a float64 matrix product computes them
   exactly (BLAS does the work; no Python loop over rows). Chunk lanes are
   added modulo 2**64.
2. The lanes and the row length are mixed into one uint64 by a fixed
   multiply-add and the splitmix64 finalizer.

Padding past a row's length is zeroed before stage 1 and the length enters
stage 2, so padding never changes a key, and `[5, 0]` (length 2) differs from
`[5]` (length 1).

Collision probability: two different rows of equal length differ at some
position i by d != 0; for any fixed pair, a lane then collides only if
`W[i, k]` takes the single value that cancels the other terms, probability at
most 2**-20 per lane and 2**-80 for all four (the weights are drawn
independently). The final 64-bit mix adds about 2**-64, so a pair of distinct
observations shares a key with probability about 2**-64, and a group with
n distinct states has any collision with probability about n**2 / 2**65
(1e-13 for n = 2000).

`text_key` (one text) is BLAKE2b with an 8-byte digest of the text's UTF-8
bytes, read as a little-endian integer: about 1 us for a 450-byte text in a
tight loop (2-3 us for a text not in cache), paid once per state where the
environment writes it (`envs.TimeStep.key`), so the credit path groups
integers and never rereads a text. BLAKE2b is a
cryptographic hash: distinct texts collide with probability 2**-64 per pair,
whatever their content. `text_keys` maps it over a list of texts (the
matchers' exact keys), one text at a time, so no copy larger than one text
is ever made.
"""

from collections.abc import Sequence
import hashlib

import numpy as np

_VALUE_BITS = 21                # token ids and Unicode code points fit
_CHUNK = 4096                   # positions per exact float64 product
_WEIGHT_BITS = 53 - _VALUE_BITS - 12  # 2**21 * 2**12 * 2**20 = 2**53
_LANES = 4
_ROWS_PER_BLOCK = 256           # keeps the float64 copy of a block in cache

_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD], dtype=np.uint64)


def _weights(chunk: int) -> np.ndarray:
  """[_CHUNK, _LANES] float64 integer weights of chunk `chunk`, fixed forever."""
  rng = np.random.default_rng([0x6A09E667, chunk])
  return rng.integers(0, 2**_WEIGHT_BITS, size=(_CHUNK, _LANES)).astype(np.float64)


_W0 = _weights(0)


def finalize(h: np.ndarray) -> np.ndarray:
  """splitmix64 finalizer: a bijection on uint64 that spreads every bit."""
  with np.errstate(over='ignore'):
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return h ^ (h >> np.uint64(31))


def mix(*keys: np.ndarray) -> np.ndarray:
  """Combines uint64 key arrays (broadcast together) into one uint64 key."""
  out = np.zeros(np.broadcast_shapes(*(np.shape(k) for k in keys)), np.uint64)
  with np.errstate(over='ignore'):
    for i, k in enumerate(keys):
      out = finalize(out * _MIX[i % len(_MIX)] + np.asarray(k, np.uint64))
  return out


def hash_tokens(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Keys of token rows; positions past each row's length are ignored.

  Args:
    tokens: [..., L] integer ids in [0, 2**21).
    lengths: [...] integer number of real tokens per row, in [0, L].
  Returns:
    [...] uint64 keys. Equal rows (up to their lengths) give equal keys in
    every process and run; distinct rows collide with probability ~2**-64.
  """
  tokens = np.asarray(tokens)
  lengths = np.asarray(lengths)
  if tokens.ndim < 1 or not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f'tokens must be an integer array [..., L]; got dtype '
                     f'{tokens.dtype}, shape {tokens.shape}.')
  if lengths.shape != tokens.shape[:-1] or not np.issubdtype(lengths.dtype, np.integer):
    raise ValueError(f'lengths must be an integer array of shape {tokens.shape[:-1]} '
                     f'(tokens.shape[:-1]); got dtype {lengths.dtype}, shape {lengths.shape}.')
  length = tokens.shape[-1]
  if lengths.size and (lengths.min() < 0 or lengths.max() > length):
    raise ValueError(f'lengths must lie in [0, {length}]; got [{lengths.min()}, {lengths.max()}].')
  rows = tokens.reshape(-1, length)
  lens = lengths.reshape(-1)
  live = np.arange(length) < lens[:, None]
  lanes = np.zeros((rows.shape[0], _LANES), np.uint64)
  for c0 in range(0, length, _CHUNK):
    w = _W0 if c0 == 0 else _weights(c0 // _CHUNK)
    c1 = min(c0 + _CHUNK, length)
    for r0 in range(0, rows.shape[0], _ROWS_PER_BLOCK):
      r1 = r0 + _ROWS_PER_BLOCK
      block = np.multiply(rows[r0:r1, c0:c1], live[r0:r1, c0:c1], dtype=np.float64)
      if block.size and (block.min() < 0 or block.max() >= 2**_VALUE_BITS):
        raise ValueError(f'tokens must lie in [0, 2**{_VALUE_BITS}) within each row '
                         f'length; got values in [{block.min():.0f}, {block.max():.0f}].')
      with np.errstate(over='ignore'):
        lanes[r0:r1] += (block @ w[:c1 - c0]).astype(np.uint64)
  return mix(*lanes.T, lens.astype(np.uint64)).reshape(lengths.shape)


def text_key(text: str) -> int:
  """The 64-bit key of a text (module docstring), an int in [0, 2**64).

  Raises:
    ValueError: `text` is not a str.
  """
  try:
    data = text.encode()
  except AttributeError:
    raise ValueError(f'a state text must be a str; got {type(text).__name__} '
                     f'{text!r:.80}.') from None
  return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), 'little')


def text_keys(texts: Sequence[str]) -> np.ndarray:
  """[n] uint64 `text_key` of each of the n texts.

  Raises:
    ValueError: an element is not a str.
  """
  return np.fromiter(map(text_key, texts), np.uint64, len(texts))
