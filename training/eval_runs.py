"""The evaluation's rows: each retriever's passages per query, and their metrics.

BM25 (:mod:`training.bm25`), a GGUF through the app's own runtime
(:func:`sr3desk.model.runtime.open_embedder`, exactly as the app opens it) and the
teacher (:mod:`training.teacher`) each give a :class:`Retrieval`: passage ids per
query, best first, with their scores. :func:`score_run` turns a ranking into the
metrics of a row (nDCG@10, Recall@10, Recall@100, MRR@10).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sr3desk.search.metrics import ndcg_at_k, recall_at_k, reciprocal_rank
from training.bm25 import BM25, top_k
from training.data.beir import BeirSet

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
DEPTH = 100
TEACHER = "teacher"

Hits = list[tuple[str, float]]  # passage ids best first, each with its score


def score_run(
    run: Mapping[str, Sequence[str]], data: BeirSet, qids: Sequence[str]
) -> dict[str, float]:
    """Mean nDCG@10, Recall@10, Recall@100 and MRR@10 of ``run`` over ``qids``.

    Relevance is binary (any positive qrels grade counts), as the app's own
    metrics (:mod:`sr3desk.search.metrics`) define it.
    """
    totals = dict.fromkeys(METRICS, 0.0)
    for qid in qids:
        ranked = run.get(qid, [])
        relevant: Collection[str] = {d for d, r in data.qrels[qid].items() if r > 0}
        totals["ndcg@10"] += ndcg_at_k(ranked, relevant, 10)
        totals["recall@10"] += recall_at_k(ranked, relevant, 10)
        totals["recall@100"] += recall_at_k(ranked, relevant, 100)
        totals["mrr@10"] += reciprocal_rank(ranked, relevant, 10)
    n = max(len(qids), 1)
    return {k: v / n for k, v in totals.items()}


def _tiebreak(ids: Sequence[str]) -> np.ndarray:
    """A fixed pseudo-random order of the passages, used only to break score ties.

    Corpus order would favour whichever passages come first (often the relevant
    ones, when a model gives every text the same vector).
    """
    return np.array([int(hashlib.md5(i.encode()).hexdigest()[:8], 16) for i in ids], np.int64)


def vector_hits(
    queries: np.ndarray, docs: np.ndarray, ids: Sequence[str], depth: int = DEPTH
) -> list[Hits]:
    """Passage ids with their cosine, best first, top ``depth`` per query: (Q, D) x (N, D)."""
    scores = queries @ docs.T  # (Q, N), rows are unit vectors
    tie = _tiebreak(ids)
    out = []
    for row in scores:
        order = np.lexsort((tie, -row))[:depth]
        out.append([(ids[i], float(row[i])) for i in order])
    return out


def rank_by_vectors(
    queries: np.ndarray, docs: np.ndarray, ids: Sequence[str], depth: int = DEPTH
) -> list[list[str]]:
    """Passage ids by cosine, best first, top ``depth`` per query: (Q, D) x (N, D)."""
    return [[pid for pid, _ in hits] for hits in vector_hits(queries, docs, ids, depth)]


@dataclass
class Retrieval:
    """One retriever's passages per query (best first, with scores) and facts about it."""

    hits: dict[str, Hits]
    info: dict[str, Any] = field(default_factory=dict)

    def run(self) -> dict[str, list[str]]:
        """Passage ids per query, best first."""
        return {qid: [pid for pid, _ in hits] for qid, hits in self.hits.items()}


def bm25_retrieval(data: BeirSet, qids: Sequence[str], depth: int = DEPTH) -> Retrieval:
    """BM25 hits with their scores (passages with a zero score are not retrieved)."""
    ids = list(data.corpus)
    index = BM25([data.corpus[i].full_text for i in ids])
    hits = {q: [(ids[i], s) for i, s in top_k(index.scores(data.queries[q]), depth)] for q in qids}
    return Retrieval(hits, {"kind": "bm25"})


def bm25_run(data: BeirSet, qids: Sequence[str], depth: int = DEPTH) -> dict[str, list[str]]:
    """BM25 rankings (passages with a zero score are not retrieved)."""
    return bm25_retrieval(data, qids, depth).run()


def model_run(
    gguf: str | Path,
    data: BeirSet,
    qids: Sequence[str],
    reason: bool = False,
    threads: int | None = None,
    depth: int = DEPTH,
    doc_cache: dict[str, np.ndarray] | None = None,
    max_reason_tokens: int | None = None,
) -> Retrieval:
    """Hits of one GGUF through the app's runtime, and facts about the run.

    ``doc_cache`` (model id -> passage vectors) lets a model given under two labels
    (with and without reasoning) embed the passages once. ``max_reason_tokens``: the
    reasoning budget with ``reason`` (None: the app's).
    """
    from sr3desk.model.runtime import DEFAULT_MAX_REASON_TOKENS, open_embedder

    budget = DEFAULT_MAX_REASON_TOKENS if max_reason_tokens is None else max_reason_tokens

    ids = list(data.corpus)
    t0 = time.perf_counter()
    with open_embedder(gguf, threads=threads) as embedder:
        cached = doc_cache.get(embedder.model_id) if doc_cache is not None else None
        if cached is None:
            docs = embedder.embed_documents([data.corpus[i].full_text for i in ids])
            if doc_cache is not None:
                doc_cache[embedder.model_id] = docs
        else:
            docs = cached
        t_docs = time.perf_counter() - t0
        embedded = [
            embedder.embed_query(data.queries[q], reason=reason, max_reason_tokens=budget)
            for q in qids
        ]
        info = {
            "kind": "gguf",
            "model": str(gguf),
            "model_name": embedder.info.name,
            "model_id": embedder.model_id,
            "stage": embedder.info.stage,
            "eval": embedder.info.eval,
            "reason": reason,
            "max_reason_tokens": budget if reason else None,
            "forced": sum(e.forced for e in embedded),
            "reason_tokens_p90": _p90([e.n_generated for e in embedded]) if reason else None,
            "seconds": round(time.perf_counter() - t0, 2),
            "docs_per_s": None if cached is not None else round(len(ids) / max(t_docs, 1e-9), 1),
        }
    queries = np.stack([e.vector for e in embedded]) if embedded else np.zeros((0, docs.shape[1]))
    hits = vector_hits(queries.astype(np.float32), docs, ids, depth)
    return Retrieval(dict(zip(qids, hits, strict=True)), info)


def _p90(values: Sequence[int]) -> float | None:
    """The 90th percentile of ``values`` (None when empty)."""
    return float(np.percentile(values, 90)) if values else None


def teacher_run(
    data: BeirSet, qids: Sequence[str], threads: int | None = None, depth: int = DEPTH
) -> Retrieval:
    """Hits of the teacher (all-MiniLM-L6-v2, :class:`training.teacher.Teacher`) by cosine."""
    from training.teacher import NAME, Teacher

    ids = list(data.corpus)
    t0 = time.perf_counter()
    teacher = Teacher(threads=threads or 0)
    docs = teacher.encode_passages([data.corpus[i].full_text for i in ids])
    t_docs = time.perf_counter() - t0
    queries = teacher.encode_queries([data.queries[q] for q in qids])
    info = {
        "kind": TEACHER,
        "model": NAME,
        "path": str(teacher.path),
        "seconds": round(time.perf_counter() - t0, 2),
        "docs_per_s": round(len(ids) / max(t_docs, 1e-9), 1),
    }
    hits = vector_hits(queries, docs, ids, depth)
    return Retrieval(dict(zip(qids, hits, strict=True)), info)


def select_queries(
    judged: Sequence[str], max_queries: int = 0, sample: int = 0, seed: int = 0
) -> list[str]:
    """The queries to evaluate: the first ``max_queries`` (0: all), then a seeded random
    sample of ``sample`` of them (0: all), in their file order.

    >>> select_queries(["a", "b", "c", "d"], sample=2, seed=0)
    ['b', 'd']
    """
    qids = list(judged[:max_queries] if max_queries else judged)
    if 0 < sample < len(qids):
        keep = set(random.Random(seed).sample(qids, sample))
        qids = [q for q in qids if q in keep]
    return qids
