"""Host side of graph credit: state hashing and padded graph arrays (numpy).

Never imports jax, so environments and data pipelines can use it freely.
"""

from g2po_jax.graph.builder import Graph, bucket_size, build_graph, dense_ids
from g2po_jax.graph.hashing import hash_strings, hash_tokens, mix
from g2po_jax.graph.stats import graph_stats

__all__ = ['Graph', 'bucket_size', 'build_graph', 'dense_ids', 'graph_stats',
           'hash_strings', 'hash_tokens', 'mix']
