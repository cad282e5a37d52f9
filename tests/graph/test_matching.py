"""Tests for g2po_jax/graph/matching.py and `graph.matching_stats`."""

import difflib
import itertools
import re
import string

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from g2po_jax import envs
from g2po_jax import graph
from g2po_jax.envs import noisy
from g2po_jax.graph import matching


def _play(name: str, tasks: int = 6, group_size: int = 6, steps: int = 12, seed: int = 0):
  """(state texts [n], true-state texts [n], group [n]) of a noisy oracle's play."""
  env = envs.make(name)
  seeds = np.repeat(envs.split_seeds('train', tasks), group_size)
  rng = np.random.default_rng(seed)
  current = env.reset(seeds)
  texts, trues, group = [], [], []
  for _ in range(steps):
    actions = []
    for s, best in zip(current, env.oracle_actions()):
      if s.done:
        actions.append(None)
        continue
      actions.append(best if rng.random() > 0.4 else str(rng.choice(s.admissible)))
    for i, (s, a) in enumerate(zip(current, actions)):
      if a is not None:
        texts.append(s.state_key)
        trues.append(s.state_key if s.true_state_key is None else s.true_state_key)
        group.append(seeds[i])
    current = [n if n is not None else s for n, s in zip(env.step(actions), current)]
  return texts, trues, np.array(group)


def _partition(group, keys):
  """[n] dense node ids of (group, key) pairs."""
  return graph.dense_ids(np.asarray(group, np.int64), np.asarray(keys, np.uint64))[0]


def _same_partition(a, b) -> bool:
  return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


def _words(text: str) -> set:
  """Oracle of the feature sets: the word bigrams of each segment, and the segments."""
  out = set()
  for segment in re.split(r'[,.;!?\[\]\n\r\t\v\f]', text.lower()):
    words = re.sub(f'[{re.escape(string.punctuation)}]', ' ', segment).split()
    if words:
      out.update(zip(['<start>'] + words[:-1], words))
      out.add(tuple(words))
  return out


def _jaccard(a: str, b: str) -> float:
  x, y = _words(a), _words(b)
  return len(x & y) / max(len(x | y), 1)


@pytest.mark.parametrize('name', ['household-small', 'shop-small'])
def test_near_at_threshold_one_is_exact_on_clean_worlds(name):
  texts, _, group = _play(name)
  exact = graph.exact_keys(texts, group)
  np.testing.assert_array_equal(graph.near_keys(texts, group, 1.0), exact)


@pytest.mark.parametrize('name', ['household-small', 'household-noisy', 'shop-small'])
def test_exact_matching_of_the_texts_is_the_source_keys(name):
  """Rollouts group the environments' keys (`TimeStep.key`) instead of the
  texts under exact matching; both must give the same keys, hence nodes."""
  env = envs.make(name)
  rng = np.random.default_rng(0)
  current = env.reset(np.repeat(envs.split_seeds('train', 4), 4))
  seen = list(current)
  for _ in range(10):
    out = env.step([None if s.done else str(rng.choice(s.admissible)) for s in current])
    current = [n if n is not None else s for n, s in zip(out, current)]
    seen += [n for n in out if n is not None]
  texts = [s.state_key for s in seen]
  trues = [s.state_key if s.true_state_key is None else s.true_state_key for s in seen]
  np.testing.assert_array_equal(graph.exact_keys(texts, None),
                                np.array([s.key for s in seen], np.uint64))
  np.testing.assert_array_equal(graph.make_matcher('exact')(trues, None),
                                np.array([s.true_key for s in seen], np.uint64))


@pytest.mark.parametrize('rule', ['exact', 'normalized', 'near'])   # difflib: greedy by design
def test_permuting_rows_and_groups_permutes_nodes_only(rule):
  texts, _, group = _play('household-noisy', tasks=4, group_size=4, steps=8)
  match = graph.make_matcher(rule, similarity=0.8, rules=noisy.NoisyEnv.NORMALIZERS)
  nodes = _partition(group, match(texts, group))
  perm = np.random.default_rng(0).permutation(len(texts))
  relabel = {g: 1000 - i for i, g in enumerate(np.unique(group))}      # groups reordered
  moved_group = np.array([relabel[g] for g in group[perm]])
  moved = _partition(moved_group, match([texts[i] for i in perm], moved_group))
  assert _same_partition(nodes[perm], moved)


@pytest.mark.parametrize('rule', ['exact', 'normalized', 'near', 'difflib'])
def test_a_group_s_nodes_do_not_depend_on_other_groups(rule):
  texts, _, group = _play('household-noisy', tasks=3, group_size=3, steps=6)
  match = graph.make_matcher(rule, similarity=0.8, rules=noisy.NoisyEnv.NORMALIZERS)
  together = match(texts, group)
  for g in np.unique(group):
    rows = np.flatnonzero(group == g)
    alone = match([texts[i] for i in rows], group[rows])
    np.testing.assert_array_equal(together[rows], alone)


_VOCAB = [f'w{i}' for i in range(400)]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), edits=st.integers(1, 6),
       threshold=st.sampled_from([0.6, 0.75, 0.9]))
def test_planted_near_duplicates_are_found_and_nothing_below_threshold_merges(
    seed, edits, threshold):
  rng = np.random.default_rng(seed)
  texts, group = [], []
  for g in range(3):                              # 3 groups x 6 bases x 4 copies
    for _ in range(6):
      base = list(rng.choice(_VOCAB, 40))
      for _ in range(4):
        copy = list(base)
        for j in rng.choice(40, edits, replace=False):
          copy[j] = str(rng.choice(_VOCAB))       # edit distance `edits` in words
        texts.append(' '.join(copy))
        group.append(g)
  group = np.array(group)
  nodes = _partition(group, graph.near_keys(texts, group, threshold))
  # Oracle: the components of the pairs at or above the threshold.
  above = np.zeros((len(texts), len(texts)), bool)
  found, expected, variance = 0, 0.0, 0.0
  for i, j in itertools.combinations(range(len(texts)), 2):
    similarity = _jaccard(texts[i], texts[j]) if group[i] == group[j] else 0.0
    if similarity >= threshold:
      above[i, j] = above[j, i] = True
      found += nodes[i] == nodes[j]
      p = 1 - (1 - similarity**4)**8       # a candidate in some band (8 bands x 4 bins)
      expected, variance = expected + p, variance + p * (1 - p)
  reach = above | np.eye(len(texts), dtype=bool)
  for _ in range(len(texts)):
    reach = reach | (reach.astype(int) @ reach.astype(int) > 0)
  same = nodes[:, None] == nodes[None, :]
  assert not (same & ~reach).any()                # never merged below the threshold
  # Found at least at the banding's rate (transitive merges only add to it).
  assert found >= expected - 3 * np.sqrt(variance) - 1


def test_cosine_merges_what_jaccard_keeps_apart():
  a = 'one two three four five six seven eight'
  b = 'one two three four five six seven eight nine ten'
  group = np.zeros(2, int)
  # 9 and 11 features (bigrams and the segment), 8 shared.
  assert _jaccard(a, b) == pytest.approx(8 / 12)
  jac = graph.near_keys([a, b], group, 0.75, metric='jaccard')
  cos = graph.near_keys([a, b], group, 0.75, metric='cosine')      # 8 / sqrt(99) = 0.804
  assert jac[0] != jac[1] and cos[0] == cos[1]


def test_near_reads_whole_words_of_any_length_and_script():
  """Words are read 8 bytes at a time: one changed byte anywhere in a word
  (up to 40 bytes, non-ASCII too) is a different word, while case,
  punctuation of one kind and doubled spaces change no feature."""
  rng = np.random.default_rng(0)
  vocab = ['x' * n for n in (1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 40)]
  vocab += ['café', 'naïve', '日本語のテキスト']
  words = [str(w) for w in rng.choice(vocab, 30)]
  base = ' '.join(words)
  same = ' - '.join(w.upper() if w.isascii() and i % 2 else w for i, w in enumerate(words))
  texts, expected = [base, same + '  '], []
  for j in range(len(words)):
    for p in {0, len(words[j]) // 2, len(words[j]) - 1}:
      edited = list(words)
      edited[j] = words[j][:p] + 'y' + words[j][p + 1:]
      texts.append(' '.join(edited))
      expected.append(_jaccard(base, texts[-1]))
  group = np.zeros(len(texts), int)
  keys = graph.near_keys(texts, group, 1.0, bands=32, rows=1)
  assert keys[0] == keys[1]                                 # equal feature sets
  assert keys[0] not in keys[2:]                            # one byte differs
  # At its exact Jaccard a pair merges (32 one-bin bands: a sure candidate);
  # just above it, it never does.
  for text, similarity in zip(texts[2:], expected):
    at = graph.near_keys([base, text], group[:2], similarity, bands=32, rows=1)
    above = graph.near_keys([base, text], group[:2], similarity + 1e-9, bands=32, rows=1)
    assert at[0] == at[1] and above[0] != above[1]


def _greedy_reference(texts, threshold):
  """GiGPO's rule written out: index of each text's cluster (first member)."""
  firsts, out = [], []
  for i, t in enumerate(texts):
    for f in firsts:
      if difflib.SequenceMatcher(None, texts[f], t).ratio() >= threshold:
        out.append(f)
        break
    else:
      firsts.append(i)
      out.append(i)
  return out


def test_difflib_is_greedy_against_each_cluster_s_first_member():
  a, b, c, d = 'aaaaaaaaaa', 'aaaaaaaabb', 'aaaaaabbbb', 'aaaaaaaaab'
  # b ~ a (0.8); c ~ b (0.8) but not a (0.6): c starts its own cluster.
  keys = graph.difflib_keys([a, b, c, d, c], np.zeros(5, int), 0.8)
  ka, _, kc, _, _ = graph.exact_keys([a, b, c, d, c], None)
  np.testing.assert_array_equal(keys, [ka, ka, kc, ka, kc])
  rng = np.random.default_rng(0)
  texts = [''.join(rng.choice(list('ab'), 12)) for _ in range(30)]
  for threshold in (0.6, 0.8):
    keys = graph.difflib_keys(texts, np.zeros(30, int), threshold)
    first = _greedy_reference(texts, threshold)
    np.testing.assert_array_equal(keys, graph.exact_keys([texts[f] for f in first], None))


def test_normalizer_rules():
  norm = graph.make_normalizer([(r'\d+', 'N'), (r'[A-Z]+', '<lower>'),
                                (r'(?<=: ).+$', '<sort:, >')])
  assert norm('Step 12: b, a, C') == 'step n: a, b, c'
  with pytest.raises(ValueError, match=r'rules\[0\] must be a \(pattern, replacement\) pair'):
    graph.make_normalizer([('x',)])
  with pytest.raises(ValueError, match=r'rules\[1\]: pattern .* does not compile'):
    graph.make_normalizer([('x', 'y'), ('(', '')])


@pytest.mark.parametrize('kwargs, message', [
    (dict(matching='fuzzy'), 'matching must be one of'),
    (dict(matching='near', similarity=0.0), r'similarity must be a number in \(0, 1\]'),
    (dict(matching='near', metric='dice'), 'metric must be one of'),
])
def test_make_matcher_rejects_bad_options(kwargs, message):
  with pytest.raises(ValueError, match=message):
    graph.make_matcher(**kwargs)


def test_near_keys_rejects_bad_banding():
  with pytest.raises(ValueError, match='bands \\* rows a power of two; got 2, 3, 4'):
    graph.near_keys(['a'], np.zeros(1, int), 0.8, bands=3)


@pytest.mark.parametrize('name', ['household-noisy', 'shop-noisy'])
def test_noise_splits_exact_nodes_and_the_normalizers_undo_it(name):
  texts, trues, group = _play(name)
  true_keys = graph.text_keys(trues)[:, None]
  mask = np.ones((len(texts), 1), bool)
  stats = lambda rule: graph.matching_stats(
      group, graph.make_matcher(rule, rules=noisy.NoisyEnv.NORMALIZERS)(texts, group)[:, None],
      true_keys, mask)
  exact, normalized = stats('exact'), stats('normalized')
  assert exact['purity'] == 1.0 and exact['recall'] < 0.6
  assert exact['singleton_fraction'] > exact['true_singleton_fraction'] + 0.2
  assert normalized['purity'] == 1.0 and normalized['recall'] == 1.0
  assert normalized['singleton_fraction'] == normalized['true_singleton_fraction']


def test_matching_stats_by_hand():
  group = np.array([0, 0, 1])
  # True states: group 0 visits s1 s1 s2 / s1 s2; group 1 visits s1 (its own).
  true = np.array([[1, 1, 2], [1, 2, 0], [1, 0, 0]], np.uint64)
  node = np.array([[7, 8, 8], [7, 9, 0], [7, 0, 0]], np.uint64)  # node 8 = {s1, s2}
  mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], bool)
  s = graph.matching_stats(group, node, true, mask)
  assert s['nodes'] == 4 and s['visits_per_node'] == 6 / 4
  assert s['merged_nodes'] == 1
  assert s['purity'] == pytest.approx(4 / 6)           # the two steps in node 8 are impure
  # s1 in group 0: 3 visits, 3 pairs, 1 in one node (the two in node 7);
  # s2: 2 visits, 1 pair, split over nodes 8 and 9.
  assert s['recall'] == pytest.approx(1 / 4)
  assert s['singleton_fraction'] == pytest.approx(2 / 6)       # node 9, group 1's node 7
  assert s['true_singleton_fraction'] == pytest.approx(1 / 6)  # group 1's s1
