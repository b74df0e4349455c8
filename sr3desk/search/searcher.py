"""The searcher: runs a :class:`SearchRequest` against the index and the model.

Hybrid search (the default) asks the full-text index and the vector index for
passages, over-fetching so that grouping by file still leaves ``k`` files, fuses
the two lists at file level (:mod:`sr3desk.search.fusion`) with the vector
side weighted by the model's measured quality (:mod:`sr3desk.search.calibration`),
and cuts a highlighted snippet from each file's best passages. A deep search
(``SearchRequest.deep``) then re-ranks the best files with a cross-encoder
(:mod:`sr3desk.search.deep`), with or without a model.

Keyword search covers every indexed passage; vector search covers the passages
embedded so far (the indexer makes text searchable before it embeds it), so
a partly embedded index still finds everything by its words, and a note says
how much the vectors cover.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sr3desk.errors import ModelRequiredError
from sr3desk.index.types import ChunkHit
from sr3desk.search.calibration import (
    CACHE_FILE,
    DEFAULT_QUERIES,
    SOURCE_EVAL,
    SOURCE_FIXED,
    CalibrationCache,
    VectorWeight,
    calibrate,
    from_eval,
    index_identity,
    stale,
)
from sr3desk.search.deep import DeepRanker, PairScorer
from sr3desk.search.fusion import (
    FileGroup,
    Ranking,
    ScoredChunk,
    file_ranks,
    group_hits,
    score_fuse,
)
from sr3desk.search.reasoning import reasoning_verdict
from sr3desk.search.rerank import INSTALL_HINT
from sr3desk.search.snippets import DEFAULT_WIDTH, make_snippet
from sr3desk.search.text import ParsedQuery, parse_query
from sr3desk.search.types import (
    MAX_K,
    FileResult,
    Passage,
    SearchRequest,
    SearchResponse,
)

if TYPE_CHECKING:
    from sr3desk.index.store import Store
    from sr3desk.model.base import Embedder, QueryEmbedding

log = logging.getLogger(__name__)

OVERFETCH = 5  # passages fetched per file asked for, per retriever
MIN_FETCH = 50
RECHECK_S = 60.0  # how often a long-lived searcher checks whether to recalibrate

NO_RERANKER = (
    f"deep search needs the cross-encoder, which is not installed: {INSTALL_HINT}; "
    "showing the instant results"
)

HOW_TO_SET_MODEL = (
    "pass --model FILE.gguf, set $SR3DESK_MODEL, or make one the default with "
    "`sr3desk model install FILE.gguf --default`; keyword search (--mode keyword) needs none"
)


def model_required(mode: str) -> ModelRequiredError:
    """The error for a mode that needs a model when none is open."""
    return ModelRequiredError(
        f"{mode.capitalize()} search needs an embedding model: {HOW_TO_SET_MODEL}"
    )


class Searcher:
    """Searches one index; ``embedder`` None allows keyword search only.

    ``home``: the data directory, where calibrations are cached (None: not
    cached); ``vector_weight``: a fixed weight for the vector side of hybrid
    search instead of the measured one (benchmarks, tests); ``calibration_queries``:
    pseudo-queries per calibration. Lists are fused by weighted min-max scores
    (:func:`~sr3desk.search.fusion.score_fuse`), the one fusion whose "never worse
    than keyword search" guarantee held under a misjudged weight; see
    :mod:`sr3desk.search.fusion`. ``reranker``: the cross-encoder of deep search
    (a :class:`~sr3desk.search.deep.DeepRanker`, or a bare scorer wrapped in one);
    None: deep requests get the instant results and a note. Not thread-safe: one
    searcher per thread; close it (or use ``with``) to stop its worker thread.
    """

    def __init__(
        self,
        store: Store,
        embedder: Embedder | None = None,
        *,
        home: Path | None = None,
        vector_weight: float | None = None,
        calibration_queries: int = DEFAULT_QUERIES,
        snippet_width: int = DEFAULT_WIDTH,
        reranker: DeepRanker | PairScorer | None = None,
    ) -> None:
        if vector_weight is not None and not 0.0 <= vector_weight <= 1.0:
            raise ValueError("vector_weight must lie in [0, 1]")
        self.store = store
        self.embedder = embedder
        self.snippet_width = snippet_width
        self.calibration_queries = calibration_queries
        self._fixed_weight = vector_weight
        self._cache = CalibrationCache(home / CACHE_FILE) if home is not None else None
        # sr3.eval figures count as evidence only when measured on this very index.
        self._index_id = index_identity(home) if home is not None else ""
        self._weight: VectorWeight | None = None
        self._checked_at = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self.reranker: DeepRanker | None = (
            reranker
            if reranker is None or isinstance(reranker, DeepRanker)
            else DeepRanker(reranker)
        )

    # -- the model's weight ------------------------------------------------------

    def vectors_usable(self) -> bool:
        """True when a model is open and the index serves vectors of that model."""
        return self.embedder is not None and self.store.read_model_id == self.embedder.model_id

    def vector_weight(self) -> VectorWeight:
        """Return the vector side's weight in hybrid fusion, measuring it if needed.

        From the model's ``sr3.eval`` figures when they were measured on this
        index (``sr3desk tune``); else from the cached calibration for this model
        and index size; else calibrates now (about 60 query embeddings) and caches
        the result. See :mod:`sr3desk.search.calibration`.
        """
        if self._fixed_weight is not None:
            return VectorWeight(self._fixed_weight, SOURCE_FIXED)
        if self.embedder is None:
            raise model_required("hybrid")
        now = time.monotonic()
        if self._weight is not None and (
            self._weight.source == SOURCE_EVAL or now - self._checked_at < RECHECK_S
        ):
            return self._weight
        self._checked_at = now
        evaluated = from_eval(self.embedder.info.eval, index=self._index_id)
        if evaluated is not None:
            self._weight = evaluated
            return evaluated
        embedded = self.store.status().embedded
        if self._weight is not None and not stale(self._weight, embedded):
            return self._weight
        model_id = self.embedder.model_id
        key = f"{model_id}/score"  # the weight is measured for score fusion
        cached = self._cache.get(key, embedded) if self._cache else None
        if cached is None:
            log.info("Measuring %s against keyword search on this index", model_id)
            cached = calibrate(
                self.store, self.embedder, n=self.calibration_queries, fuse=score_fuse
            )
            if self._cache is not None:
                self._cache.put(key, cached)
        self._weight = cached
        return cached

    # -- searching ---------------------------------------------------------------

    def search(
        self, request: SearchRequest, cancel: Callable[[], bool] | None = None
    ) -> SearchResponse:
        """Run ``request``; returns files best first with their best passages.

        Raises ModelRequiredError for hybrid/vector search without a model.
        ``took_ms`` includes embedding the query (and reasoning, if asked for)
        and the re-ranking of a deep search, which raises
        :class:`~sr3desk.search.rerank.Cancelled` once ``cancel()`` is true.
        """
        embedder = self.embedder

        def embed() -> QueryEmbedding:
            assert embedder is not None
            if not request.reason:
                return embedder.embed_query(request.query)
            budget = reasoning_verdict(embedder.info.eval).budget
            return embedder.embed_query(request.query, reason=True, max_reason_tokens=budget)

        return self._search(request, embed, cancel)

    def search_embedded(
        self,
        request: SearchRequest,
        query: QueryEmbedding,
        cancel: Callable[[], bool] | None = None,
    ) -> SearchResponse:
        """Run ``request`` with the query already embedded (benchmarks; a window
        that embeds once while the user changes filters). Same rules as :meth:`search`."""
        return self._search(request, lambda: query, cancel)

    def _search(
        self,
        request: SearchRequest,
        embed: Callable[[], QueryEmbedding],
        cancel: Callable[[], bool] | None = None,
    ) -> SearchResponse:
        if request.deep:
            return self._deep(request, embed, cancel)
        t0 = time.perf_counter()
        if request.mode != "keyword" and self.embedder is None:
            raise model_required(request.mode)
        parsed = parse_query(request.query)
        response = SearchResponse(query=request.query, mode=request.mode, took_ms=0.0, results=[])
        if not parsed.text:
            response.notes.append("empty query")
            return response
        fetch = max(MIN_FETCH, OVERFETCH * request.k)
        store, filters = self.store, request.filters
        if request.mode == "keyword":
            kw = store.keyword_search(parsed.keywords, fetch, filters)
            groups = group_hits(kw, "keyword")
        elif request.mode == "vector":
            vec, _ = self._vector_hits(request, embed, fetch, response)
            groups = group_hits(vec, "vector")
        else:
            groups = self._hybrid(request, parsed, embed, fetch, response)
        shown = self._complete(groups[: request.k], request.passages)
        response.results = [self._result(g, parsed, request.passages) for g in shown]
        response.took_ms = (time.perf_counter() - t0) * 1000.0
        response.stages["search"] = response.took_ms
        return response

    def _deep(
        self,
        request: SearchRequest,
        embed: Callable[[], QueryEmbedding],
        cancel: Callable[[], bool] | None,
    ) -> SearchResponse:
        """The instant search for at least the re-ranked files, then the re-ranking."""
        t0 = time.perf_counter()
        ranker = self.reranker
        top = ranker.top if ranker is not None else 0
        first = replace(request, deep=False, k=min(MAX_K, max(request.k, top)))
        response = self._search(first, embed)
        if ranker is None:
            response.notes.append(NO_RERANKER)
        else:
            response = ranker.rerank_response(response, cancel)
        response.results = response.results[: request.k]
        response.took_ms = (time.perf_counter() - t0) * 1000.0
        return response

    def rerank(
        self, response: SearchResponse, cancel: Callable[[], bool] | None = None
    ) -> SearchResponse:
        """Return ``response`` (an instant search's) with its best files re-ranked.

        For a window that already shows the instant results: the deep search
        reuses them instead of searching again. Raises
        :class:`~sr3desk.search.rerank.Cancelled` once ``cancel()`` is true; a
        searcher without a cross-encoder returns the response with a note.
        """
        if self.reranker is None:
            return replace(response, notes=[*response.notes, NO_RERANKER])
        return self.reranker.rerank_response(response, cancel)

    def _vector_hits(
        self,
        request: SearchRequest,
        embed: Callable[[], QueryEmbedding],
        fetch: int,
        response: SearchResponse,
    ) -> tuple[list[ChunkHit], float]:
        """Embed the query and search the vectors; returns the hits and the share of
        passages embedded, and adds notes for a partial or foreign index."""
        assert self.embedder is not None
        served = self.store.read_model_id
        if served is None:
            response.notes.append(
                "the index has no vectors yet: only keyword search can find files"
            )
            return [], 0.0
        if served != self.embedder.model_id:
            response.notes.append(
                f"the index holds vectors of another model ({served}), not of "
                f"{self.embedder.model_id}: re-index with this model or search with that one"
            )
            return [], 0.0
        qe = embed()
        response.reasoning, response.forced = qe.reasoning, qe.forced
        fraction = self.store.embedded_fraction()
        if fraction < 1.0:
            response.notes.append(
                f"vectors cover {fraction:.0%} of the indexed passages so far "
                "(embedding continues); keyword matches cover all of them"
            )
        # Passages are looked up only for the files shown (see _complete): at 100k
        # chunks that lookup was half the cost of a vector search.
        hits = self.store.vector_search(qe.vector, fetch, request.filters, with_text=False)
        return hits, fraction

    def _hybrid(
        self,
        request: SearchRequest,
        parsed: ParsedQuery,
        embed: Callable[[], QueryEmbedding],
        fetch: int,
        response: SearchResponse,
    ) -> list[FileGroup]:
        store, filters = self.store, request.filters
        if not self.vectors_usable():
            kw = store.keyword_search(parsed.keywords, fetch, filters)
            self._vector_hits(request, embed, fetch, response)  # for its note
            return score_fuse([Ranking("keyword", kw)])
        weight = self.vector_weight()
        response.vector_weight = weight.weight
        if weight.weight == 0.0:
            response.notes.append(f"ranked by keywords: {weight.describe()}")
            kw = store.keyword_search(parsed.keywords, fetch, filters)
            if len(file_ranks(kw)) >= request.k and not request.reason:
                # The model cannot change the order and the list is full: skip its cost.
                return score_fuse([Ranking("keyword", kw)])
            vec, fraction = self._vector_hits(request, embed, fetch, response)
        else:
            # Both retrievers at once: the full-text query runs in a worker thread
            # while this one embeds the query and searches the vectors (LanceDB and
            # llama.cpp release the GIL while they work).
            pending = self._worker().submit(store.keyword_search, parsed.keywords, fetch, filters)
            try:
                vec, fraction = self._vector_hits(request, embed, fetch, response)
            finally:
                kw = pending.result()
        blind = self._not_embedded(kw) if fraction < 1.0 else frozenset()
        return score_fuse([Ranking("keyword", kw), Ranking("vector", vec, weight.weight, blind)])

    def _complete(self, groups: list[FileGroup], n_passages: int) -> list[FileGroup]:
        """Fill in the passages of the vector hits that will be shown (the vector
        side returns ids and scores only); a group whose passages all vanished
        meanwhile (its file was re-indexed) is dropped."""
        shown = [sc.hit for g in groups for sc in g.chunks[:n_passages]]
        if not any(h.partial for h in shown):
            return groups
        full = {h.chunk_id: h for h in self.store.complete_hits(shown)}
        out = []
        for group in groups:
            kept = [
                ScoredChunk(full[sc.hit.chunk_id], sc.score, sc.ranks)
                for sc in group.chunks[:n_passages]
                if sc.hit.chunk_id in full
            ]
            if kept:
                out.append(replace(group, chunks=kept))
        return out

    def _not_embedded(self, hits: list[ChunkHit]) -> frozenset[str]:
        """Ids of the passages, and of files with none of their passages, among
        ``hits`` that have no vector yet (the vector side could not see them)."""
        embedded = self.store.chunk_vectors([h.chunk_id for h in hits]).keys()
        seen_files = {h.file_id for h in hits if h.chunk_id in embedded}
        blind = {h.chunk_id for h in hits if h.chunk_id not in embedded}
        blind.update(h.file_id for h in hits if h.file_id not in seen_files)
        return frozenset(blind)

    def _worker(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sr3-search")
        return self._pool

    def close(self) -> None:
        """Stop the worker thread (idempotent); the store and model stay open."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _result(self, group: FileGroup, parsed: ParsedQuery, n_passages: int) -> FileResult:
        best = group.best
        passages = []
        for scored in group.chunks[:n_passages]:
            hit = scored.hit
            snip = make_snippet(hit.text, parsed, self.snippet_width)
            passages.append(
                Passage(
                    chunk_id=hit.chunk_id,
                    text=hit.text,
                    snippet=snip.text,
                    highlights=snip.highlights,
                    page=hit.page,
                    start=hit.start,
                    end=hit.end,
                    heading=hit.heading,
                    score=round(scored.score, 6),
                )
            )
        return FileResult(
            path=best.path,
            file_id=group.file_id,
            ext=best.ext,
            folder=best.folder or os.path.dirname(best.path),
            mtime=best.mtime,
            size=best.size,
            score=round(group.score, 6),
            passages=passages,
        )


__all__ = ["HOW_TO_SET_MODEL", "NO_RERANKER", "Searcher", "model_required"]
