"""Tests for `g2po_jax/envs/shop/`."""

import dataclasses
import hashlib
import math
import pathlib
import re
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pytest

from g2po_jax import envs
from g2po_jax.envs import base
from g2po_jax.envs.shop import bm25
from g2po_jax.envs.shop import catalogue as cat_lib
from g2po_jax.envs.shop import env as env_lib

_SEEDS = [int(s) for s in base.split_seeds('train', 200)]


def _play(env, seeds, policy, max_steps=15):
  """Runs `policy(env, latest TimeSteps)` to the end; returns each instance's
  list of TimeSteps."""
  runs = [[ts] for ts in env.reset(seeds)]
  for _ in range(max_steps):
    actions = policy(env, [run[-1] for run in runs])
    if all(a is None for a in actions):
      break
    for run, ts in zip(runs, env.step(actions)):
      if ts is not None:
        run.append(ts)
  return runs


def _oracle(env, latest):
  del latest
  return env.oracle_actions()


def _noisy_oracle(noise, rng):
  """A policy: the oracle's action, or with probability `noise` a random
  admissible one (on the search page, a search for some instruction words)."""
  def policy(env, latest):
    actions = env.oracle_actions()
    for i, ts in enumerate(latest):
      if actions[i] is None or rng.random() >= noise:
        continue
      actions[i] = ts.admissible[rng.integers(len(ts.admissible))]
      if actions[i] == env_lib.SEARCH:
        words = np.array(ts.task.split())
        actions[i] = f'search[{" ".join(words[rng.random(len(words)) < 0.5])}]'
    return actions
  return policy


def _reference_bm25(docs, query, k1=0.9, b=0.4):
  """Slow, obviously correct BM25 (Lucene idf) over lists of terms."""
  n, avgdl = len(docs), sum(map(len, docs)) / len(docs)
  scores = []
  for doc in docs:
    s = 0.0
    for t in query:
      df = sum(t in d for d in docs)
      tf = doc.count(t)
      idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
      s += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / avgdl))
    scores.append(s)
  return np.array(scores)


def _walk_to_results(env, seed):
  """Resets one instance and searches for its target's title."""
  env.reset([seed])
  return env.step(env.oracle_actions())[0]


class CatalogueTest(parameterized.TestCase):

  def test_generation_is_reproducible(self):
    a, b = cat_lib.Catalogue(400, 3), cat_lib.Catalogue(400, 3)
    for name in ('category', 'brand', 'attrs', 'suffix', 'option_masks',
                 'price_cents', 'asin_code'):
      np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    self.assertEqual([a.product(i) for i in range(400)], [b.product(i) for i in range(400)])
    other = cat_lib.Catalogue(400, 4)
    self.assertNotEqual([a.product(i) for i in range(20)], [other.product(i) for i in range(20)])

  def test_same_catalogue_in_a_fresh_process_without_jax(self):
    digest = 'hashlib.sha256(repr(list(map(cat.product, range(300)))).encode()).hexdigest()'
    code = ('import hashlib, sys\n'
            'from g2po_jax.envs.shop import catalogue as c\n'
            'cat = c.Catalogue(300, 1)\n'
            f'print({digest}, "jax" in sys.modules)')
    root = pathlib.Path(__file__).parents[2]
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=root).stdout.split()
    cat = cat_lib.Catalogue(300, 1)
    expected = hashlib.sha256(repr(list(map(cat.product, range(300)))).encode()).hexdigest()
    self.assertEqual(out, [expected, 'False'])

  def test_products_are_well_formed(self):
    cat = cat_lib.load_catalogue(1000, 0)
    products = [cat.product(i) for i in range(cat.num_products)]
    self.assertLen({p.asin for p in products}, cat.num_products)
    for p in products:
      self.assertRegex(p.asin, r'^B0(-[0-9A-F]{2}){3}$')
      self.assertBetween(len(p.attributes), 2, 5)
      self.assertLen(set(p.attributes), len(p.attributes))
      values = [v for _, vs in p.options for v in vs]
      self.assertLen(set(values), len(values))           # one button per value
      self.assertTrue(all(2 <= len(vs) <= 6 for _, vs in p.options))
      self.assertIn(p.category, p.title)

  def test_goals_have_a_perfect_target(self):
    cat = cat_lib.load_catalogue(1000, 0)
    for seed in _SEEDS:
      goal = cat_lib.make_goal(cat, seed)
      target = cat.product(goal.target)
      self.assertTrue(cat_lib.can_satisfy(goal, target))
      self.assertEqual(cat_lib.purchase_reward(goal, target, dict(goal.options)), 1.0)
      self.assertIn(goal.category, goal.instruction)
      self.assertTrue(goal.instruction.endswith(
          f'price lower than {goal.max_price_cents // 100}.00 dollars'))


class RewardTest(parameterized.TestCase):

  _PRODUCT = cat_lib.Product(
      asin='B0-00-00-01', title='nordale cotton t-shirt', category='t-shirt',
      brand='nordale', attributes=('cotton', 'slim fit', 'machine wash'),
      options=(('color', ('black', 'white')), ('size', ('small', 'large'))),
      price_cents=1999)
  _GOAL = cat_lib.Goal(
      instruction='i need cotton and machine wash t-shirt', category='t-shirt',
      attributes=('cotton', 'machine wash'),
      options=(('color', 'black'), ('size', 'large')), max_price_cents=2000, target=0)
  _RIGHT = {'color': 'black', 'size': 'large'}

  @parameterized.named_parameters(
      ('perfect', {}, {}, _RIGHT, 1.0),
      ('wrong_option', {}, {}, {'color': 'white', 'size': 'large'}, 4 / 5),
      ('no_option_chosen', {}, {}, {}, 3 / 5),
      ('missing_attribute', {}, {'attributes': ('cotton', 'wool blend')}, _RIGHT, 4 / 5),
      ('price_too_high', {'price_cents': 2001}, {}, _RIGHT, 4 / 5),
      ('price_at_bound', {'price_cents': 2000}, {}, _RIGHT, 1.0),
      ('only_category', {'price_cents': 9999, 'attributes': ('polyester',)}, {},
       {'color': 'white'}, 0.0),
      ('wrong_category', {'category': 'hoodie'}, {}, _RIGHT, 0.0),
  )
  def test_purchase_reward(self, product_changes, goal_changes, selected, expected):
    product = dataclasses.replace(self._PRODUCT, **product_changes)
    goal = dataclasses.replace(self._GOAL, **goal_changes)
    self.assertEqual(cat_lib.purchase_reward(goal, product, selected), expected)
    best = cat_lib.purchase_reward(goal, product, dict(goal.options))
    self.assertEqual(cat_lib.can_satisfy(goal, product), best == 1.0)

  def test_wrong_option_bought_in_the_env(self):
    env = env_lib.ShopEnv('small')
    results = _walk_to_results(env, 7)
    goal = env.goals[0]
    target = env.catalogue.product(goal.target)
    self.assertIn(f'click[{target.asin}]', results.admissible)
    env.step([f'click[{target.asin}]'])
    (dim, want), *rest = goal.options
    other = next(v for v in dict(target.options)[dim] if v != want)
    for _, value in [(dim, other), *rest]:
      self.assertTrue(env.step([f'click[{value}]'])[0].valid)
    ts = env.step([env_lib.BUY])[0]
    n = len(goal.attributes) + len(goal.options) + 1
    self.assertEqual(ts.reward, (n - 1) / n)
    self.assertTrue(ts.done)
    self.assertFalse(ts.won)
    self.assertEqual(ts.admissible, ())
    self.assertTrue(ts.observation.endswith(f'[SEP] {(n - 1) / n:.2f}'))


class BM25Test(parameterized.TestCase):

  def test_scores_match_brute_force(self):
    cat = cat_lib.Catalogue(300, 2)
    docs = [bm25.terms(p.title + ' ' + ' '.join(p.attributes))
            for p in map(cat.product, range(300))]
    rng = np.random.default_rng(0)
    queries = [cat.product(int(i)).title for i in rng.integers(300, size=3)]
    queries += ['gluten free green tea', 'black black sneaker', 'no such words']
    for query in queries:
      terms = [t for t in bm25.terms(query) if any(t in d for d in docs)]
      ids = np.array([cat_lib._TERM_ID[t] for t in terms], np.int64)
      np.testing.assert_allclose(cat.index.scores(ids), _reference_bm25(docs, terms),
                                 rtol=1e-12, atol=1e-12, err_msg=query)

  def test_ties_break_by_index(self):
    docs = [['x', 'y'], ['x'], ['x', 'y'], ['z'], ['x']]
    index = bm25.BM25(np.repeat(np.arange(5), [len(d) for d in docs]),
                      np.array([ord(t) - ord('x') for d in docs for t in d]), 5, 3)
    x = np.array([0])
    np.testing.assert_array_equal(index.top_k(x, 10), [1, 4, 0, 2])
    np.testing.assert_array_equal(index.top_k(x, 3), [1, 4, 0])
    np.testing.assert_array_equal(index.top_k(np.array([2]), 10), [3])
    self.assertEqual(index.top_k(np.zeros(0, np.int64), 10).size, 0)

  def test_title_query_ranks_its_product_at_the_top(self):
    cat = cat_lib.load_catalogue(1000, 0)
    ranks = []
    for i in range(0, 1000, 5):
      results = cat.search(cat.product(i).title)
      ranks.append(int(np.flatnonzero(results == i)[0]))
    self.assertLess(max(ranks), 5)
    self.assertGreater(np.mean(np.array(ranks) == 0), 0.95)

  def test_rejects_bad_postings(self):
    with self.assertRaisesRegex(ValueError, 'doc_ids'):
      bm25.BM25(np.array([0, 5]), np.array([0, 0]), 3, 1)
    with self.assertRaisesRegex(ValueError, 'k1'):
      bm25.BM25(np.array([0]), np.array([0]), 1, 1, k1=-1.0)


class ShopEnvTest(parameterized.TestCase):

  @parameterized.parameters('shop-small', 'shop')
  def test_oracle_always_buys_a_perfect_product(self, name):
    env = envs.make(name)
    self.assertEqual(env.max_steps, 15)
    for run in _play(env, _SEEDS, _oracle):
      self.assertTrue(run[-1].done and run[-1].won)
      self.assertEqual(run[-1].reward, 1.0)
      self.assertTrue(all(ts.valid for ts in run))
      self.assertLessEqual(len(run) - 1, env.max_steps)
      self.assertEqual([ts.reward for ts in run[:-1]], [0.0] * (len(run) - 1))

  @pytest.mark.slow
  def test_oracle_on_a_100k_catalogue(self):
    env = env_lib.ShopEnv('full', num_products=100_000)
    for run in _play(env, _SEEDS, _oracle):
      self.assertTrue(run[-1].won)

  def test_same_seeds_and_actions_give_identical_timesteps(self):
    def noisy(seed):
      return _noisy_oracle(0.5, np.random.default_rng(seed))
    seeds = _SEEDS[:40] * 2
    first = _play(env_lib.ShopEnv('small'), seeds, noisy(1))
    self.assertEqual(first, _play(env_lib.ShopEnv('small'), seeds, noisy(1)))
    self.assertNotEqual(first, _play(env_lib.ShopEnv('small'), seeds, noisy(2)))

  def test_search_page_and_key_exclude_the_instruction(self):
    env = env_lib.ShopEnv('small')
    a, b = env.reset(_SEEDS[:2])
    self.assertNotEqual(a.task, b.task)
    self.assertEqual(a.state_key, b.state_key)
    self.assertEqual(a.observation, 'WebShop [SEP] Search')
    self.assertEqual(a.admissible, ('search[...]',))
    self.assertEqual(a.state_key, 'WebShop [SEP] Search\nsearch[...]')
    results = env.step([env.oracle_actions()[0], None])[0]
    self.assertEqual(results.state_key,
                     '\n'.join((results.observation, *results.admissible)))
    self.assertNotIn(a.task, results.state_key)

  def test_invalid_actions_change_nothing(self):
    env = env_lib.ShopEnv('small')
    start = env.reset([5])[0]
    results = env.step(env.oracle_actions())[0]
    bad_actions = [
        (start, ['click[buy now]', 'search[unclosed', 'buy it', 'searches[shoes]']),
        (results, ['search[shoes]', 'click[B0-00-00-00]', 'click[buy now]',
                   'click[back to searc]', 'click [back to search]']),
    ]
    for before, actions in bad_actions:
      env.reset([5])
      if before is results:
        env.step(env.oracle_actions())
      for action in actions:
        ts = env.step([action])[0]
        self.assertFalse(ts.valid, action)
        self.assertEqual(ts.observation, f'Nothing happens. [SEP] {before.observation}')
        self.assertEqual((ts.state_key, ts.admissible), (before.state_key, before.admissible))
        self.assertEqual((ts.reward, ts.done, ts.won), (0.0, False, False))
      self.assertTrue(env.step(env.oracle_actions())[0].valid)  # still playable

  def test_search_with_no_match(self):
    env = env_lib.ShopEnv('small')
    env.reset([0])
    ts = env.step(['search[zzz qqq]'])[0]
    self.assertTrue(ts.valid)
    self.assertEqual(ts.observation, 'Back to Search [SEP] Page 1 (Total results: 0)')
    self.assertEqual(ts.admissible, (env_lib.BACK,))

  def test_pagination_item_pages_and_back(self):
    env = env_lib.ShopEnv('small')
    start = env.reset([3])[0]
    page1 = env.step(['search[cotton t-shirt hoodie]'])[0]
    results = env.catalogue.search('cotton t-shirt hoodie')
    self.assertLen(results, 50)
    self.assertIn('Page 1 (Total results: 50)', page1.observation)
    self.assertIn(env_lib.NEXT, page1.admissible)
    self.assertNotIn(env_lib.PREV, page1.admissible)
    pages = [page1]
    for _ in range(4):
      pages.append(env.step([env_lib.NEXT])[0])
    self.assertNotIn(env_lib.NEXT, pages[-1].admissible)
    self.assertIn(env_lib.PREV, pages[-1].admissible)
    shown = [a for p in pages for a in re.findall(r'B0(?:-[0-9A-F]{2}){3}', p.observation)]
    self.assertEqual(shown, [env.catalogue.product(i).asin for i in results])
    self.assertEqual(env.step([env_lib.PREV])[0].state_key, pages[3].state_key)

    product = env.catalogue.product(results[31])
    item = env.step([f'click[{product.asin}]'])[0]
    self.assertIn(f'{product.title} [SEP] Price: ', item.observation)
    self.assertNotIn('Selected', item.observation)
    (dim, values), *_ = product.options
    chosen = env.step([f'click[{values[1]}]'])[0]
    self.assertIn(f'Selected: {dim}: {values[1]}', chosen.observation)
    self.assertNotEqual(chosen.state_key, item.state_key)
    features = env.step([env_lib.FEATURES])[0]
    self.assertEqual(features.observation.split(' [SEP] ')[2:], list(product.attributes))
    self.assertEqual(env.step([env_lib.PREV])[0].state_key, chosen.state_key)
    description = env.step([env_lib.DESCRIPTION])[0]
    self.assertIn(product.brand, description.observation)
    env.step([env_lib.PREV])
    self.assertEqual(env.step([env_lib.PREV])[0].state_key, pages[3].state_key)
    item_again = env.step([f'click[{product.asin}]'])[0]
    self.assertEqual(item_again.state_key, item.state_key)   # selection cleared
    self.assertEqual(env.step([env_lib.BACK])[0].state_key, start.state_key)

  def test_random_admissible_actions_are_valid(self):
    env = env_lib.ShopEnv('small')
    rng = np.random.default_rng(0)
    for run in _play(env, _SEEDS[:50], _noisy_oracle(1.0, rng)):
      self.assertTrue(all(ts.valid for ts in run))

  def test_actions_ignore_case_and_spacing_as_in_household(self):
    env = env_lib.ShopEnv('small')
    env.reset([5])
    oracle = env.oracle_actions()[0]                      # a search
    expected = env.step([oracle])[0]
    env.reset([5])
    shouted = env.step(['  ' + oracle.upper().replace(' ', '   ') + ' '])[0]
    self.assertTrue(shouted.valid)
    self.assertEqual(shouted.state_key, expected.state_key)
    asin = next(a for a in shouted.admissible if a.startswith('click[B0'))
    item = env.step([asin.lower()])[0]                    # ASINs are upper case
    self.assertTrue(item.valid)
    self.assertIn(env_lib.BUY, item.admissible)           # on the item page
    back = env.step(['Click[Back To  Search]'])[0]
    self.assertTrue(back.valid)
    self.assertEqual(back.admissible, (env_lib.SEARCH,))

  @parameterized.parameters((3,), (1.5,), (b'click[buy now]',), (('search[x]',),), (['a'],))
  def test_a_non_string_action_is_a_value_error(self, action):
    env = env_lib.ShopEnv('small')
    env.reset([5, 6])
    with self.assertRaisesRegex(ValueError, r'actions\[1\] must be a str or None; got'):
      env.step([None, action])

  def test_vocabulary_covers_every_written_text(self):
    env = env_lib.ShopEnv('small')
    vocab = set(env.vocabulary())
    self.assertLess(len(vocab), 1500)
    rng = np.random.default_rng(0)
    runs = _play(env, _SEEDS[:100], _noisy_oracle(0.5, rng))
    runs += _play(env, _SEEDS[:100], _oracle)
    for ts in (ts for run in runs for ts in run):
      for text in (ts.observation, ts.task, ts.state_key, *ts.admissible):
        self.assertContainsSubset(base.split_words(text), vocab, text)

  def test_rejects_bad_input(self):
    with self.assertRaisesRegex(ValueError, 'preset'):
      env_lib.ShopEnv('tiny')
    with self.assertRaisesRegex(ValueError, 'num_products'):
      env_lib.ShopEnv('small', num_products=0)
    with self.assertRaisesRegex(ValueError, 'catalogue seed'):
      env_lib.ShopEnv('small', catalogue_seed=-1)
    env = env_lib.ShopEnv('small')
    with self.assertRaisesRegex(ValueError, 'task seeds'):
      env.reset([-1])
    env.reset([0, 1])
    with self.assertRaisesRegex(ValueError, 'one entry per instance'):
      env.step(['search[x]'])
    self.assertEqual(env.step([None, 'search[x]'])[0], None)
    while (actions := env.oracle_actions())[0] is not None:
      env.step([actions[0], None])
    with self.assertRaisesRegex(ValueError, 'instance 0 is done'):
      env.step(['click[buy now]', None])


if __name__ == '__main__':
  absltest.main()
