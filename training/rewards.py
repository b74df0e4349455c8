"""Rewards for RL: pure functions of their inputs, each with a doctest.

A completion of the reasoning prompt earns two things:

* a **ranking** part: how high the positive document ranks among the
  environment's candidates when the query embedding read at ``<|embed_token|>``
  is compared with them (reciprocal rank or nDCG@10);
* a **format** part: the model wrote the token itself, once, within its token
  budget, right after the answer prefix ("The embedding is ").

Ties in score rank pessimistically (a relevant document tied with an irrelevant
one ranks below it). Otherwise a collapsed model that maps every text to the same
vector would rank every positive first and be paid for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sr3desk.model.prompts import ANSWER_PREFIX, EMBED_TOKEN
from sr3desk.search import metrics

RANK_KINDS = ("rr", "ndcg")


def ranking_order(scores: Sequence[float], relevant: Sequence[bool]) -> list[int]:
    """Return candidate indices best first: by score, ties with the irrelevant one first.

    ``scores[i]`` is the similarity of candidate ``i`` to the query, ``relevant[i]``
    whether it is a positive.

    >>> ranking_order([0.1, 0.9, 0.5], [False, False, True])
    [1, 2, 0]
    >>> ranking_order([0.5, 0.5], [True, False])  # a tie ranks the irrelevant one first
    [1, 0]
    """
    if len(scores) != len(relevant):
        raise ValueError(f"{len(scores)} scores but {len(relevant)} relevance flags: give one each")
    return sorted(range(len(scores)), key=lambda i: (-scores[i], bool(relevant[i])))


def _ranked(scores: Sequence[float], relevant: Sequence[bool]) -> tuple[list[str], set[str]]:
    """The ranking as ids for :mod:`sr3desk.search.metrics` (the metrics eval reports)."""
    order = ranking_order(scores, relevant)
    return [str(i) for i in order], {str(i) for i, r in enumerate(relevant) if r}


def reciprocal_rank(scores: Sequence[float], relevant: Sequence[bool]) -> float:
    """Return 1/rank of the best-ranked positive among all candidates, 0.0 when none.

    >>> reciprocal_rank([0.9, 0.8, 0.7], [False, False, True])  # positive third
    0.3333333333333333
    >>> reciprocal_rank([0.2, 0.8, 0.7], [True, False, True])  # best positive second
    0.5
    >>> reciprocal_rank([0.3, 0.3], [False, True])  # tie: pessimistic
    0.5
    """
    ranked, rel = _ranked(scores, relevant)
    return metrics.reciprocal_rank(ranked, rel, k=len(ranked))


def ndcg_at_k(scores: Sequence[float], relevant: Sequence[bool], k: int = 10) -> float:
    """Return nDCG@k with binary gains of the candidates ranked by score, 0.0 if none relevant.

    >>> ndcg_at_k([0.9, 0.1], [True, False])
    1.0
    >>> round(ndcg_at_k([0.9, 0.8, 0.7], [False, False, True]), 6)  # 1/log2(4)
    0.5
    >>> ndcg_at_k([0.9, 0.8, 0.7], [False, False, True], k=2)  # positive below the cut
    0.0
    """
    if k < 1:
        raise ValueError(f"k={k}: the cut-off must be at least 1")
    ranked, rel = _ranked(scores, relevant)
    return metrics.ndcg_at_k(ranked, rel, k)


def rank_reward(
    scores: Sequence[float], relevant: Sequence[bool], kind: str = "rr", k: int = 10
) -> float:
    """Return the ranking reward of one query: ``"rr"`` (reciprocal rank) or ``"ndcg"`` (@k).

    >>> rank_reward([0.1, 0.9], [True, False], kind="rr")
    0.5
    >>> round(rank_reward([0.1, 0.9], [True, False], kind="ndcg"), 4)
    0.6309
    """
    if kind == "rr":
        return reciprocal_rank(scores, relevant)
    if kind == "ndcg":
        return ndcg_at_k(scores, relevant, k)
    raise ValueError(f"rank reward kind {kind!r}: use one of {', '.join(RANK_KINDS)}")


def format_reward(
    completion: str,
    n_tokens: int,
    budget: int,
    embed_token: str = EMBED_TOKEN,
    answer_prefix: str = ANSWER_PREFIX,
) -> float:
    """Return the format reward of one generated completion, in [0, 1].

    ``completion`` is the generated text with special tokens kept, ``n_tokens``
    how many tokens were generated (the token included), ``budget`` the most that
    were allowed. Pays 0.5 when the token was emitted exactly once within the
    budget, and 0.5 more when the text before it ends with the answer prefix and
    nothing but a full stop or whitespace follows it. A completion that needed the
    forced suffix does not contain the token, so it earns 0.

    >>> format_reward("Looks for sorting. The embedding is <|embed_token|>", 9, 32)
    1.0
    >>> format_reward("sorting <|embed_token|>", 4, 32)  # no answer prefix
    0.5
    >>> format_reward("The embedding is <|embed_token|>", 40, 32)  # over budget
    0.0
    >>> format_reward("a <|embed_token|> b <|embed_token|>", 6, 32)  # twice
    0.0
    >>> format_reward("no token at all", 4, 32)
    0.0
    """
    if completion.count(embed_token) != 1 or n_tokens > budget:
        return 0.0
    before, after = completion.split(embed_token)
    proper = before.rstrip().endswith(answer_prefix.rstrip()) and after.strip() in ("", ".")
    return 1.0 if proper else 0.5


def combined_reward(rank: float, fmt: float, format_weight: float = 0.2) -> float:
    """Return the reward of one completion: ``rank + format_weight * fmt``.

    >>> combined_reward(0.5, 1.0, format_weight=0.2)
    0.7
    >>> combined_reward(1.0, 0.0)
    1.0
    """
    if format_weight < 0:
        raise ValueError(f"format_weight={format_weight}: must be >= 0")
    return rank + format_weight * fmt


__all__ = [
    "RANK_KINDS",
    "combined_reward",
    "format_reward",
    "ndcg_at_k",
    "rank_reward",
    "ranking_order",
    "reciprocal_rank",
]
