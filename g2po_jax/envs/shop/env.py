"""ShopEnv: a WebShop-like shopping website behind the BatchEnv API. Host only.

Pages are rendered as text in WebShop's style, elements joined by ' [SEP] '.
Unlike WebShop, the instruction is never part of a page (it is
`TimeStep.task`) and item pages have no Rating or Reviews.

  search       WebShop [SEP] Search
  results      Back to Search [SEP] Page 2 (Total results: 50) [SEP] < Prev
               [SEP] Next > [SEP] B0-3F-A7-1C [SEP] <title> [SEP] $23.99 [SEP] ...
               (ten results a page, of the top 50 of the search; '< Prev' only
               after page 1, 'Next >' only if more results follow)
  item         Back to Search [SEP] < Prev [SEP] color [SEP] black [SEP] navy blue
               [SEP] size [SEP] small [SEP] large [SEP] Selected: color: black
               [SEP] <title> [SEP] Price: $23.99 [SEP] Description [SEP] Features
               [SEP] Buy Now
               ('Selected: ...' lists the option values clicked so far, in
               dimension order, and is absent before the first click)
  description  Back to Search [SEP] < Prev [SEP] this <category> by <brand>:
               <attribute>, <attribute>.
  features     Back to Search [SEP] < Prev [SEP] <attribute> [SEP] <attribute> ...
  done         Thank you for shopping with us! [SEP] Purchased [SEP] <asin>
               [SEP] Your score (min 0.0, max 1.0) [SEP] 0.75

Actions. On the search page the one admissible entry is the literal
'search[...]': any 'search[<free text>]' is valid there and ranks the
catalogue by BM25 over titles and attributes. Elsewhere the admissible actions
are the page's buttons: 'click[back to search]', 'click[< prev]',
'click[next >]', 'click[<asin>]', 'click[<option value>]',
'click[description]', 'click[features]', 'click[buy now]'. Actions are read
as in the household world (`base.normalize_action`): case and runs of
whitespace do not matter, so 'Click[Buy  Now]' is 'click[buy now]' and a
search query is lower-cased. Entering an item clears its option selection; '< Prev' from
description/features returns to the item with its selection, from an item to
the results page it came from.

An inadmissible action is a step with valid=False that changes nothing: the
observation is 'Nothing happens. [SEP] ' followed by the unchanged page, and
the state key stays the same.

'click[buy now]' ends the episode with reward `catalogue.purchase_reward`
(won iff it is 1.0); every other step has reward 0.

State key (spec section 12): the page text, a newline, and the admissible
actions joined by newlines. Pages never show the query or the instruction,
so searches that return the same results reach the same state.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from g2po_jax.envs import base
from g2po_jax.envs.shop import catalogue as cat_lib

SEP = ' [SEP] '
SEARCH = 'search[...]'
BACK = 'click[back to search]'
PREV = 'click[< prev]'
NEXT = 'click[next >]'
DESCRIPTION = 'click[description]'
FEATURES = 'click[features]'
BUY = 'click[buy now]'
NOTHING = 'Nothing happens.'

_SEARCH_PAGE = f'WebShop{SEP}Search'
_SEARCH_ACTION = re.compile(r'search\[(.*)\]', re.DOTALL)
_PAGE_WORDS = (  # fixed page texts, for the vocabulary
    _SEARCH_PAGE, 'Back to Search < Prev Next > Page (Total results: )',
    'Selected: Price: Description Features Buy Now this by',
    'Thank you for shopping with us! Purchased Your score (min 0.0, max 1.0)',
    NOTHING, SEP, SEARCH, BACK, PREV, NEXT, DESCRIPTION, FEATURES, BUY)

_PRESETS = {
    'small': dict(num_products=1_000, catalogue_seed=0),
    'full': dict(num_products=10_000, catalogue_seed=0),
}


@dataclasses.dataclass
class _Session:
  """One instance's browser state."""
  goal: cat_lib.Goal
  page: str = 'search'   # search | results | item | description | features | done
  results: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
  page_no: int = 0       # 0-based results page
  item: cat_lib.Product | None = None
  selected: dict[str, str] = dataclasses.field(default_factory=dict)
  reward: float = 0.0    # set once, by buy now
  # What `ShopEnv._refresh` last rendered: the page, its actions, its state key.
  text: str = ''
  admissible: tuple[str, ...] = ()
  key: str = ''


class ShopEnv(base.BatchEnv):
  """A WebShop-like web shop over a seeded catalogue (see the module doc).

  All instances share one catalogue, fixed by (num_products, catalogue_seed)
  and built once per process; the task seed picks the target product and the
  instruction.
  """

  name = 'shop'
  max_steps = 15

  def __init__(self, preset: str = 'small', num_products: int | None = None,
               catalogue_seed: int | None = None):
    """Builds (or reuses) the catalogue.

    Args:
      preset: 'small' (1k products) or 'full' (10k products).
      num_products: overrides the preset's catalogue size, in [1, 1e6].
      catalogue_seed: overrides the preset's catalogue seed, >= 0.
    """
    if preset not in _PRESETS:
      raise ValueError(f'preset must be one of {sorted(_PRESETS)}; got {preset!r}.')
    config = dict(_PRESETS[preset])
    if num_products is not None:
      config['num_products'] = num_products
    if catalogue_seed is not None:
      config['catalogue_seed'] = catalogue_seed
    self.catalogue = cat_lib.load_catalogue(config['num_products'], config['catalogue_seed'])
    self._sessions: list[_Session] = []

  @property
  def goals(self) -> list[cat_lib.Goal]:
    """The goal of each instance of the last reset."""
    return [s.goal for s in self._sessions]

  def reset(self, seeds: Sequence[int]) -> list[base.TimeStep]:
    goals = {}
    for seed in seeds:
      if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'task seeds must be non-negative ints; got {seed!r}.')
      if seed not in goals:
        goals[seed] = cat_lib.make_goal(self.catalogue, int(seed))
    self._sessions = [_Session(goal=goals[seed]) for seed in seeds]
    for s in self._sessions:
      self._refresh(s)
    return [self._timestep(s, valid=True) for s in self._sessions]

  def step(self, actions: Sequence[str | None]) -> list[base.TimeStep | None]:
    if len(actions) != len(self._sessions):
      raise ValueError(f'actions must have one entry per instance '
                       f'({len(self._sessions)}); got {len(actions)}.')
    out = []
    for i, (s, action) in enumerate(zip(self._sessions, actions)):
      if action is None:
        out.append(None)
        continue
      if not isinstance(action, str):
        raise ValueError(f'actions[{i}] must be a str or None; got {action!r}.')
      if s.page == 'done':
        raise ValueError(f'instance {i} is done; pass None as its action.')
      if not self._apply(s, base.normalize_action(action)):
        out.append(self._timestep(s, valid=False))
        continue
      self._refresh(s)
      out.append(self._timestep(s, valid=True))
    return out

  def oracle_actions(self) -> list[str | None]:
    return [self._oracle(s) for s in self._sessions]

  def vocabulary(self) -> list[str]:
    units = set()
    for text in (*_PAGE_WORDS, *cat_lib.catalogue_texts()):
      units.update(base.split_words(text))
    return sorted(units)

  # -------------------------------------------------------------------------

  def _timestep(self, s: _Session, valid: bool) -> base.TimeStep:
    done = s.page == 'done'
    return base.TimeStep(
        observation=s.text if valid else f'{NOTHING}{SEP}{s.text}',
        task=s.goal.instruction, admissible=s.admissible,
        reward=s.reward, done=done, won=s.reward == 1.0, valid=valid,
        state_key=s.key)

  def _apply(self, s: _Session, action: str) -> bool:
    """Moves `s` by a normalized `action`; False (and no change) if it is
    inadmissible."""
    if s.page == 'search':
      m = _SEARCH_ACTION.fullmatch(action)
      if m is None:
        return False
      s.results, s.page_no, s.page = self.catalogue.search(m.group(1)), 0, 'results'
      return True
    # Buttons keep their case (ASINs are upper case); match them normalized.
    action = {base.normalize_action(a): a for a in s.admissible}.get(action)
    if action is None:
      return False
    if action == BACK:
      s.page, s.results, s.item, s.selected = 'search', s.results[:0], None, {}
    elif action == PREV:
      if s.page == 'results':
        s.page_no -= 1
      else:
        s.page = 'results' if s.page == 'item' else 'item'
    elif action == NEXT:
      s.page_no += 1
    elif s.page == 'results':
      asin = action[len('click['):-1]
      shown = (self.catalogue.product(i) for i in self._shown(s))
      s.item, s.selected, s.page = next(p for p in shown if p.asin == asin), {}, 'item'
    elif action == DESCRIPTION:
      s.page = 'description'
    elif action == FEATURES:
      s.page = 'features'
    elif action == BUY:
      s.reward = cat_lib.purchase_reward(s.goal, s.item, s.selected)
      s.page = 'done'
    else:
      value = action[len('click['):-1]
      s.selected[next(d for d, values in s.item.options if value in values)] = value
    return True

  @staticmethod
  def _shown(s: _Session) -> np.ndarray:
    per = cat_lib.RESULTS_PER_PAGE
    return s.results[s.page_no * per:(s.page_no + 1) * per]

  def _refresh(self, s: _Session) -> None:
    """Renders the page of `s` and derives its state key."""
    s.text, s.admissible = self._render(s)
    s.key = '\n'.join((s.text, *s.admissible))

  def _render(self, s: _Session) -> tuple[str, tuple[str, ...]]:
    """The page text and its sorted admissible actions."""
    p = s.item
    if s.page == 'search':
      return _SEARCH_PAGE, (SEARCH,)
    if s.page == 'results':
      parts = ['Back to Search', f'Page {s.page_no + 1} (Total results: {len(s.results)})']
      buttons = [BACK]
      if s.page_no > 0:
        parts.append('< Prev')
        buttons.append(PREV)
      if (s.page_no + 1) * cat_lib.RESULTS_PER_PAGE < len(s.results):
        parts.append('Next >')
        buttons.append(NEXT)
      for product in map(self.catalogue.product, self._shown(s)):
        parts += [product.asin, product.title, cat_lib.format_price(product.price_cents)]
        buttons.append(f'click[{product.asin}]')
    elif s.page == 'item':
      parts, buttons = ['Back to Search', '< Prev'], [BACK, PREV, DESCRIPTION, FEATURES, BUY]
      for dim, values in p.options:
        parts += [dim, *values]
        buttons += [f'click[{v}]' for v in values]
      if s.selected:
        parts.append('Selected: ' + ', '.join(
            f'{dim}: {s.selected[dim]}' for dim, _ in p.options if dim in s.selected))
      parts += [p.title, f'Price: {cat_lib.format_price(p.price_cents)}',
                'Description', 'Features', 'Buy Now']
    elif s.page == 'description':
      about = f'this {p.category} by {p.brand}: {", ".join(p.attributes)}.'
      parts, buttons = ['Back to Search', '< Prev', about], [BACK, PREV]
    elif s.page == 'features':
      parts, buttons = ['Back to Search', '< Prev', *p.attributes], [BACK, PREV]
    else:
      parts, buttons = ['Thank you for shopping with us!', 'Purchased', p.asin,
                        'Your score (min 0.0, max 1.0)', f'{s.reward:.2f}'], []
    return SEP.join(parts), tuple(sorted(buttons))

  def _oracle(self, s: _Session) -> str | None:
    """The next step of a shortest perfect purchase from the current page."""
    goal = s.goal
    if s.page == 'done':
      return None
    if s.page == 'search':
      return f'search[{self.catalogue.product(goal.target).title}]'
    if s.page == 'results':
      # The current page first, then earlier pages, then later ones.
      per, n = cat_lib.RESULTS_PER_PAGE, len(s.results)
      lo, hi = s.page_no * per, min((s.page_no + 1) * per, n)
      for j in (*range(lo, hi), *range(lo), *range(hi, n)):
        product = self.catalogue.product(s.results[j])
        if cat_lib.can_satisfy(goal, product):
          return f'click[{product.asin}]' if j >= lo and j < hi else (PREV if j < lo else NEXT)
      return BACK
    if s.page == 'item' and cat_lib.can_satisfy(goal, s.item):
      missing = [v for dim, v in goal.options if s.selected.get(dim) != v]
      return f'click[{missing[0]}]' if missing else BUY
    return PREV
