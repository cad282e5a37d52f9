"""The shop's seeded product catalogue, its tasks and the purchase reward.

Host only (numpy). A catalogue is a pure function of (num_products, seed): every
product is sampled as integer ids into the closed word tables below, so 100k
products are drawn with a handful of vectorized numpy calls and rendered to text
only when a page shows them.

A product has a category (its product type, e.g. 'running shoe'), a brand, 2-5
attribute phrases from its department's pool ('water resistant', 'non slip'),
one or two option dimensions with the values it is sold in (color: black, navy
blue; size: small, large), a price and an ASIN-style id 'B0-3F-A7-1C' (three hex
pairs, so a word-level tokenizer needs only 257 id units). Its title is
'<brand> <1-2 of its attributes> <category> [<suffix>]'; the remaining
attributes show only on its features and description pages.

A task (`make_goal`) picks a target product and asks for its category, 1-3 of
its attributes, one offered value per option dimension and a price bound above
its price, so a perfect purchase always exists.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import numpy as np

from g2po_jax.envs.shop import bm25

MAX_RESULTS = 50      # WebShop's search engine returns the top 50
RESULTS_PER_PAGE = 10
_MIN_ATTRS, _MAX_ATTRS = 2, 5
_MAX_GOAL_ATTRS = 3
_MAX_OFFERED = 6      # option values a product offers per dimension
_MAX_PRODUCTS = 1_000_000

# ---------------------------------------------------------------------------
# Word tables
# ---------------------------------------------------------------------------

# Option dimension pools: key -> (dimension label, values in display order).
# Within one product type the values of its dimensions are disjoint, so a
# click[value] names one button.
_POOLS = {
    'apparel_color': ('color', (
        'black', 'white', 'navy blue', 'grey', 'red', 'olive green', 'beige',
        'pink', 'brown', 'royal blue', 'burgundy', 'khaki')),
    'apparel_size': ('size', (
        'x-small', 'small', 'medium', 'large', 'x-large', 'xx-large')),
    'shoe_size': ('size', (
        '6', '6.5', '7', '7.5', '8', '8.5', '9', '9.5', '10', '10.5', '11', '12')),
    'scent': ('scent', (
        'lavender', 'vanilla', 'citrus', 'coconut', 'rose', 'unscented',
        'eucalyptus mint', 'sandalwood')),
    'beauty_size': ('size', ('1 fl oz', '2 fl oz', '4 fl oz', '8 fl oz', '16 fl oz')),
    'makeup_color': ('color', (
        'nude', 'ruby red', 'coral', 'plum', 'mauve', 'berry', 'rose pink')),
    'tech_color': ('color', (
        'black', 'white', 'silver', 'space grey', 'midnight blue', 'rose gold')),
    'cable_length': ('length', ('3 feet', '6 feet', '10 feet', '15 feet')),
    'storage': ('capacity', ('32gb', '64gb', '128gb', '256gb')),
    'home_color': ('color', (
        'white', 'black', 'light grey', 'dark grey', 'natural wood', 'walnut',
        'navy blue', 'sage green', 'cream')),
    'bed_size': ('size', ('twin', 'full', 'queen', 'king', 'california king')),
    'rug_size': ('size', ('2x3 feet', '4x6 feet', '5x7 feet', '8x10 feet')),
    'pillow_size': ('size', ('16x16 inch', '18x18 inch', '20x20 inch', '24x24 inch')),
    'flavor': ('flavor', (
        'original', 'vanilla', 'chocolate', 'sea salt', 'honey', 'spicy', 'mint',
        'caramel', 'strawberry', 'lemon')),
    'pack': ('size', ('pack of 1', 'pack of 2', 'pack of 4', 'pack of 6', 'pack of 12')),
    'weight': ('size', ('8 ounce', '12 ounce', '16 ounce', '32 ounce')),
}


@dataclasses.dataclass(frozen=True)
class _Department:
  attributes: tuple[str, ...]
  suffixes: tuple[str, ...]
  price_range: tuple[int, int]                   # dollars, log-uniform
  types: tuple[tuple[str, tuple[str, ...]], ...]  # (category, option pools)


_DEPARTMENTS = (
    _Department(  # fashion
        attributes=(
            'machine wash', 'hand wash', 'cotton', 'polyester', 'wool blend',
            'lightweight', 'slim fit', 'relaxed fit', 'water resistant',
            'breathable', 'quick dry', 'long sleeve', 'short sleeve', 'non slip',
            'rubber sole', 'memory foam', 'stretch fabric', 'zipper closure',
            'high waist', 'button closure', 'vintage style', 'moisture wicking'),
        suffixes=('for men', 'for women', 'unisex'),
        price_range=(8, 120),
        types=(
            ('t-shirt', ('apparel_color', 'apparel_size')),
            ('hoodie', ('apparel_color', 'apparel_size')),
            ('running shoe', ('apparel_color', 'shoe_size')),
            ('sneaker', ('apparel_color', 'shoe_size')),
            ('dress', ('apparel_color', 'apparel_size')),
            ('jeans', ('apparel_color', 'apparel_size')),
            ('rain jacket', ('apparel_color', 'apparel_size')),
            ('crew sock', ('apparel_color', 'apparel_size')),
            ('backpack', ('apparel_color',)),
            ('baseball cap', ('apparel_color',)))),
    _Department(  # beauty
        attributes=(
            'paraben free', 'cruelty free', 'long lasting', 'travel size',
            'sulfate free', 'natural ingredients', 'sensitive skin', 'dry skin',
            'oil free', 'fragrance free', 'vegan', 'easy to use', 'alcohol free',
            'hyaluronic acid', 'vitamin c', 'anti aging', 'organic', 'waterproof',
            'dermatologist tested', 'quick drying'),
        suffixes=('for women', 'for men', 'for all skin types'),
        price_range=(4, 80),
        types=(
            ('shampoo', ('scent', 'beauty_size')),
            ('conditioner', ('scent', 'beauty_size')),
            ('body wash', ('scent', 'beauty_size')),
            ('perfume', ('scent', 'beauty_size')),
            ('face moisturizer', ('beauty_size',)),
            ('sunscreen', ('beauty_size',)),
            ('lipstick', ('makeup_color',)),
            ('nail polish', ('makeup_color',)),
            ('makeup brush set', ('makeup_color',)),
            ('hair dryer', ('tech_color',)))),
    _Department(  # electronics
        attributes=(
            'fast charging', 'noise cancelling', 'water resistant',
            'long battery life', 'high speed', 'easy to carry', 'usb c',
            'bluetooth 5', 'hands free', 'shockproof', 'dual band', 'plug and play',
            'high definition', 'ultra slim', 'ergonomic design', 'heavy duty',
            'lightweight', 'wireless charging', 'backlit', 'touch control'),
        suffixes=('2024 model', 'with carrying case', 'for home and office'),
        price_range=(6, 300),
        types=(
            ('wireless earbuds', ('tech_color',)),
            ('bluetooth speaker', ('tech_color',)),
            ('phone case', ('tech_color',)),
            ('usb c cable', ('tech_color', 'cable_length')),
            ('hdmi cable', ('cable_length',)),
            ('power bank', ('tech_color',)),
            ('smart watch', ('tech_color',)),
            ('wireless mouse', ('tech_color',)),
            ('mechanical keyboard', ('tech_color',)),
            ('memory card', ('storage',)),
            ('tablet', ('tech_color', 'storage')),
            ('webcam', ('tech_color',)))),
    _Department(  # home
        attributes=(
            'easy assembly', 'solid wood', 'mid century', 'modern design',
            'farmhouse style', 'easy to clean', 'non slip', 'machine washable',
            'storage space', 'space saving', 'metal frame', 'microfiber',
            'heavy duty', 'eco friendly', 'dimmable', 'wall mounted', 'living room',
            'bedroom', 'soft touch', 'fade resistant'),
        suffixes=('for living room', 'for bedroom', 'for home office'),
        price_range=(10, 400),
        types=(
            ('coffee table', ('home_color',)),
            ('office chair', ('home_color',)),
            ('bookshelf', ('home_color',)),
            ('bed sheet set', ('home_color', 'bed_size')),
            ('comforter', ('home_color', 'bed_size')),
            ('area rug', ('home_color', 'rug_size')),
            ('throw pillow cover', ('home_color', 'pillow_size')),
            ('desk lamp', ('home_color',)),
            ('shower curtain', ('home_color',)),
            ('storage basket', ('home_color',)),
            ('wall clock', ('home_color',)),
            ('nightstand', ('home_color',)))),
    _Department(  # grocery
        attributes=(
            'gluten free', 'sugar free', 'non gmo', 'low calorie', 'keto friendly',
            'high protein', 'usda organic', 'individually wrapped', 'kosher',
            'dairy free', 'low sodium', 'plant based', 'natural flavors',
            'ready to eat', 'caffeine free', 'grass fed', 'nut free',
            'resealable bag', 'no artificial colors', 'fair trade'),
        suffixes=('value pack', 'family size', 'snack size'),
        price_range=(3, 50),
        types=(
            ('green tea', ('flavor', 'pack')),
            ('coffee beans', ('flavor', 'weight')),
            ('protein bar', ('flavor', 'pack')),
            ('dark chocolate', ('flavor', 'pack')),
            ('trail mix', ('flavor', 'weight')),
            ('olive oil', ('pack',)),
            ('hot sauce', ('flavor', 'pack')),
            ('granola', ('flavor', 'weight')),
            ('beef jerky', ('flavor', 'weight')),
            ('sparkling water', ('flavor', 'pack')),
            ('peanut butter', ('flavor', 'weight')),
            ('gummy candy', ('flavor', 'pack')))),
)

_BRANDS = (
    'nordale', 'veltra', 'brightmoor', 'kestrel', 'lumio', 'orbis', 'tavora',
    'zenfield', 'maplewood', 'corvin', 'halden', 'sunpeak', 'ridgeway', 'aurelle',
    'quinta', 'bexley', 'solace', 'ironpine', 'velmont', 'pebbleton', 'arlo',
    'finch', 'marlow', 'tidewell')

_OPENERS = ('i need', 'i am looking for', 'i want to buy', 'find me')

# Flat tables: every phrase gets an int id; products are rows of ids.
_CATEGORIES = tuple(t for d in _DEPARTMENTS for t, _ in d.types)
_CATEGORY_DEPT = np.array([i for i, d in enumerate(_DEPARTMENTS) for _ in d.types])
_ATTRIBUTES = tuple(dict.fromkeys(a for d in _DEPARTMENTS for a in d.attributes))
_SUFFIXES = tuple(dict.fromkeys(s for d in _DEPARTMENTS for s in d.suffixes))
_POOL_KEYS = tuple(_POOLS)
_MAX_DIMS = max(len(p) for d in _DEPARTMENTS for _, p in d.types)


def _padded(rows) -> np.ndarray:
  """Ragged int rows -> [len(rows), max_len] int64, padded with -1."""
  out = np.full((len(rows), max(map(len, rows))), -1, np.int64)
  for i, row in enumerate(rows):
    out[i, :len(row)] = row
  return out


_DEPT_ATTRS = _padded([[_ATTRIBUTES.index(a) for a in d.attributes] for d in _DEPARTMENTS])
_DEPT_NUM_ATTRS = (_DEPT_ATTRS >= 0).sum(1)
_DEPT_SUFFIXES = _padded([[_SUFFIXES.index(s) for s in d.suffixes] for d in _DEPARTMENTS])
_DEPT_PRICES = np.array([d.price_range for d in _DEPARTMENTS], np.float64)
_CATEGORY_POOL_KEYS = tuple(pools for d in _DEPARTMENTS for _, pools in d.types)
_CATEGORY_POOLS = np.array(  # [num_categories, _MAX_DIMS], -1 = no dimension
    [[_POOL_KEYS.index(p) for p in pools] + [-1] * (_MAX_DIMS - len(pools))
     for pools in _CATEGORY_POOL_KEYS])
_POOL_SIZES = np.array([len(_POOLS[k][1]) for k in _POOL_KEYS] + [0])  # [-1] -> 0

# Index phrases (brands, categories, attributes, suffixes) share one id space.
_PHRASES = _BRANDS + _CATEGORIES + _ATTRIBUTES + _SUFFIXES
_CAT0 = len(_BRANDS)
_ATTR0 = _CAT0 + len(_CATEGORIES)
_SUF0 = _ATTR0 + len(_ATTRIBUTES)
_TERMS = tuple(dict.fromkeys(t for p in _PHRASES for t in bm25.terms(p)))
_TERM_ID = {t: i for i, t in enumerate(_TERMS)}
_PHRASE_TERMS = [np.array([_TERM_ID[t] for t in bm25.terms(p)]) for p in _PHRASES]
_PHRASE_LEN = np.array([len(t) for t in _PHRASE_TERMS])
_PHRASE_START = np.concatenate([[0], np.cumsum(_PHRASE_LEN)[:-1]])
_PHRASE_TERM_IDS = np.concatenate(_PHRASE_TERMS)

_MAX_DOLLARS = int(_DEPT_PRICES.max()) + 30   # price bounds round up by <= 30


def format_price(cents: int) -> str:
  """2399 -> '$23.99'."""
  return f'${cents // 100}.{cents % 100:02d}'


def format_asin(code: int) -> str:
  """A 24-bit code -> 'B0-3F-A7-1C' (three hex pairs: few vocabulary units)."""
  return f'B0-{code >> 16:02X}-{(code >> 8) & 255:02X}-{code & 255:02X}'


def _joined(words) -> str:
  """('a',) -> 'a'; ('a', 'b', 'c') -> 'a, b and c'."""
  return words[0] if len(words) == 1 else f'{", ".join(words[:-1])} and {words[-1]}'


def catalogue_texts() -> list[str]:
  """Texts covering every word the catalogue and its tasks can write.

  Phrases, option labels and values, instruction templates, prices and id
  pieces; `base.split_words` of these gives the catalogue's vocabulary.
  """
  texts = [*_PHRASES, *_OPENERS, 'with , and price lower than .00 dollars']
  texts += [f'{label} : {v}' for label, values in _POOLS.values() for v in values]
  texts += [f'${d}' for d in range(_MAX_DOLLARS + 1)]
  texts += [f'{c:02d} {c:02X}' for c in range(256)]   # cents; hex pairs of ids
  return texts


# ---------------------------------------------------------------------------
# Products, goals, reward
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Product:
  """One product as pages show it.

  Attributes:
    asin: id shown on pages and clicked, e.g. 'B0-3F-A7-1C'.
    title: '<brand> <title attributes> <category> [<suffix>]'.
    category: the product type, e.g. 'running shoe'.
    brand: brand word.
    attributes: all its attribute phrases; the first ones are in the title.
    options: (dimension, offered values) per option dimension, in page order.
    price_cents: price in cents.
  """
  asin: str
  title: str
  category: str
  brand: str
  attributes: tuple[str, ...]
  options: tuple[tuple[str, tuple[str, ...]], ...]
  price_cents: int


@dataclasses.dataclass(frozen=True)
class Goal:
  """A purchase task.

  Attributes:
    instruction: the task text, e.g. 'i need lightweight running shoe with
      color: black, and size: 9, and price lower than 60.00 dollars'.
    category: the required product type.
    attributes: required attribute phrases (1-3).
    options: required (dimension, value) pairs, one per option dimension.
    max_price_cents: the price bound (a purchase at exactly this price is ok).
    target: index of the product the goal was drawn from (a perfect purchase).
  """
  instruction: str
  category: str
  attributes: tuple[str, ...]
  options: tuple[tuple[str, str], ...]
  max_price_cents: int
  target: int


def purchase_reward(goal: Goal, product: Product, selected: Mapping[str, str]) -> float:
  """WebShop-style score of buying `product` with options `selected`.

    r = [category matches] * (n_attrs_matched + n_options_matched + [price ok])
        / (len(goal.attributes) + len(goal.options) + 1)

  An attribute matches if the product has it; an option matches if the value
  selected for its dimension equals the goal's; the price is ok if
  price <= max_price. A wrong category scores 0 whatever else matches. r is
  exactly 1.0 only for a perfect purchase.

  Simplifies WebShop's reward (Yao et al. 2022, https://arxiv.org/abs/2207.01206,
  Eq. in section 3.1): exact phrase matching instead of fuzzy text matching,
  and an exact category gate instead of title/category similarity.
  """
  if product.category != goal.category:
    return 0.0
  n_attrs = sum(a in product.attributes for a in goal.attributes)
  n_options = sum(selected.get(dim) == value for dim, value in goal.options)
  price_ok = product.price_cents <= goal.max_price_cents
  return (n_attrs + n_options + price_ok) / (len(goal.attributes) + len(goal.options) + 1)


def can_satisfy(goal: Goal, product: Product) -> bool:
  """Whether some option selection makes buying `product` score 1.0."""
  offered = dict(product.options)
  return (product.category == goal.category
          and set(goal.attributes) <= set(product.attributes)
          and all(v in offered.get(dim, ()) for dim, v in goal.options)
          and product.price_cents <= goal.max_price_cents)


# ---------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------


def _distinct_draws(rng: np.random.Generator, pool_sizes: np.ndarray, k: int) -> np.ndarray:
  """[P, k] distinct positions per row, uniform in [0, pool_sizes[p]).

  Positions past a row's pool size (when k > pool size) come last; callers
  mask them out.
  """
  keys = rng.random((len(pool_sizes), max(int(pool_sizes.max()), k)))
  keys[np.arange(keys.shape[1]) >= pool_sizes[:, None]] = 2.0
  return np.argsort(keys, axis=1)[:, :k]


class Catalogue:
  """P products as int arrays plus their BM25 index over title and attributes.

  Attributes (ids index the word tables of this module; -1 = none):
    category: [P] product type ids.
    brand: [P] brand ids.
    attrs: [P, 5] attribute ids, 2-5 per product, padding last.
    num_title_attrs: [P] how many leading attributes the title shows (1 or 2).
    suffix: [P] title suffix ids ('for women'), -1 for none.
    option_masks: [P, 2] per option dimension, a bitmask over its value pool.
    price_cents: [P] prices.
    asin_code: [P] distinct 24-bit id codes (`format_asin`).
    index: the `bm25.BM25` index.
  """

  def __init__(self, num_products: int, seed: int):
    if not 1 <= num_products <= _MAX_PRODUCTS:
      raise ValueError(f'num_products must lie in [1, {_MAX_PRODUCTS}]; got {num_products}.')
    if seed < 0:
      raise ValueError(f'catalogue seed must be >= 0; got {seed}.')
    rng = np.random.default_rng(seed)
    n = self.num_products = num_products
    self.category = rng.integers(len(_CATEGORIES), size=n)      # [P]
    dept = _CATEGORY_DEPT[self.category]
    self.brand = rng.integers(len(_BRANDS), size=n)             # [P]
    num_attrs = rng.integers(_MIN_ATTRS, _MAX_ATTRS + 1, size=n)
    picks = _distinct_draws(rng, _DEPT_NUM_ATTRS[dept], _MAX_ATTRS)
    live = np.arange(_MAX_ATTRS) < num_attrs[:, None]
    self.attrs = np.where(live, _DEPT_ATTRS[dept[:, None], picks], -1)  # [P, A]
    self.num_title_attrs = rng.integers(1, 3, size=n)           # [P] 1 or 2
    suffix = _DEPT_SUFFIXES[dept, rng.integers(_DEPT_SUFFIXES.shape[1], size=n)]
    self.suffix = np.where(rng.random(n) < 0.5, suffix, -1)     # [P]
    # Options: per dimension, a bitmask over the pool's values (2-6 offered).
    pools = _CATEGORY_POOLS[self.category]                      # [P, D]
    self.option_masks = np.zeros(pools.shape, np.int64)         # [P, D]
    for d in range(_MAX_DIMS):
      size = _POOL_SIZES[pools[:, d]]
      count = 2 + (rng.random(n) * (np.minimum(size, _MAX_OFFERED) - 1)).astype(np.int64)
      picks = _distinct_draws(rng, size, _MAX_OFFERED)
      bits = np.where(np.arange(_MAX_OFFERED) < count[:, None], 1 << picks, 0)
      self.option_masks[:, d] = np.where(size > 0, bits.sum(1), 0)
    lo, hi = np.log(_DEPT_PRICES[dept]).T
    dollars = np.exp(lo + rng.random(n) * (hi - lo))
    self.price_cents = np.round(dollars * 100).astype(np.int64)  # [P]
    self.asin_code = rng.choice(1 << 24, size=n, replace=False)  # [P] distinct
    self.index = self._build_index()

  def _build_index(self) -> bm25.BM25:
    """Indexes each product's title phrases followed by all its attributes."""
    n = self.num_products
    title_attrs = np.where(
        np.arange(2) < self.num_title_attrs[:, None], self.attrs[:, :2], -1)
    doc = np.concatenate([                                         # [P, 5 + A]
        self.brand[:, None],
        np.where(title_attrs >= 0, _ATTR0 + title_attrs, -1),
        _CAT0 + self.category[:, None],
        np.where(self.suffix >= 0, _SUF0 + self.suffix, -1)[:, None],
        np.where(self.attrs >= 0, _ATTR0 + self.attrs, -1)], axis=1)
    phrase = doc[doc >= 0]                                         # row-major
    phrase_doc = np.repeat(np.arange(n), (doc >= 0).sum(1))
    lens = _PHRASE_LEN[phrase]
    offset = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    terms = _PHRASE_TERM_IDS[np.repeat(_PHRASE_START[phrase], lens) + offset]
    return bm25.BM25(np.repeat(phrase_doc, lens), terms, n, len(_TERMS))

  def product(self, i: int) -> Product:
    """Product `i` in text form."""
    category, brand, suffix = _CATEGORIES[self.category[i]], _BRANDS[self.brand[i]], ()
    if self.suffix[i] >= 0:
      suffix = (_SUFFIXES[self.suffix[i]],)
    attrs = tuple(_ATTRIBUTES[a] for a in self.attrs[i].tolist() if a >= 0)
    title = ' '.join((brand, *attrs[:self.num_title_attrs[i]], category, *suffix))
    options = tuple(
        (_POOLS[key][0], tuple(v for j, v in enumerate(_POOLS[key][1]) if mask >> j & 1))
        for key, mask in zip(_CATEGORY_POOL_KEYS[self.category[i]],
                             self.option_masks[i].tolist()))
    return Product(asin=format_asin(int(self.asin_code[i])), title=title,
                   category=category, brand=brand, attributes=attrs, options=options,
                   price_cents=int(self.price_cents[i]))

  def search(self, query: str, k: int = MAX_RESULTS) -> np.ndarray:
    """Top-k product indices for a free-text query (BM25; ties by index).

    Returns:
      [<= k] int64 indices of products with a positive score, best first.
      Query words outside the catalogue's terms match nothing.
    """
    ids = [_TERM_ID[t] for t in bm25.terms(query) if t in _TERM_ID]
    return self.index.top_k(np.array(ids, np.int64), k)


@functools.lru_cache(maxsize=4)
def load_catalogue(num_products: int, seed: int) -> Catalogue:
  """The catalogue for (num_products, seed), built once per process."""
  return Catalogue(num_products, seed)


def make_goal(catalogue: Catalogue, seed: int) -> Goal:
  """The task of `seed`: a target product and an instruction it satisfies."""
  rng = np.random.default_rng(seed)
  target = int(rng.integers(catalogue.num_products))
  p = catalogue.product(target)
  num = int(rng.integers(1, min(_MAX_GOAL_ATTRS, len(p.attributes)) + 1))
  keep = np.sort(rng.choice(len(p.attributes), size=num, replace=False))
  attributes = tuple(p.attributes[j] for j in keep)
  options = tuple((dim, values[rng.integers(len(values))]) for dim, values in p.options)
  dollars = (p.price_cents // 1000 + 1 + int(rng.integers(3))) * 10
  instruction = (
      f'{_OPENERS[rng.integers(len(_OPENERS))]} {_joined(attributes)} {p.category} '
      f'with {", and ".join(f"{d}: {v}" for d, v in options)}, '
      f'and price lower than {dollars}.00 dollars')
  return Goal(instruction=instruction, category=p.category, attributes=attributes,
              options=options, max_price_cents=dollars * 100, target=target)
