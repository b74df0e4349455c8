"""Deep search: the best files of a search re-ranked by a cross-encoder.

A bi-encoder (the embedding model) and BM25 each judge a passage without seeing
the query and the passage together; a cross-encoder reads the pair in one pass,
so it judges relevance far better, at a cost that only a short list can pay.
Deep search therefore takes the top :data:`RERANK_TOP` files of the instant
search (keyword, vector or hybrid), scores each file's best passages with the
query, ranks those files by their best passage's score blended with their
first-stage rank (:data:`FIRST_STAGE_SHARE`), and keeps every other file in its
order below them.

Why blend: the cross-encoder was trained on web passages and questions; on code
and manuals it sometimes prefers a passage that shares the query's words over
the one that is about it, where BM25's rank of the whole file holds. Measured on
60 queries each of bench/search_sets.py's sets (nDCG@10, keyword first stage,
top 10 files, 2 passages): Emacs Lisp libraries 0.883 keyword, 0.900 re-ranked
alone, 0.912 blended at 0.3; GNOME help 0.884, 0.944, 0.944.

Scores are cached per (query, passage id). Passage ids hash the passage's text
(:func:`sr3desk.index.tables.chunk_ids`), so a cached score can never be used
for a changed passage, whatever happened to the index meanwhile: the cache is
correct per (query, index state) without knowing the index.

Measured (bench/search_sets.py, bench/deep.py): see README "Deep search".
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from sr3desk.search.types import FileResult, Passage, SearchResponse

log = logging.getLogger(__name__)

RERANK_TOP = 10  # files re-scored; below them the first stage's order is kept
RERANK_PASSAGES = 2  # passages per file re-scored (its best ones)
RERANK_TOKENS = 128  # query + passage, in the cross-encoder's tokens
FIRST_STAGE_SHARE = 0.3  # weight of the first stage's rank against the cross-encoder's
CACHE_PAIRS = 4096  # (query, passage) scores remembered


class PairScorer(Protocol):
    """What deep search needs of a cross-encoder (:class:`~sr3desk.search.rerank.CrossEncoder`)."""

    name: str

    def score(
        self,
        query: str,
        passages: Sequence[str],
        cancel: Callable[[], bool] | None = None,
        max_tokens: int = 512,
    ) -> np.ndarray:
        """Return one relevance score per passage (higher: more relevant)."""
        ...


@dataclass(frozen=True)
class RerankStats:
    """What one re-ranking did: files and pairs scored, pairs from the cache, time."""

    files: int
    pairs: int
    cached: int
    ms: float


def passage_text(passage: Passage) -> str:
    """The text the cross-encoder reads for ``passage``: its heading path, then the passage
    (cut to the pair's length by the cross-encoder's tokenizer).

    The heading names what the passage is about (a section, a function) where the
    passage itself often does not. The passage's start was measured a little better
    than the window around its best match (nDCG@10 0.942 vs 0.939 on 60 Python docs
    queries, 128 tokens a pair): a passage opens with what it is about.
    """
    heading = passage.heading.strip()
    return f"{heading}\n{passage.text}" if heading else passage.text


def _probability(logit: float) -> float:
    # The cross-encoder was trained with a sigmoid over its logit: a relevance
    # probability in [0, 1], comparable across queries, for display.
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))


class DeepRanker:
    """Re-ranks search results with a cross-encoder, caching pair scores.

    ``scorer``: the cross-encoder; ``top``: files re-scored; ``passages``:
    passages re-scored per file; ``max_tokens``: pair length; ``first_stage``:
    the share of the first stage's rank in the final order (0: the cross-encoder
    alone). Used from one thread at a time (the searcher's, or the window's
    deep-search lane).
    """

    def __init__(
        self,
        scorer: PairScorer,
        *,
        top: int = RERANK_TOP,
        passages: int = RERANK_PASSAGES,
        max_tokens: int = RERANK_TOKENS,
        first_stage: float = FIRST_STAGE_SHARE,
        cache_pairs: int = CACHE_PAIRS,
    ) -> None:
        if top < 1 or passages < 1 or max_tokens < 16:
            raise ValueError("top and passages must be >= 1 and max_tokens >= 16")
        if not 0.0 <= first_stage < 1.0:
            raise ValueError("first_stage must lie in [0, 1)")
        self.first_stage = first_stage
        self.scorer = scorer
        self.top = top
        self.passages = passages
        self.max_tokens = max_tokens
        self._cache: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._cache_pairs = cache_pairs

    @property
    def name(self) -> str:
        """The cross-encoder's name."""
        return self.scorer.name

    def rerank(
        self,
        query: str,
        results: Sequence[FileResult],
        cancel: Callable[[], bool] | None = None,
    ) -> tuple[list[FileResult], RerankStats]:
        """Return ``results`` with the first :attr:`top` files re-ranked, and the stats.

        Takes the query as typed and the first stage's files, best first (their
        passages with text). A re-ranked file scores ``(1 - s) / rank + s /
        first_rank``, its rank by its best passage's cross-encoder score blended
        with its first-stage rank (``s``: :attr:`first_stage`), in (0, 1]; its
        passages carry their relevance probability and are listed by it. The
        files below keep their order with scores scaled under the lowest
        re-ranked one. Raises
        :class:`~sr3desk.search.rerank.Cancelled` when ``cancel()`` turns true.
        """
        t0 = time.perf_counter()
        head, tail = list(results[: self.top]), list(results[self.top :])
        pairs = [
            (i, j) for i, r in enumerate(head) for j in range(min(self.passages, len(r.passages)))
        ]
        key = " ".join(query.split())
        scores: dict[tuple[int, int], float] = {}
        todo: list[tuple[int, int]] = []
        for i, j in pairs:
            cached = self._cache.get((key, head[i].passages[j].chunk_id))
            if cached is None:
                todo.append((i, j))
            else:
                scores[(i, j)] = cached
        if todo:
            texts = [passage_text(head[i].passages[j]) for i, j in todo]
            fresh = self.scorer.score(key, texts, cancel=cancel, max_tokens=self.max_tokens)
            for (i, j), value in zip(todo, fresh.tolist(), strict=True):
                scores[(i, j)] = float(value)
                self._remember((key, head[i].passages[j].chunk_id), float(value))
        ranked = self._blend([self._rescored(r, i, scores) for i, r in enumerate(head)])
        out = ranked + self._below(tail, min((r.score for r in ranked), default=1.0))
        stats = RerankStats(
            files=len(head),
            pairs=len(pairs),
            cached=len(pairs) - len(todo),
            ms=(time.perf_counter() - t0) * 1000.0,
        )
        return out, stats

    def rerank_response(
        self, response: SearchResponse, cancel: Callable[[], bool] | None = None
    ) -> SearchResponse:
        """Return a copy of an instant search's ``response`` with its files re-ranked
        (:meth:`rerank`), marked ``deep``, the re-ranking's time in its ``stages``
        and ``took_ms``. An empty response comes back unchanged."""
        if not response.results:
            return response
        results, stats = self.rerank(response.query, response.results, cancel)
        return replace(
            response,
            results=results,
            deep=True,
            stages={**response.stages, "rerank": stats.ms},
            took_ms=response.took_ms + stats.ms,
        )

    def _rescored(
        self, result: FileResult, i: int, scores: dict[tuple[int, int], float]
    ) -> FileResult:
        n = min(self.passages, len(result.passages))
        scored = [
            replace(p, score=round(_probability(scores[(i, j)]), 6))
            for j, p in enumerate(result.passages[:n])
        ]
        scored.sort(key=lambda p: -p.score)
        return replace(result, score=scored[0].score, passages=scored + result.passages[n:])

    def _blend(self, rescored: list[FileResult]) -> list[FileResult]:
        """Order files by their rank under the cross-encoder blended with their first rank."""
        # Stable sorts: equal scores keep the first stage's order.
        by_encoder = sorted(range(len(rescored)), key=lambda i: -rescored[i].score)
        share = self.first_stage
        blended = {
            i: (1.0 - share) / (rank + 1) + share / (i + 1) for rank, i in enumerate(by_encoder)
        }
        order = sorted(by_encoder, key=lambda i: -blended[i])
        return [replace(rescored[i], score=round(blended[i], 6)) for i in order]

    @staticmethod
    def _below(tail: list[FileResult], floor: float) -> list[FileResult]:
        # Keep the order and the spacing of the first stage, under the re-ranked files.
        top = max((r.score for r in tail), default=0.0)
        if top <= 0.0:
            return [replace(r, score=0.0) for r in tail]
        scale = 0.999 * floor / top
        return [replace(r, score=round(r.score * scale, 6)) for r in tail]

    def _remember(self, key: tuple[str, str], value: float) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_pairs:
            self._cache.popitem(last=False)


__all__ = [
    "RERANK_PASSAGES",
    "RERANK_TOKENS",
    "RERANK_TOP",
    "DeepRanker",
    "PairScorer",
    "RerankStats",
    "passage_text",
]
