"""The teachers' rows of the search-set tables: what the training's teachers score on the
same passages the app indexed, the bar a trained model is measured against.

    MiniLM alone        all-MiniLM-L6-v2 (the v1 recipe's teacher), mean pooling
    bge-small alone     bge-small-en (the v2 recipe's teacher), [CLS], query instruction
    bge-small + rerank  bge-small's best 20 passages re-scored by the cross-encoder
                        (ms-marco-MiniLM-L-12-v2): the teachers' upper bound

Each model embeds every passage of the index (its text as the index stores it) and
every query; a file's score is its best passage's, as in the app. The passages are
read from the index the set was built into, so every row ranks the same text.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

MINILM = "MiniLM alone (v1 teacher)"
BGE = "bge-small alone (v2 teacher)"
BGE_RERANK = "bge-small + cross-encoder"
ROWS = (MINILM, BGE, BGE_RERANK)
RERANK_TOP = 20  # passages the cross-encoder re-scores per query


def index_passages(home: Path) -> tuple[list[str], list[str]]:
    """Every passage of the index in ``home``: (file paths, texts), one entry a passage."""
    from sr3desk.index.store import Store

    paths: list[str] = []
    texts: list[str] = []
    store = Store.open(home)
    try:
        for record in store.files():
            for hit in store.file_chunks(record.file_id):
                paths.append(hit.path)
                texts.append(f"{hit.heading}\n{hit.text}" if hit.heading else hit.text)
    finally:
        store.close()
    return paths, texts


def rank_files(scores: np.ndarray, paths: list[str], k: int = 10) -> list[str]:
    """Files by their best passage's score, best first; at most ``k``."""
    best: dict[str, float] = {}
    for i in np.argsort(-scores):
        path = paths[int(i)]
        if not np.isfinite(scores[int(i)]):
            break
        if path not in best:
            best[path] = float(scores[int(i)])
            if len(best) == k:
                break
    return list(best)


def teacher_runs(
    home: Path, queries: dict[str, str], reranker: Any
) -> tuple[dict[str, dict[str, list[str]]], dict[str, float]]:
    """Rank the files of the index in ``home`` for each query (id -> text) with each
    teacher; ``reranker`` (an open CrossEncoder, or None) adds the bge-small + rerank row.

    Returns (row -> query id -> ranked paths, row -> ms per query).
    """
    from training.teacher import BgeTeacher, Teacher

    paths, texts = index_passages(home)
    qids = list(queries)
    runs: dict[str, dict[str, list[str]]] = {}
    ms: dict[str, float] = {}
    bge_scores = None
    for row, make in ((MINILM, lambda: Teacher(max_tokens=256)), (BGE, lambda: BgeTeacher())):
        teacher = make()
        t0 = time.perf_counter()
        passages = teacher.encode_passages(texts)
        t1 = time.perf_counter()
        scores = teacher.encode_queries([queries[q] for q in qids]) @ passages.T
        ms[row] = (time.perf_counter() - t1) * 1000.0 / max(len(qids), 1)
        print(f"  {row}: {len(texts)} passages embedded in {t1 - t0:.0f} s", flush=True)
        runs[row] = {q: rank_files(scores[i], paths) for i, q in enumerate(qids)}
        if row == BGE:
            bge_scores = scores
    if reranker is not None and bge_scores is not None:
        t0 = time.perf_counter()
        ranked: dict[str, list[str]] = {}
        for i, q in enumerate(qids):
            top = np.argsort(-bge_scores[i])[:RERANK_TOP]
            ce = reranker.score(queries[q], [texts[int(j)] for j in top])
            rescored = np.full(len(texts), -np.inf, dtype=np.float32)
            rescored[top] = ce
            ranked[q] = rank_files(rescored, paths)
        runs[BGE_RERANK] = ranked
        ms[BGE_RERANK] = ms[BGE] + (time.perf_counter() - t0) * 1000.0 / max(len(qids), 1)
    return runs, ms
