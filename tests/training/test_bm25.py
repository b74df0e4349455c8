"""BM25 against scores computed by hand, and ranking behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.bm25 import BM25, tokenize, top_k


def test_score_matches_the_formula() -> None:
    texts = ["apple banana", "apple apple cherry", "cherry date"]
    index = BM25(texts, k1=1.2, b=0.75)
    n, avgdl = 3, (2 + 3 + 2) / 3
    df_apple = 2
    idf = math.log(1 + (n - df_apple + 0.5) / (df_apple + 0.5))

    def part(tf: int, dl: int) -> float:
        return idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))

    scores = index.scores("apple")
    assert scores[0] == pytest.approx(part(1, 2), rel=1e-5)
    assert scores[1] == pytest.approx(part(2, 3), rel=1e-5)
    assert scores[2] == 0.0


def test_search_ranks_and_drops_zero_scores() -> None:
    index = BM25(["the os module", "path handling in os.path", "unrelated text here"])
    hits = index.search("os path", k=10)
    assert [i for i, _ in hits] == [1, 0]
    assert hits[0][1] > hits[1][1] > 0


def test_tokenize_lowercases_and_drops_stopwords() -> None:
    assert tokenize("The Zen of Python, and IT") == ["zen", "python"]


def test_top_k_breaks_ties_by_index() -> None:
    assert top_k(np.array([0.5, 2.0, 0.5, 0.0]), 3) == [(1, 2.0), (0, 0.5), (2, 0.5)]
    assert top_k(np.array([1.0]), 0) == []
