"""Whether a model's reasoning is worth running, from its measured figures.

Reasoning (the model writes a short analysis of the query before the embed
token) costs seconds per query on a CPU, and it is not free of risk: the
default CPU model's reasoned hybrid search scored 0.711 nDCG@10 against 0.870
without reasoning on real queries. So the window's Enter and Think reason only
for a model whose ``sr3.eval`` shows its reasoned queries scoring above its
plain ones (``training.eval`` writes both when a model is evaluated with and
without ``--reason``), and the reasoning budget follows the length the model
was measured to reason, not a fixed one.

The ``sr3.eval`` keys read: ``ndcg@10`` (plain queries), ``reason_ndcg@10``
(the same queries, reasoned), ``reason_tokens_p90`` (90th percentile of the
reasoning tokens written).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sr3desk.model.base import DEFAULT_MAX_REASON_TOKENS

MIN_BUDGET = 16
BUDGET_HEADROOM = 1.25  # budget = this x the measured 90th percentile


@dataclass(frozen=True)
class ReasoningVerdict:
    """What the figures say of a model's reasoning.

    ``helps``: reasoned queries measured better than plain ones; ``plain`` /
    ``reasoned``: the two nDCG@10 figures (None when not measured); ``budget``:
    reasoning tokens to allow; ``dataset``: where the figures come from.
    """

    helps: bool
    plain: float | None
    reasoned: float | None
    budget: int
    dataset: str = ""

    @property
    def measured(self) -> bool:
        """True when both figures are known."""
        return self.plain is not None and self.reasoned is not None

    def describe(self) -> str:
        """One line for tooltips and notes: the two figures, or that they are missing."""
        if self.plain is None or self.reasoned is None:
            return "its reasoning has not been measured (no reasoned figures in its sr3.eval)"
        where = f" on {self.dataset}" if self.dataset else ""
        verb = "helps" if self.helps else "does not help"
        return (
            f"its reasoning {verb}: nDCG@10 {self.reasoned:.3f} reasoned vs "
            f"{self.plain:.3f} plain{where}"
        )


def _figure(meta: Mapping[str, Any], key: str) -> float | None:
    try:
        value = float(meta[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if 0.0 <= value <= 1.0 else None


def reasoning_verdict(meta: Mapping[str, Any] | None) -> ReasoningVerdict:
    """Read a model's ``sr3.eval`` (None: no figures); returns the verdict.

    >>> reasoning_verdict({"ndcg@10": 0.6, "reason_ndcg@10": 0.65, "reason_tokens_p90": 40})
    ReasoningVerdict(helps=True, plain=0.6, reasoned=0.65, budget=50, dataset='')
    >>> reasoning_verdict({"ndcg@10": 0.6, "reason_ndcg@10": 0.5}).helps
    False
    >>> reasoning_verdict(None).measured
    False
    """
    meta = meta or {}
    plain = _figure(meta, "ndcg@10")
    reasoned = _figure(meta, "reason_ndcg@10")
    budget = DEFAULT_MAX_REASON_TOKENS
    try:
        p90 = float(meta["reason_tokens_p90"])
    except (KeyError, TypeError, ValueError):
        p90 = math.nan
    if math.isfinite(p90) and p90 > 0:
        budget = int(
            min(DEFAULT_MAX_REASON_TOKENS, max(MIN_BUDGET, math.ceil(p90 * BUDGET_HEADROOM)))
        )
    helps = plain is not None and reasoned is not None and reasoned > plain
    return ReasoningVerdict(helps, plain, reasoned, budget, str(meta.get("dataset", "")))


__all__ = ["ReasoningVerdict", "reasoning_verdict"]
