"""Which steps are "the same state": state keys from state texts. Host only.

G2PO's graph merges the steps of a task group whose state keys are equal.
A matcher turns the state texts of a batch into those keys, per task group:

  exact       `text_key` of the text (the papers' rule); equal to the keys the
              environments attach to their states (`envs.TimeStep.key`).
  normalized  `text_key` of the text after regex rules (`Rule`), declared
              beside each environment (`BatchEnv.NORMALIZERS`) and extended
              from the config (`graph.rules`).
  near        near-duplicate merging within a task group: word-shingle and
              segment sets, one-permutation MinHash, LSH banding for candidate pairs, the
              exact similarity of every candidate pair checked against the
              threshold, and union-find over the pairs that pass.
  difflib     GiGPO's rule (verl-agent's `similarity_thresh`): within a group,
              each text joins the first cluster whose first member has
              `difflib.SequenceMatcher(None, a, b).ratio() >= threshold`,
              else starts a cluster. Quadratic and slow; the baseline.

Every matcher returns, for each text, the exact key of one member of its
node (`near`: the smallest exact key of the node), so a node is the set of
(group, key) pairs as in `build_graph`, and `near` at threshold 1 keeps
exact keys apart unless their texts have equal feature sets. Nothing is ever
merged across task groups. Keys do not depend on the order of rows or groups
(except `difflib`, whose greedy rule is order dependent by design).

`near` in detail (all numpy; no loop over rows or pairs):
1. Texts are deduplicated per group by exact key; only distinct texts go on.
2. The words of the texts (ASCII letters lower-cased) are hashed from one
   byte buffer per block of texts, 8 bytes per read; a shingle is k
   consecutive words of one segment (line breaks, brackets and `,.;!?` end
   segments), so reordered lines and list items keep their shingles.
   A text's feature set is its distinct shingles and its distinct segments
   (one sort per block).
3. One-permutation MinHash: a feature's hash picks one of `bands * rows`
   bins by its top bits; a bin keeps its smallest hash (empty bins borrow the
   next non-empty bin's). Texts sharing all `rows` bins of any band land in
   one bucket (one sort for all bands); consecutive members of a bucket
   (ordered by exact key) form candidate pairs, so a bucket of m texts costs
   m - 1 pairs, not m**2 / 2.
   A pair with Jaccard similarity J is a candidate with probability about
   1 - (1 - J**rows)**bands: 0.99 at J = 0.8 with the defaults (8 x 4).
4. The similarity of each candidate pair is computed exactly from the two
   feature sets (a linear merge of both sorted sets): Jaccard |A & B| /
   |A | B| or set cosine |A & B| / sqrt(|A| |B|); pairs below the threshold
   are dropped.
   Pairs whose MinHash estimate is far below the threshold (by `_MARGIN`,
   over 3 standard deviations) are dropped before this check, and so are
   pairs that earlier bands already joined.
5. Union-find (vectorized hook and compress) merges the verified pairs.
Cost is about linear in the total text length; merging is single linkage
over verified pairs, so a chain of near pairs can join texts that are not
near each other (purity diagnostics measure it: `matching_stats`).
"""

from collections.abc import Callable, Sequence
import difflib
import functools
import re
import string
from typing import NamedTuple

import numpy as np

from g2po_jax.graph.builder import dense_ids
from g2po_jax.graph.hashing import finalize, mix, text_keys

MATCHINGS = ('exact', 'normalized', 'near', 'difflib')
METRICS = ('jaccard', 'cosine')

# (texts [n] str, group [n] int) -> [n] uint64 keys; equal keys in a group = one node.
Matcher = Callable[[Sequence[str], np.ndarray], np.ndarray]

# Byte classes, one translate of the UTF-8 bytes: a line break, bracket or
# the punctuation that ends list items and sentences becomes 0 (a break: ends
# a segment; texts are joined with \x02, one of them), other ASCII
# punctuation and control bytes 1 (separate words); all other bytes stay
# (> 1, word bytes), ASCII letters lower-cased.
_BREAKS = b',.;!?[]\n\r\t\v\f\x02'
_SPACES = bytes(c for c in range(33) if c not in _BREAKS) + bytes(
    c for c in string.punctuation.encode() if c not in _BREAKS)
_CLASSES = bytes.maketrans(
    _BREAKS + _SPACES + string.ascii_uppercase.encode(),
    b'\0' * len(_BREAKS) + b'\1' * len(_SPACES) + string.ascii_lowercase.encode())
_BLOCK_CHARS = 1 << 17          # text per block of `_features`
_PAD = bytes(16)                # after the last text: 8-byte reads stay in the buffer
# SWAR constants: a byte < 2 in a uint64 is found without a per-byte loop.
_TWOS, _HIGH_BITS = np.uint64(0x0202020202020202), np.uint64(0x8080808080808080)
# Candidates whose MinHash estimate is this far below the threshold are not
# verified: over 3 standard deviations of the 32-bin estimate (<= 0.088).
_MARGIN = 0.3
# Odd multipliers of the word, shingle, segment and bucket hashes, drawn once
# from a fixed seed: equal features hash alike in any process.
_CHUNK_MIX, _CHUNK_BASE, _SHINGLE_MIX, _SEGMENT_MIX, _BUCKET_MIX = (
    np.random.default_rng([0x6A09E667, 3]).integers(0, 2**63, 5, dtype=np.uint64)
    * np.uint64(2) + np.uint64(1))
# The base A of a segment's polynomial hash sum_j h_j * A**j (odd).
_SEGMENT_BASE = (np.random.default_rng([0x6A09E667, 1]).integers(0, 2**63, 2, dtype=np.uint64)
                 * np.uint64(2) + np.uint64(1))[1]
_SORT = re.compile(r'<sort:(.+)>', re.DOTALL)


class Rule(NamedTuple):
  """One normalization rule: `re.sub(pattern, replacement, text)`.

  Patterns compile with re.MULTILINE. Two replacements are transforms
  rather than templates: '<lower>' lower-cases the match; '<sort:SEP>'
  splits the match at SEP, sorts the pieces and joins them with SEP
  (unordered lists: '<sort:, >', '<sort:\\n>').
  """
  pattern: str
  replacement: str


def make_normalizer(rules: Sequence[Sequence[str]]) -> Callable[[str], str]:
  """The function applying `rules` ((pattern, replacement) pairs) in order.

  Raises:
    ValueError: a rule that is not two strings, or a pattern that does not compile.
  """
  steps = []
  for i, rule in enumerate(rules):
    if (not isinstance(rule, (tuple, list)) or len(rule) != 2
        or not all(isinstance(x, str) for x in rule)):
      raise ValueError(f'rules[{i}] must be a (pattern, replacement) pair of strings; '
                       f'got {rule!r}.')
    rule = Rule(*rule)
    try:
      pattern = re.compile(rule.pattern, re.MULTILINE)
    except re.error as e:
      raise ValueError(f'rules[{i}]: pattern {rule.pattern!r} does not compile: {e}.') from None
    sort = _SORT.fullmatch(rule.replacement)
    if rule.replacement == '<lower>':
      repl = lambda m: m.group(0).lower()
    elif sort:
      repl = lambda m, sep=sort.group(1): sep.join(sorted(m.group(0).split(sep)))
    else:
      repl = rule.replacement
    steps.append((pattern, repl))

  def normalize(text: str) -> str:
    for pattern, repl in steps:
      text = pattern.sub(repl, text)
    return text
  return normalize


def exact_keys(texts: Sequence[str], group: np.ndarray) -> np.ndarray:
  """[n] uint64 `text_key` of each text (`group` is not needed: keys are per text)."""
  del group
  return text_keys(texts)


def _word_spans(texts: Sequence[str]) -> tuple[np.ndarray, ...]:
  """Where the words of texts lie in one classified byte buffer.

  The texts' UTF-8 bytes are joined, each after a \x02 (a break), and
  translated by `_CLASSES` in one call; a word is a maximal run of bytes > 1.

  Returns:
    (data [N] uint8 the translated buffer, zero-padded for 8-byte reads;
    start [w] int64 first byte of each word, increasing; opens [w] bool
    whether it opens a segment (a break lies between it and the word
    before); count [n] int64 words of each text), for the w words of all
    texts in order.
  """
  joined = '\x02'.join(['', *texts, ''])
  if joined.isascii():
    data, sizes = joined.encode('ascii'), np.fromiter(map(len, texts), np.int64, len(texts))
  else:
    encoded = [t.encode() for t in texts]
    data = b'\x02'.join([b'', *encoded, b''])
    sizes = np.fromiter(map(len, encoded), np.int64, len(encoded))
  b = np.frombuffer(data.translate(_CLASSES) + _PAD, np.uint8)
  in_word = b > 1
  start = np.flatnonzero(in_word[1:] > in_word[:-1]) + 1     # b[0] is a break
  opens = np.zeros(start.size + 1, bool)
  opens[np.searchsorted(start, np.flatnonzero(b == 0))] = True
  first = np.searchsorted(start, np.cumsum(sizes + 1) - sizes)   # first word of each text
  return b, start, opens[:-1], np.diff(np.append(first, start.size))


def _premix(chunk: np.ndarray) -> np.ndarray:
  """A bijection on uint64 that spreads high bits into low ones (0 -> 0)."""
  m = chunk * _CHUNK_MIX
  m ^= m >> np.uint64(32)
  return m


def _cut_at_word_end(chunk: np.ndarray) -> np.ndarray:
  """Zeroes each 8-byte chunk from its first byte < 2 (a non-word byte) on,
  in place; returns [c] bool, True where the chunk had no such byte."""
  flags = (chunk - _TWOS) & ~chunk & _HIGH_BITS   # the lowest flag marks the first byte < 2
  lowest = flags & (~flags + np.uint64(1))
  chunk &= (lowest >> np.uint64(7)) - np.uint64(1)  # no flag: 0 - 1 keeps all 8 bytes
  return flags == 0


def _word_hashes(data: np.ndarray, start: np.ndarray) -> np.ndarray:
  """[w] uint64 hashes of the words (runs of bytes > 1) at `start` in `data`.

  A word is read as 8-byte chunks c_0, c_1, ..., zero past its end:
  h = finalize(c_0 + sum_{k>0} premix(c_k) * A**k). A chunk's own bytes say
  where the word ends (no per-byte pass); words of up to 16 bytes (nearly
  all) take one or two reads, longer ones the rest of their chunks.
  """
  window = np.ndarray((data.size - 7,), '<u8', data, strides=(1,))   # 8 bytes at each offset
  with np.errstate(over='ignore'):
    value = np.take(window, start)                            # take: faster than []
    live = np.flatnonzero(_cut_at_word_end(value))            # words of 8 bytes or more
    chunk = np.take(window, start[live] + 8)
    more = _cut_at_word_end(chunk)
    value[live] += _premix(chunk) * _CHUNK_BASE
    live = live[more]                                         # of 16 bytes or more
    if live.size:
      value[live] += _long_word_tails(data, window, start[live])
    return finalize(value)


def _long_word_tails(data: np.ndarray, window: np.ndarray, start: np.ndarray) -> np.ndarray:
  """[l] uint64 sum_{k>1} premix(c_k) * A**k of the words at `start` (16
  bytes or more; `window` as in `_word_hashes`)."""
  stops = np.flatnonzero(data <= 1)
  chunks = (stops[np.searchsorted(stops, start + 16)] - start - 9) // 8   # chunks 2, 3, ...
  k = _ranges(np.full(start.size, 2), chunks)
  chunk = np.take(window, np.repeat(start, chunks) + 8 * k)
  _cut_at_word_end(chunk)
  powers = np.cumprod(np.full(int(k.max(initial=1)), _CHUNK_BASE, np.uint64))  # A**1, A**2, ...
  tails = np.zeros(start.size, np.uint64)
  some = np.flatnonzero(chunks)
  if some.size:
    offset = np.cumsum(chunks) - chunks
    tails[some] = np.add.reduceat(_premix(chunk) * powers[k - 1], offset[some])
  return tails


def _features(texts: Sequence[str], size: int) -> np.ndarray:
  """The distinct features (word shingles, segments) of each text, sorted.

  ASCII letters are lower-cased; line breaks, brackets and `,.;!?` end a
  segment (other ASCII punctuation separates words), and a shingle is `size`
  consecutive words of one segment (markers pad the first size-1); each
  whole segment is one more feature. So list items, lines and sentences each
  give features of their own, whatever order they come in.

  Args:
    texts: [n] str.
    size: words per shingle, k >= 1.
  Returns:
    [m] uint64 (row << b) | value, sorted and distinct: row the text index,
    value the top b = _value_bits(n) bits of the feature's 64-bit hash.
  """
  bits = _value_bits(len(texts))
  chars = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)))
  # Blocks of about _BLOCK_CHARS characters: each block's arrays stay in
  # cache, and its rows, sorted on their own, are the next rows of the whole.
  ends = np.searchsorted(chars, np.arange(1, 1 + chars[-1] // _BLOCK_CHARS) * _BLOCK_CHARS,
                         'right') if chars.size else chars
  bounds = np.unique(np.concatenate([[0], ends, [len(texts)]])).tolist()
  return np.concatenate([np.zeros(0, np.uint64)] + [
      _block_features(texts[r0:r1], size, r0, bits) for r0, r1 in zip(bounds[:-1], bounds[1:])])


def _block_features(texts: Sequence[str], size: int, row0: int, bits: int) -> np.ndarray:
  """`_features` of rows row0, row0 + 1, ... (`texts`), with b = bits."""
  data, start, opens, count = _word_spans(texts)
  h = _word_hashes(data, start)                                # [w] random-looking
  w = h.size
  heads = np.flatnonzero(opens)                                # [s] each segment's first word
  with np.errstate(over='ignore'):
    # Shingle: h_i * M**(k-1) + h_{i-1} * M**(k-2) + ... (a marker for
    # words before the segment); linear in random word hashes, so distinct
    # shingles collide with probability about 2**-64, as after a finalizer.
    shingle = h
    if size > 2:
      index = np.arange(w)
      position = index - np.maximum.accumulate(np.where(opens, index, 0))
    for lag in range(1, size):
      prev = np.empty_like(h)
      prev[:lag], prev[lag:] = lag, h[:-lag]
      prev[opens if lag == 1 else position < lag] = lag
      shingle = shingle * _SHINGLE_MIX + prev
    # Segment: sum_j h_j * A**j over its words j = 0, 1, ..., and its length.
    up, down = _powers(1 << max(w - 1, 0).bit_length())
    segment = np.add.reduceat(h * up[:w], heads) * down[heads] if w else h[:0]
    segment += np.diff(np.append(heads, w)).astype(np.uint64) * _SEGMENT_MIX
  shift = np.uint64(64 - bits)
  row = np.repeat(np.arange(row0, row0 + len(texts), dtype=np.uint64) << np.uint64(bits), count)
  packed = np.empty(w + heads.size, np.uint64)
  np.bitwise_or(shingle >> shift, row, out=packed[:w])
  np.bitwise_or(segment >> shift, row[heads], out=packed[w:])
  packed.sort()
  return packed[np.flatnonzero(np.append(True, packed[1:] != packed[:-1]))] if w else packed


def _inverse(a: np.uint64) -> np.uint64:
  """a**-1 mod 2**64 of an odd a (Newton's iteration doubles the bits)."""
  x = a
  with np.errstate(over='ignore'):
    for _ in range(6):
      x = x * (np.uint64(2) - a * x)
  return x


def _power_tables(size: int) -> tuple[np.ndarray, np.ndarray]:
  """([size] A**k, [size] A**-k) mod 2**64, k = 0 .. size-1 (A: _SEGMENT_BASE)."""
  a, inv = _SEGMENT_BASE, _inverse(_SEGMENT_BASE)
  with np.errstate(over='ignore'):
    up = np.cumprod(np.full(size, a, np.uint64)) * inv
    down = np.cumprod(np.full(size, inv, np.uint64)) * a
  return up, down


_cached_power_tables = functools.cache(_power_tables)


def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
  """`_power_tables(size)`; kept for a block's sizes (powers of two up to
  2**16), recomputed for the rare block with more words."""
  return (_cached_power_tables if size <= 1 << 16 else _power_tables)(size)


def _value_bits(n: int) -> int:
  """Bits of a feature value when an index below n shares one uint64 with it."""
  return 64 - max(int(n).bit_length(), 1)


def _signatures(packed: np.ndarray, n: int, bins: int, value_bits: int) -> np.ndarray:
  """[n, bins] int64 one-permutation MinHash of the sorted features `packed`.

  Bin b of a row holds its smallest value whose top bits say b; an empty bin
  takes the next non-empty bin's value (cyclically) plus its distance, so a
  row's bins are all filled when it has any feature (else all are `empty`,
  int64 max).
  """
  cell = (packed >> np.uint64(value_bits - int(bins).bit_length() + 1)).view(np.int64)
  low = (np.uint64(1) << np.uint64(value_bits)) - np.uint64(1)
  empty = np.iinfo(np.int64).max
  sig = np.full(n * bins, empty, np.int64)       # cell = row * bins + bin, < 2**63
  np.minimum.at(sig, cell, (packed & low).view(np.int64))
  sig = sig.reshape(n, bins)
  # Densify: at distance d = 1, 2, ..., holes whose bin d further on (cyclic)
  # is filled take it; most rows have no hole or short gaps.
  rows = np.flatnonzero((sig == empty).any(1) & (sig != empty).any(1))
  given = sig[rows]
  part, hole = given.copy(), given == empty
  for d in range(1, bins):
    if not hole.any():
      break
    source = np.roll(given, -d, axis=1)                  # bin b + d at bin b
    fill = hole & (source != empty)
    part[fill] = source[fill] + d
    hole &= ~fill
  sig[rows] = part
  return sig


def _components(parent: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Union-find: [n] roots (the smallest index of each component) after
  adding the undirected edges u[i]-v[i] to the components `parent` ([n],
  each entry its component's root), by vectorized hooking and compression."""
  while u.size:
    pu, pv = parent[u], parent[v]
    low = np.minimum(pu, pv)
    hooked = parent.copy()
    np.minimum.at(hooked, pu, low)          # hook each root under the smaller root
    np.minimum.at(hooked, pv, low)
    while True:                             # compress every path to its root
      up = hooked[hooked]
      if np.array_equal(up, hooked):
        break
      hooked = up
    if np.array_equal(hooked, parent):
      break
    parent = hooked
  return parent


def _candidates(sig: np.ndarray, rows: np.ndarray, group: np.ndarray, bands: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Candidate pairs of every band: consecutive members of its buckets.

  Args:
    sig: [n, bands * r] MinHash signatures.
    rows: [l] the rows that have features, increasing; rows are numbered in
      (group, exact key) order, so a bucket's members come in that order.
    group: [n] task group of each row.
    bands: bands of r bins each.
  Returns:
    (a [p], b [p]) int64 rows of each pair, band by band, and [bands + 1]
    offsets: band j's pairs are [offsets[j], offsets[j + 1]).
  """
  n, bins = sig.shape
  band_bits, row_bits = (bands - 1).bit_length(), max(n - 1, 0).bit_length()
  with np.errstate(over='ignore'):
    bucket = np.zeros((rows.size, bands), np.uint64)
    for column in np.moveaxis(sig[rows].reshape(rows.size, bands, -1), 2, 0):
      bucket = finalize(bucket * _BUCKET_MIX + column.astype(np.uint64))
  # One sort of (band, bucket key cut to the bits left, row): a cut key that
  # collides only adds a candidate, which is then checked like any other.
  key_bits = np.uint64(64 - band_bits - row_bits)
  key = ((np.arange(bands, dtype=np.uint64) << key_bits) | (bucket >> (np.uint64(64) - key_bits))
         if band_bits else bucket >> np.uint64(row_bits))
  key = np.sort(((key << np.uint64(row_bits)) | rows[:, None].astype(np.uint64)).ravel())
  member = (key & ((np.uint64(1) << np.uint64(row_bits)) - np.uint64(1))).astype(np.int64)
  same = ((key[1:] >> np.uint64(row_bits)) == (key[:-1] >> np.uint64(row_bits))) & (
      group[member[1:]] == group[member[:-1]])
  pair = np.flatnonzero(same)
  offsets = np.searchsorted(pair, np.arange(bands + 1) * rows.size)
  return member[pair], member[pair + 1], offsets


def _intersections(packed: np.ndarray, start: np.ndarray, count: np.ndarray, value_bits: int,
                   a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[p] |S_a & S_b| of the feature sets of pairs (a[i], b[i]), exactly.

  `a` holds distinct rows. With pairs in order of a, row a's features (as
  in `packed`) and row b's, relabelled to row a, are two sorted runs; a
  stable sort (timsort) merges them in linear time, and a feature of both
  sets comes twice in a row.
  """
  if not a.size:
    return np.zeros(0, np.int64)
  order = np.argsort(a)
  a, b = a[order], b[order]
  bits = np.uint64(value_bits)
  size_a, size_b = count[a], count[b]
  keys = np.take(packed, np.concatenate([_ranges(start[a], size_a), _ranges(start[b], size_b)]))
  with np.errstate(over='ignore'):                          # row b -> row a, mod 2**64
    keys[size_a.sum():] += np.repeat((a - b).astype(np.uint64) << bits, size_b)
  keys.sort(kind='stable')
  # Pair i's features fill keys[offset[i]:offset[i + 1]]; a repeat marks a shared one.
  repeat = (keys[1:] == keys[:-1]).view(np.int8)
  offset = np.cumsum(size_a + size_b) - (size_a + size_b)
  inter = np.empty(a.size, np.int64)
  inter[order] = np.add.reduceat(repeat, offset, dtype=np.int64)
  return inter


def _ranges(start: np.ndarray, size: np.ndarray) -> np.ndarray:
  """[sum(size)] int64 start[0], start[0] + 1, ..., start[0] + size[0] - 1,
  start[1], ... (the index ranges, concatenated; no loop over ranges)."""
  offset = np.cumsum(size) - size
  return np.arange(offset[-1] + size[-1] if size.size else 0) + np.repeat(start - offset, size)


def near_keys(texts: Sequence[str], group: np.ndarray, threshold: float,
              metric: str = 'jaccard', shingle: int = 2, bands: int = 8,
              rows: int = 4) -> np.ndarray:
  """Keys that merge near-duplicate texts within each group (module docstring).

  Args:
    texts: [n] str.
    group: [n] int task group of each text; texts of different groups never merge.
    threshold: merge a candidate pair when its similarity is >= this, in (0, 1].
    metric: 'jaccard' or 'cosine', over the texts' feature sets.
    shingle: words per shingle, >= 1.
    bands, rows: LSH banding; `bands * rows` MinHash bins, a power of two.
  Returns:
    [n] uint64: the smallest exact key among the texts merged with each text.
  Raises:
    ValueError: a bad threshold, metric, shingle size or banding.
  """
  _check_similarity(threshold, metric)
  bins = bands * rows
  if shingle < 1 or bands < 1 or rows < 1 or bins & (bins - 1):
    raise ValueError(f'shingle, bands and rows must be >= 1 with bands * rows a power of two; '
                     f'got {shingle}, {bands}, {rows}.')
  exact = text_keys(texts)
  group = np.asarray(group)
  if not exact.size:
    return exact
  # 1. Distinct (group, text) pairs, numbered in (group, key) order; `first`
  # indexes one row of each.
  ids, num = dense_ids(group.astype(np.int64), exact)
  first = np.zeros(num, np.int64)
  first[ids[::-1]] = np.arange(len(ids))[::-1]
  k = exact[first]
  # 2. Feature sets; 3. MinHash bands -> candidate pairs.
  packed = _features([texts[i] for i in first], shingle)
  value_bits = _value_bits(num)
  size = np.bincount((packed >> np.uint64(value_bits)).astype(np.int64), minlength=num)
  start = np.cumsum(size) - size
  sig = _signatures(packed, num, bins, value_bits)
  pair_a, pair_b, offsets = _candidates(sig, np.flatnonzero(size > 0), group[first], bands)
  # Skip pairs whose MinHash estimate of Jaccard is far below the least
  # Jaccard the threshold allows (cosine c implies J >= c**2).
  least = threshold if metric == 'jaccard' else threshold**2
  root = np.arange(num)
  for band in range(bands):
    a, b = pair_a[offsets[band]:offsets[band + 1]], pair_b[offsets[band]:offsets[band + 1]]
    # Pairs already in one node need no check (earlier bands joined them).
    todo = root[a] != root[b]
    a, b = a[todo], b[todo]
    todo = (sig[a] == sig[b]).mean(1) >= least - _MARGIN
    a, b = a[todo], b[todo]
    # 4. Exact similarity of each candidate pair.
    inter = _intersections(packed, start, size, value_bits, a, b)
    if metric == 'jaccard':
      sim = inter / np.maximum(size[a] + size[b] - inter, 1)
    else:
      sim = inter / np.sqrt(np.maximum(size[a] * size[b], 1))
    keep = sim >= threshold
    # 5. Union-find over the pairs that pass; a node's key is its smallest exact key.
    root = _components(root, a[keep], b[keep])
  node_key = np.full(num, np.iinfo(np.uint64).max, np.uint64)
  np.minimum.at(node_key, root, k)
  return node_key[root][ids]


def difflib_keys(texts: Sequence[str], group: np.ndarray, threshold: float) -> np.ndarray:
  """GiGPO's greedy rule (module docstring): [n] uint64, the exact key of each
  text's cluster's first member. Python loops over groups and clusters."""
  exact = text_keys(texts)
  group = np.asarray(group)
  out = np.empty_like(exact)
  for label in np.unique(group):
    firsts: list[tuple[str, np.uint64]] = []   # (first member, its key) per cluster
    seen: dict[int, np.uint64] = {}            # exact key -> cluster key
    for i in np.flatnonzero(group == label):
      if exact[i] not in seen:
        for text, key in firsts:
          if difflib.SequenceMatcher(None, text, texts[i]).ratio() >= threshold:
            seen[exact[i]] = key
            break
        else:
          firsts.append((texts[i], exact[i]))
          seen[exact[i]] = exact[i]
      out[i] = seen[exact[i]]
  return out


def _check_similarity(similarity: float, metric: str) -> None:
  if metric not in METRICS:
    raise ValueError(f'metric must be one of {", ".join(METRICS)}; got {metric!r}.')
  if (isinstance(similarity, bool) or not isinstance(similarity, (int, float))
      or not 0.0 < similarity <= 1.0):
    raise ValueError(f'similarity must be a number in (0, 1]; got {similarity!r}.')


def make_matcher(matching: str, *, similarity: float = 0.9, metric: str = 'jaccard',
                 rules: Sequence[Sequence[str]] = ()) -> Matcher:
  """The matcher `matching` (one of MATCHINGS), checked before first use.

  Args:
    matching: 'exact', 'normalized', 'near' or 'difflib'.
    similarity: near and difflib: the threshold, in (0, 1].
    metric: near: 'jaccard' or 'cosine'.
    rules: normalized: (pattern, replacement) pairs, applied in order.
  Raises:
    ValueError: an unknown matching or metric, a threshold outside (0, 1],
      a bad rule.
  """
  if matching not in MATCHINGS:
    raise ValueError(f'matching must be one of {", ".join(MATCHINGS)}; got {matching!r}.')
  _check_similarity(similarity, metric)
  normalize = make_normalizer(rules)
  if matching == 'normalized':
    return lambda texts, group: exact_keys([normalize(t) for t in texts], group)
  if matching == 'near':
    return lambda texts, group: near_keys(texts, group, similarity, metric)
  if matching == 'difflib':
    return lambda texts, group: difflib_keys(texts, group, similarity)
  return exact_keys
