"""Okapi BM25 over a bag-of-words corpus, vectorized with numpy. Host only.

BM25 is a sum over query terms of a per-(term, document) weight, so the index
stores that weight once per posting, grouped by term (CSR over terms). A query
gathers the postings of its terms and sums them per document with one
`np.bincount`: no Python loop over documents.
"""

from __future__ import annotations

import re

import numpy as np

_TERM = re.compile(r'[a-z0-9]+')


def terms(text: str) -> list[str]:
  """Index terms of a text: lowercased runs of letters and digits.

  'Slim-Fit T-shirt, 2 pack' -> ['slim', 'fit', 't', 'shirt', '2', 'pack'].
  """
  return _TERM.findall(text.lower())


class BM25:
  """A BM25 index with inverted lists in CSR form.

    score(q, d) = sum over query terms t (with repetition) of
        idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

  The idf is Lucene's (always positive). k1 = 0.9, b = 0.4 are Pyserini's
  defaults, the engine the original WebShop used (Robertson & Zaragoza 2009,
  "The Probabilistic Relevance Framework: BM25 and Beyond").
  """

  def __init__(self, doc_ids: np.ndarray, term_ids: np.ndarray, num_docs: int,
               num_terms: int, k1: float = 0.9, b: float = 0.4):
    """Builds the index from the corpus' tokens.

    Args:
      doc_ids: [n] int. Document of each token, in [0, num_docs).
      term_ids: [n] int. Term of each token, in [0, num_terms).
      num_docs: N, the number of documents (empty ones allowed).
      num_terms: size of the term vocabulary.
      k1: term-frequency saturation, >= 0.
      b: document-length normalization, in [0, 1].
    """
    doc_ids = np.asarray(doc_ids, np.int64)
    term_ids = np.asarray(term_ids, np.int64)
    if doc_ids.shape != term_ids.shape or doc_ids.ndim != 1:
      raise ValueError(f'doc_ids and term_ids must be equal-length vectors; got '
                       f'shapes {doc_ids.shape} and {term_ids.shape}.')
    if doc_ids.size and not (0 <= doc_ids.min() and doc_ids.max() < num_docs):
      raise ValueError(f'doc_ids must lie in [0, {num_docs}).')
    if term_ids.size and not (0 <= term_ids.min() and term_ids.max() < num_terms):
      raise ValueError(f'term_ids must lie in [0, {num_terms}).')
    if k1 < 0 or not 0 <= b <= 1:
      raise ValueError(f'need k1 >= 0 and 0 <= b <= 1; got k1={k1}, b={b}.')
    self.num_docs = num_docs
    # One posting per distinct (term, doc); sorting by term makes the CSR.
    pair, tf = np.unique(term_ids * num_docs + doc_ids, return_counts=True)
    term, self.doc = np.divmod(pair, num_docs)                 # [nnz]
    self.ptr = np.searchsorted(term, np.arange(num_terms + 1))  # [V + 1]
    df = np.diff(self.ptr)
    idf = np.log1p((num_docs - df + 0.5) / (df + 0.5))          # [V]
    length = np.bincount(doc_ids, minlength=num_docs)           # [N]
    norm = k1 * (1 - b + b * length / max(length.mean(), 1e-12))
    self.weight = idf[term] * tf * (k1 + 1) / (tf + norm[self.doc])  # [nnz]

  def scores(self, query: np.ndarray) -> np.ndarray:
    """BM25 score of every document.

    Args:
      query: [q] int term ids (repeats count again; out of range: error).
    Returns:
      [num_docs] float64 scores; 0 for documents sharing no term.
    """
    spans = [np.arange(self.ptr[t], self.ptr[t + 1]) for t in query]
    at = np.concatenate(spans) if spans else np.zeros(0, np.int64)
    return np.bincount(self.doc[at], self.weight[at], minlength=self.num_docs)

  def top_k(self, query: np.ndarray, k: int) -> np.ndarray:
    """The k best documents with a positive score, best first.

    Ties break by document index, so results are deterministic.

    Args:
      query: [q] int term ids.
      k: number of results wanted, >= 1.
    Returns:
      [min(k, number of matching documents)] int64 document indices.
    """
    s = self.scores(query)
    hit = np.flatnonzero(s > 0)                   # ascending index
    if hit.size > k:
      # Keep everything tied with the k-th score, then a stable sort ranks
      # equal scores by index.
      kth = np.partition(s[hit], hit.size - k)[hit.size - k]
      hit = hit[s[hit] >= kth]
    return hit[np.argsort(-s[hit], kind='stable')[:k]]
