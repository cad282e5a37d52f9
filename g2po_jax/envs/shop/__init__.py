"""A WebShop-like shopping environment over a seeded, offline catalogue.

  env.py        ShopEnv: pages, actions, state keys, the oracle (page formats
                are documented there).
  catalogue.py  the procedurally generated catalogue, tasks and the reward.
  bm25.py       the vectorized BM25 search index.
"""

from g2po_jax.envs.shop.catalogue import (
    Catalogue, Goal, Product, can_satisfy, load_catalogue, make_goal, purchase_reward)
from g2po_jax.envs.shop.env import ShopEnv

__all__ = ['Catalogue', 'Goal', 'Product', 'ShopEnv', 'can_satisfy', 'load_catalogue',
           'make_goal', 'purchase_reward']
