"""Hard negatives: the best-scored passages that are not relevant to a query.

BM25 mines them when a dataset is built; ``python -m training.data mine`` re-mines
them with a model (the app's runtime). They are stored beside a training set as
``negatives.jsonl`` (query id -> passage ids, hardest first; :mod:`training.data.negatives`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from training.bm25 import BM25, top_k
from training.data.beir import BeirSet

# The file's format lives in its own module, which the training sets' reader
# (training.data.batches) imports without the miners.
from training.data.negatives import NEGATIVES, read_negatives, write_negatives

if TYPE_CHECKING:
    from sr3desk.model.base import Embedder
    from training.data.teacher_vectors import TeacherVectors

Scorer = Callable[[Sequence[str]], np.ndarray]


def bm25_scorer(texts: Sequence[str]) -> Scorer:
    """Score queries against ``texts`` with :class:`~training.bm25.BM25`."""
    index = BM25(texts)
    return lambda queries: (
        np.stack([index.scores(q) for q in queries])
        if queries
        else np.zeros((0, len(texts)), dtype=np.float32)
    )


def embedder_scorer(embedder: Embedder, texts: Sequence[str], batch: int = 64) -> Scorer:
    """Score queries by cosine with a model (the app's runtime) over ``texts``."""
    parts = [embedder.embed_documents(texts[i : i + batch]) for i in range(0, len(texts), batch)]
    matrix = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)

    def score(queries: Sequence[str]) -> np.ndarray:
        vecs = np.stack([embedder.embed_query(q).vector for q in queries])
        return vecs @ matrix.T

    return score


def teacher_scorer(
    vectors: TeacherVectors, query_ids: Mapping[str, str], passage_ids: Sequence[str]
) -> Scorer:
    """Score queries by the teacher's cached vectors over ``passage_ids``.

    ``query_ids`` maps each query text to its id in ``vectors``.
    """
    return lambda queries: vectors.scores([query_ids[q] for q in queries], passage_ids)


def mine_negatives(data: BeirSet, n: int, scorer: Scorer, batch: int = 256) -> dict[str, list[str]]:
    """For each judged query, the ``n`` best-scored passages that are not relevant to it."""
    ids = list(data.corpus)
    qids = data.judged_queries()
    out: dict[str, list[str]] = {}
    for start in range(0, len(qids), batch):
        block = qids[start : start + batch]
        scores = scorer([data.queries[q] for q in block])
        for row, qid in zip(scores, block, strict=True):
            relevant = {d for d, r in data.qrels[qid].items() if r > 0}
            hits = top_k(row, n + len(relevant))
            out[qid] = [ids[i] for i, _s in hits if ids[i] not in relevant][:n]
    return out


__all__ = [
    "NEGATIVES",
    "Scorer",
    "bm25_scorer",
    "embedder_scorer",
    "mine_negatives",
    "read_negatives",
    "teacher_scorer",
    "write_negatives",
]
