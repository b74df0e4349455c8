"""A small Okapi BM25 index in numpy: the keyword baseline and the negative miner.

Scoring follows Lucene's BM25 (idf = ln(1 + (N - df + 0.5) / (df + 0.5)), k1 = 1.2,
b = 0.75), the family the app's keyword search belongs to, so the "BM25" row of
the evaluation table is the kind of ranking the app falls back on.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
# Words that carry no topic; dropping them keeps query scores about content.
_STOP = (
    "a an and are as at be by for from has have in is it its of on or that the this to was "
    "were will with"
)
STOPWORDS = frozenset(_STOP.split())


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` without stopwords.

    >>> tokenize("The os.path module, and its functions")
    ['os', 'path', 'module', 'functions']
    """
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


class BM25:
    """Okapi BM25 over a fixed list of texts; documents are addressed by list index."""

    def __init__(self, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.n_docs = len(texts)
        lengths = np.zeros(self.n_docs, dtype=np.float32)
        postings: dict[str, tuple[list[int], list[int]]] = {}
        for i, text in enumerate(texts):
            counts = Counter(tokenize(text))
            lengths[i] = sum(counts.values())
            for term, tf in counts.items():
                docs, tfs = postings.setdefault(term, ([], []))
                docs.append(i)
                tfs.append(tf)
        avgdl = float(lengths.mean()) if self.n_docs and lengths.mean() > 0 else 1.0
        # The length normalisation does not depend on the query: compute it once.
        self._norm = (k1 * (1.0 - b + b * lengths / avgdl)).astype(np.float32)
        self._postings: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
        for term, (docs, tfs) in postings.items():
            df = len(docs)
            idf = math.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5))
            self._postings[term] = (
                np.asarray(docs, dtype=np.int64),
                np.asarray(tfs, dtype=np.float32),
                idf,
            )

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query``: float32 array of length n_docs."""
        out = np.zeros(self.n_docs, dtype=np.float32)
        for term in set(tokenize(query)):
            entry = self._postings.get(term)
            if entry is None:
                continue
            docs, tfs, idf = entry
            out[docs] += idf * tfs * (self.k1 + 1.0) / (tfs + self._norm[docs])
        return out

    def search(self, query: str, k: int = 10) -> list[tuple[int, float]]:
        """The ``k`` best documents as (index, score), best first; zero scores left out."""
        scores = self.scores(query)
        return top_k(scores, k)


def top_k(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Indices and values of the ``k`` largest positive scores, best first (ties by index)."""
    if k <= 0 or scores.size == 0:
        return []
    k = min(k, scores.size)
    part = np.argpartition(-scores, k - 1)[:k]
    order = sorted(part.tolist(), key=lambda i: (-float(scores[i]), i))
    return [(i, float(scores[i])) for i in order if scores[i] > 0]


__all__ = ["BM25", "STOPWORDS", "tokenize", "top_k"]
