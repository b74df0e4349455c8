"""Retrieval metrics over ranked lists of ids with binary relevance.

Used by the searcher's calibration, the quality benchmark and the tests, so all
three measure the same thing the training pipeline reports (nDCG@10).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """nDCG@k with binary gains: DCG of ``ranked[:k]`` over the ideal DCG.

    >>> ndcg_at_k(["a", "b"], {"a"}), round(ndcg_at_k(["b", "a"], {"a"}), 4)
    (1.0, 0.6309)
    """
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """1 / rank of the first relevant id within the top ``k`` (0 when none).

    >>> reciprocal_rank(["x", "a"], {"a"})
    0.5
    """
    for i, d in enumerate(ranked[:k]):
        if d in relevant:
            return 1.0 / (i + 1)
    return 0.0


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """Share of the relevant ids found in the top ``k``."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


@dataclass(frozen=True)
class Scores:
    """Mean metrics over a query set."""

    ndcg10: float
    mrr10: float
    recall10: float
    n: int

    def row(self) -> str:
        """Return the scores as a fixed-width table row."""
        return f"{self.ndcg10:8.3f} {self.mrr10:8.3f} {self.recall10:9.3f} {self.n:5d}"


def evaluate(
    runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Collection[str]], k: int = 10
) -> Scores:
    """Average nDCG@k, MRR@k and recall@k of ``runs`` (query id -> ranked ids).

    Every query of ``qrels`` counts; a query missing from ``runs`` scores 0.
    """
    ids: Iterable[str] = qrels.keys()
    nd = rr = rc = 0.0
    n = 0
    for q in ids:
        ranked = runs.get(q, ())
        rel = qrels[q]
        nd += ndcg_at_k(ranked, rel, k)
        rr += reciprocal_rank(ranked, rel, k)
        rc += recall_at_k(ranked, rel, k)
        n += 1
    if n == 0:
        return Scores(0.0, 0.0, 0.0, 0)
    return Scores(nd / n, rr / n, rc / n, n)


__all__ = ["Scores", "evaluate", "ndcg_at_k", "recall_at_k", "reciprocal_rank"]
