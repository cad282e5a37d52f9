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
2. The words of all texts (ASCII letters lower-cased) are hashed at once,
   from one byte buffer; a shingle is k consecutive words of one segment
   (line breaks, brackets and `,.;!?` end segments), so reordered lines and
   list items keep their shingles.
   A text's feature set is its distinct shingles and its distinct segments.
3. One-permutation MinHash: a feature's hash picks one of `bands * rows`
   bins by its top bits; a bin keeps its smallest hash (empty bins borrow the
   next non-empty bin's). Texts sharing all `rows` bins of any band land in
   one bucket; consecutive members of a bucket (ordered by exact key) form
   candidate pairs, so a bucket of m texts costs m - 1 pairs, not m**2 / 2.
   A pair with Jaccard similarity J is a candidate with probability about
   1 - (1 - J**rows)**bands: 0.99 at J = 0.8 with the defaults (8 x 4).
4. The similarity of each candidate pair is computed exactly from the two
   feature sets (sorted-array lookups): Jaccard |A & B| / |A | B| or set
   cosine |A & B| / sqrt(|A| |B|); pairs below the threshold are dropped.
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
import re
import string
from typing import NamedTuple

import numpy as np

from g2po_jax.graph.builder import dense_ids
from g2po_jax.graph.hashing import mix, text_keys

MATCHINGS = ('exact', 'normalized', 'near', 'difflib')
METRICS = ('jaccard', 'cosine')

# (texts [n] str, group [n] int) -> [n] uint64 keys; equal keys in a group = one node.
Matcher = Callable[[Sequence[str], np.ndarray], np.ndarray]

# Word segmentation on the UTF-8 bytes, one translate: a line break, bracket
# or the punctuation that ends list items and sentences becomes \x02 (ends a
# segment; texts are joined with it too), other ASCII punctuation and control
# bytes a space; ASCII letters are lower-cased.
_BREAKS = b',.;!?[]\n\r\t\v\f\x02'
_SPACES = bytes(c for c in range(33) if c not in _BREAKS) + bytes(
    c for c in string.punctuation.encode() if c not in _BREAKS)
_SEGMENTS = bytes.maketrans(
    _BREAKS + _SPACES + string.ascii_uppercase.encode(),
    b'\x02' * len(_BREAKS) + b' ' * len(_SPACES) + string.ascii_lowercase.encode())
# Candidates whose MinHash estimate is this far below the threshold are not
# verified: over 3 standard deviations of the 32-bin estimate (<= 0.088).
_MARGIN = 0.3
# A word's hash: sum_j (byte_j + 1) * W[j] mod 2**64 over its bytes (random
# odd W), then its length mixed in; equal words hash alike in any process.
_BYTE_WEIGHTS = (np.random.default_rng([0x6A09E667, 2]).integers(0, 2**63, 4096, dtype=np.uint64)
                 * np.uint64(2) + np.uint64(1))
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


def shingles(texts: Sequence[str], size: int = 2) -> tuple[np.ndarray, np.ndarray]:
  """The distinct features (word shingles, segments) of each text, sorted.

  ASCII letters are lower-cased; line breaks, brackets and `,.;!?` end a
  segment (other ASCII punctuation separates words), and a shingle is `size` consecutive
  words of one segment (a start marker pads the first size-1); each whole
  segment is one more feature. So list items, lines and sentences each give
  features of their own, whatever order they come in.

  Args:
    texts: [n] str.
    size: words per shingle, k >= 1.
  Returns:
    (row [m] int64 text index, non-decreasing; value [m] uint64 shingle
    hash in [0, 2**_value_bits(n)), increasing within a row): each pair once.
  """
  n = len(texts)
  h, row, pos = _words(texts)
  index = np.arange(h.size)
  value = h
  for lag in range(1, size):
    prev = h[np.maximum(index - lag, 0)]
    value = mix(value, np.where(pos >= lag, prev, np.uint64(lag)))
  # Each whole segment is a feature too (its words' position-salted hashes,
  # summed): a text's segments, not just their shingles, must match.
  starts = np.flatnonzero(pos == 0)
  with np.errstate(over='ignore'):
    segment = mix(np.add.reduceat(mix(h, pos.astype(np.uint64)), starts) if starts.size
                  else h[:0], np.uint64(size))
  row = np.concatenate([row, row[starts]])
  value = np.concatenate([value, segment])
  # Sort by (row, value) in one uint64: the row in the top bits, the value
  # cut to the rest (>= 34 bits of hash for n < 2**30).
  bits = np.uint64(_value_bits(n))
  packed = np.sort((row.astype(np.uint64) << bits) | (value >> (np.uint64(64) - bits)))
  packed = packed[np.concatenate([[True], packed[1:] != packed[:-1]])] if packed.size else packed
  return (packed >> bits).astype(np.int64), packed & ((np.uint64(1) << bits) - np.uint64(1))


def _words(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The words of all texts, vectorized over their bytes (no object per word).

  Returns:
    (hash [w] uint64, text [w] int64, position in its segment [w] int64) of
    every word, in order.
  """
  joined = '\x02'.join(texts)
  if joined.isascii():
    data, sizes = joined.encode('ascii'), np.fromiter(map(len, texts), np.int64, len(texts))
  else:
    encoded = [t.encode() for t in texts]
    data, sizes = b'\x02'.join(encoded), np.fromiter(map(len, encoded), np.int64, len(texts))
  b = np.frombuffer(data.translate(_SEGMENTS), np.uint8)
  at = np.flatnonzero(b > 32)                                  # bytes of words (2: break)
  if not at.size:
    return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64)
  first = np.concatenate([[True], at[1:] != at[:-1] + 1])      # a word's first byte
  begin = np.flatnonzero(first)                                # [w] into `at`
  starts = at[begin]                                           # [w] into the bytes
  offset = np.arange(at.size) - np.repeat(begin, np.diff(np.append(begin, at.size)))
  with np.errstate(over='ignore'):
    sums = np.add.reduceat((b[at].astype(np.uint64) + np.uint64(1))
                           * _BYTE_WEIGHTS[np.minimum(offset, _BYTE_WEIGHTS.size - 1)], begin)
  h = mix(sums, np.diff(np.append(begin, at.size)).astype(np.uint64))
  text = np.searchsorted(np.cumsum(sizes + 1), starts, 'right')
  segment = np.searchsorted(np.flatnonzero(b == 2), starts)    # breaks before each word
  new = np.concatenate([[True], segment[1:] != segment[:-1]])
  index = np.arange(starts.size)
  return h, text, index - np.maximum.accumulate(np.where(new, index, 0))


def _value_bits(n: int) -> int:
  """Bits of a shingle value when n texts share one uint64 with it."""
  return 64 - max(int(n).bit_length(), 1)


def _signatures(row: np.ndarray, value: np.ndarray, n: int, bins: int,
                value_bits: int) -> np.ndarray:
  """[n, bins] one-permutation MinHash of sorted (row, value) shingles.

  Bin b of a row holds its smallest value whose top bits say b; an empty bin
  takes the next non-empty bin's value (cyclically) plus its distance, so a
  row's bins are all filled when it has any shingle.
  """
  bin_shift = np.uint64(value_bits - int(bins).bit_length() + 1)
  b = (value >> bin_shift).astype(np.int64)                     # in [0, bins)
  first = np.ones(row.size, bool)                               # sorted: first = min
  first[1:] = (row[1:] != row[:-1]) | (b[1:] != b[:-1])
  empty = np.iinfo(np.int64).max
  sig = np.full((n, bins), empty, np.int64)
  sig[row[first], b[first]] = value[first].astype(np.int64)
  # Densify: the next filled bin (cyclic) via a reversed running minimum of
  # its column index over two copies of the row.
  filled = np.concatenate([sig, sig], 1) != empty               # [n, 2 * bins]
  index = np.where(filled, np.arange(2 * bins), 2 * bins)
  nxt = np.minimum.accumulate(index[:, ::-1], axis=1)[:, ::-1][:, :bins]
  has = nxt < 2 * bins
  src = np.where(has, nxt % bins, 0)
  dist = np.where(has, nxt - np.arange(bins), 0)
  return np.where(has, np.take_along_axis(sig, src, 1) + dist, empty)


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


def _intersections(row: np.ndarray, value: np.ndarray, n: int, value_bits: int,
                   a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[p] |S_a & S_b| of the shingle sets of pairs (a[i], b[i]), exactly."""
  count = np.bincount(row, minlength=n)
  start = np.cumsum(count) - count
  swap = count[a] > count[b]                # look the smaller set up in the larger
  a, b = np.where(swap, b, a), np.where(swap, a, b)
  size = count[a]
  pair = np.repeat(np.arange(a.size), size)
  idx = np.repeat(start[a] - (np.cumsum(size) - size), size) + np.arange(size.sum())
  bits = np.uint64(value_bits)
  packed = (row.astype(np.uint64) << bits) | value               # sorted (`shingles`)
  query = (b[pair].astype(np.uint64) << bits) | value[idx]
  hit = packed[np.minimum(np.searchsorted(packed, query), packed.size - 1)] == query
  return np.bincount(pair, weights=hit, minlength=a.size).astype(np.int64)


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
  # 1. Distinct (group, text) pairs: `first` indexes one row of each.
  ids, num = dense_ids(group.astype(np.int64), exact)
  first = np.zeros(num, np.int64)
  first[ids[::-1]] = np.arange(len(ids))[::-1]
  g, k = group[first], exact[first]
  # 2. Shingle sets; 3. MinHash bands -> candidate pairs of consecutive
  # bucket members, ordered by (group, band key, exact key).
  row, value = shingles([texts[i] for i in first], shingle)
  value_bits = _value_bits(num)
  sig = _signatures(row, value, num, bins, value_bits)
  size = np.bincount(row, minlength=num)
  live = np.flatnonzero(size > 0)
  # Skip pairs whose MinHash estimate of Jaccard is far below the least
  # Jaccard the threshold allows (cosine c implies J >= c**2).
  least = threshold if metric == 'jaccard' else threshold**2
  root = np.arange(num)
  for band in range(bands):
    bucket = mix(np.uint64(band), *sig[live, band * rows:(band + 1) * rows].T.astype(np.uint64))
    order = np.lexsort((k[live], bucket, g[live]))
    member, bucket = live[order], bucket[order]
    same = (bucket[1:] == bucket[:-1]) & (g[member[1:]] == g[member[:-1]])
    a, b = member[:-1][same], member[1:][same]
    # Pairs already in one node need no check (earlier bands joined them).
    todo = (root[a] != root[b]) & ((sig[a] == sig[b]).mean(1) >= least - _MARGIN)
    a, b = a[todo], b[todo]
    # 4. Exact similarity of each candidate pair.
    inter = _intersections(row, value, num, value_bits, a, b)
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
