from __future__ import annotations

import math

import pytest

from sr3desk.search.metrics import evaluate, ndcg_at_k, recall_at_k, reciprocal_rank


def test_ndcg_binary() -> None:
    assert ndcg_at_k(["a", "b", "c"], {"a"}) == 1.0
    assert ndcg_at_k(["x", "y", "a"], {"a"}) == pytest.approx(1 / math.log2(4))
    assert ndcg_at_k(["x"] * 10 + ["a"], {"a"}) == 0.0
    assert ndcg_at_k(["b", "a"], {"a", "b"}) == 1.0
    assert ndcg_at_k(["a"], set()) == 0.0


def test_rr_and_recall() -> None:
    assert reciprocal_rank(["x", "y", "a"], {"a"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x"], {"a"}) == 0.0
    assert recall_at_k(["a", "x"], {"a", "b"}) == 0.5


def test_evaluate_counts_missing_queries_as_zero() -> None:
    scores = evaluate({"q1": ["a"]}, {"q1": {"a"}, "q2": {"b"}})
    assert scores.n == 2
    assert scores.ndcg10 == 0.5 and scores.mrr10 == 0.5 and scores.recall10 == 0.5
