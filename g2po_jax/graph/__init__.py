"""Host side of graph credit: state hashing and padded graph arrays (numpy).

Never imports jax, so environments and data pipelines can use it freely.
"""

from g2po_jax.graph.builder import Graph, bucket_size, build_graph, dense_ids
from g2po_jax.graph.hashing import hash_tokens, mix, text_key, text_keys
from g2po_jax.graph.matching import (MATCHINGS, METRICS, Matcher, difflib_keys, exact_keys,
                                     make_matcher, make_normalizer, near_keys)
from g2po_jax.graph.stats import graph_stats, matching_stats

__all__ = ['Graph', 'MATCHINGS', 'METRICS', 'Matcher', 'bucket_size', 'build_graph', 'dense_ids',
           'difflib_keys', 'exact_keys', 'graph_stats', 'hash_tokens', 'make_matcher',
           'make_normalizer', 'matching_stats', 'mix', 'near_keys', 'text_key', 'text_keys']
