"""Rewards on hand-computed cases (training/rewards.py), and their doctests."""

from __future__ import annotations

import doctest
import math

import pytest

from training import rewards
from training.rewards import (
    combined_reward,
    format_reward,
    ndcg_at_k,
    rank_reward,
    reciprocal_rank,
)


def test_doctests() -> None:
    result = doctest.testmod(rewards)
    assert result.attempted >= 15
    assert result.failed == 0


def test_reciprocal_rank_by_hand() -> None:
    # Scores 0.9 0.7 0.8 0.1: order is 0, 2, 1, 3; the positive (index 1) is third.
    assert reciprocal_rank([0.9, 0.7, 0.8, 0.1], [0, 1, 0, 0]) == pytest.approx(1 / 3)
    assert reciprocal_rank([0.9, 0.7, 0.8, 0.1], [1, 0, 0, 0]) == 1.0
    assert reciprocal_rank([0.9, 0.7, 0.8, 0.1], [0, 0, 0, 1]) == 0.25
    assert reciprocal_rank([0.9, 0.7], [0, 0]) == 0.0


def test_collapsed_scores_do_not_pay() -> None:
    # Every candidate scored the same (a collapsed model): the positive ranks last.
    assert reciprocal_rank([0.5] * 5, [0, 0, 1, 0, 0]) == 0.2
    assert ndcg_at_k([0.5] * 5, [0, 0, 1, 0, 0]) == pytest.approx(1 / math.log2(6))


def test_ndcg_by_hand() -> None:
    # Two relevant at ranks 2 and 3: DCG = 1/log2(3) + 1/log2(4); IDCG = 1 + 1/log2(3).
    got = ndcg_at_k([0.9, 0.8, 0.7, 0.1], [0, 1, 1, 0])
    want = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert got == pytest.approx(want)
    # More positives than the cut-off: the ideal DCG counts only k of them.
    assert ndcg_at_k([0.9, 0.8, 0.7], [1, 1, 1], k=2) == 1.0
    # The cut-off: the positive 11th of 11 earns nothing at @10.
    scores = [1.0 - i / 100 for i in range(11)]
    assert ndcg_at_k(scores, [0] * 10 + [1]) == 0.0
    assert ndcg_at_k(scores, [0] * 9 + [1, 0]) == pytest.approx(1 / math.log2(11))


def test_rank_reward_dispatch_and_errors() -> None:
    assert rank_reward([0.2, 0.1], [0, 1], kind="rr") == 0.5
    assert rank_reward([0.2, 0.1], [0, 1], kind="ndcg") == pytest.approx(1 / math.log2(3))
    with pytest.raises(ValueError, match="rank reward kind"):
        rank_reward([0.1], [1], kind="mrr")
    with pytest.raises(ValueError, match="relevance"):
        reciprocal_rank([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="cut-off"):
        ndcg_at_k([0.1], [1], k=0)


def test_format_reward_by_hand() -> None:
    tok = "<|embed_token|>"
    assert format_reward(f"Wants regex help. The embedding is {tok}", 12, 32) == 1.0
    assert format_reward(f"The embedding is {tok}.", 6, 32) == 1.0  # trailing full stop
    assert format_reward(f"The embedding is {tok}", 32, 32) == 1.0  # exactly at budget
    assert format_reward(f"The embedding is {tok}", 33, 32) == 0.0  # one over budget
    assert format_reward(f"regex {tok}", 3, 32) == 0.5  # token, but no answer prefix
    assert format_reward(f"The embedding is {tok} and more", 8, 32) == 0.5  # text after it
    assert format_reward(f"{tok}{tok}", 2, 32) == 0.0  # twice
    assert format_reward("The embedding is", 4, 32) == 0.0  # never emitted: forced, no reward
    # Other prompts (from a model's GGUF metadata) are honoured.
    assert format_reward("Vector: <e>", 3, 8, embed_token="<e>", answer_prefix="Vector: ") == 1.0


def test_combined_reward() -> None:
    assert combined_reward(1 / 3, 1.0, format_weight=0.5) == pytest.approx(1 / 3 + 0.5)
    assert combined_reward(0.25, 0.5, format_weight=0.0) == 0.25
    with pytest.raises(ValueError, match="format_weight"):
        combined_reward(1.0, 1.0, format_weight=-1.0)
