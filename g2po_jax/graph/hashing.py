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

`hash_strings` (texts) reads each string's UTF-8 bytes as 8-byte words (the
string zero-padded to a multiple of 8 bytes, strings concatenated: one buffer
the size of the text, built block by block so it stays in cache), with no
fixed-width copy and no Python work per row beyond `len` and a join:

1. Each word w is mixed by a bijection, m = w * K, m ^= m >> 32 (K odd).
2. A row's value is the polynomial sum_j m_j * A**j mod 2**64 over its words
   j = 0, 1, ... (A odd), evaluated for all rows at once as a prefix sum over
   the buffer, sum_k m_k A**k, rescaled by A**-start of each row.
3. The value and the length in bytes are mixed as in `hash_tokens`.

Collision probability: two texts of different byte lengths differ in stage 3
(about 2**-64). Two texts of equal length that differ in a single word never
collide before stage 3 (m_j differs and A**j is invertible). For other pairs
the bound is heuristic, not worst-case: treating the mixed words as random,
a pair collides with probability about 2**-64, as for `hash_tokens` (texts
built on purpose to collide can exist; this is not a cryptographic hash).
"""

import functools

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


def _finalize(h: np.ndarray) -> np.ndarray:
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
      out = _finalize(out * _MIX[i % len(_MIX)] + np.asarray(k, np.uint64))
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


# hash_strings' constants: odd multipliers drawn once from a fixed seed.
_WORD_MIX, _BASE = (np.random.default_rng([0x6A09E667, 1]).integers(0, 2**63, 2, dtype=np.uint64)
                    * np.uint64(2) + np.uint64(1))
_BLOCK_BYTES = 1 << 18          # text per block: its buffers stay in cache
_PADS = ['\0' * k for k in range(8)]
_BYTE_PADS = [b'\0' * k for k in range(8)]


def _inverse(a: np.uint64) -> np.uint64:
  """a**-1 mod 2**64 of an odd a (Newton's iteration doubles the bits)."""
  x = a
  with np.errstate(over='ignore'):
    for _ in range(6):
      x = x * (np.uint64(2) - a * x)
  return x


def _power_tables(size: int) -> tuple[np.ndarray, np.ndarray]:
  """([size] A**k, [size] A**-k) mod 2**64, k = 0 .. size-1."""
  with np.errstate(over='ignore'):
    up = np.cumprod(np.full(size, _BASE, np.uint64)) * _inverse(_BASE)
    down = np.cumprod(np.full(size, _inverse(_BASE), np.uint64)) * _BASE
  return up, down


_cached_power_tables = functools.cache(_power_tables)


def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
  """`_power_tables(size)`; kept for a block's sizes (powers of two up to
  2**16), recomputed for the rare text longer than a block."""
  return (_cached_power_tables if size <= 1 << 16 else _power_tables)(size)


def _padded_utf8(texts: list[str], chars: np.ndarray) -> tuple[bytes, np.ndarray]:
  """(the texts' UTF-8 bytes, each zero-padded to a multiple of 8, joined;
  [n] byte lengths). `chars` are the texts' lengths in characters."""
  parts = [None] * (2 * len(texts))
  parts[::2] = texts
  parts[1::2] = map(_PADS.__getitem__, (-chars % 8).tolist())
  try:
    joined = ''.join(parts)
  except TypeError as e:        # e.g. 'sequence item 4: expected str instance, int found'
    raise ValueError(f'strings must all be str; {e}.') from None
  if joined.isascii():          # one byte per character: the common case
    return joined.encode('ascii'), chars
  encoded = [t.encode() for t in texts]
  lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
  parts[::2] = encoded
  parts[1::2] = map(_BYTE_PADS.__getitem__, (-lengths % 8).tolist())
  return b''.join(parts), lengths


def hash_strings(strings) -> np.ndarray:
  """Keys of strings, by their UTF-8 bytes (see the module docstring).

  Args:
    strings: a list of str, a nested list (one more dimension per level), or
      a numpy array of str (object or unicode dtype), any shape.
  Returns:
    uint64 keys of the same shape; equal strings give equal keys in every
    process and run, whatever the other strings of the batch.
  Raises:
    ValueError: an element is not a str.
  """
  if isinstance(strings, list) and all(isinstance(s, str) for s in strings[:1]):
    texts, shape = strings, (len(strings),)        # the common case: no array at all
  else:
    arr = strings if isinstance(strings, np.ndarray) else np.array(strings, dtype=object)
    texts, shape = arr.ravel().tolist(), arr.shape
  n = len(texts)
  try:
    chars = np.fromiter(map(len, texts), np.int64, n)
  except TypeError as e:
    raise ValueError(f'strings must all be str; {e}.') from None
  # Blocks of about _BLOCK_BYTES of text (a longer text is a block alone).
  ends = np.searchsorted(np.cumsum(chars), np.arange(1, 1 + chars.sum() // _BLOCK_BYTES)
                         * _BLOCK_BYTES, 'right')
  bounds = np.unique(np.concatenate([[0], ends, [n]]))
  value = np.zeros(n, np.uint64)
  lengths = np.zeros(n, np.int64)
  for r0, r1 in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
    data, lengths[r0:r1] = _padded_utf8(texts[r0:r1], chars[r0:r1])
    words = np.frombuffer(data, '<u8')
    count = (lengths[r0:r1] + 7) >> 3                       # words per row
    start = np.cumsum(count) - count
    up, down = _powers(1 << max(len(words) - 1, 0).bit_length())
    with np.errstate(over='ignore'):                        # mod 2**64 on purpose
      m = words * _WORD_MIX
      m ^= m >> np.uint64(32)
      m *= up[:len(words)]
      rows = np.flatnonzero(count)                          # '' has no words: value 0
      if rows.size:
        value[r0 + rows] = np.add.reduceat(m, start[rows]) * down[start[rows]]
  return mix(value, lengths.astype(np.uint64)).reshape(shape)
