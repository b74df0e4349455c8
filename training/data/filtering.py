"""Dropping pseudo-queries the teacher cannot answer.

A pseudo-query made from structure is sometimes noise: a heading such as "Notes"
shared by a hundred sections, a cloze sentence that only says "See below." The
teacher (:mod:`training.teacher`) ranks every passage of the set for each query; a
query none of whose relevant passages reaches its top k is dropped.
"""

from __future__ import annotations

import logging

import numpy as np

from training.data.beir import BeirSet
from training.data.teacher_vectors import TeacherVectors

log = logging.getLogger(__name__)


def teacher_ranks(data: BeirSet, vectors: TeacherVectors, batch: int = 1024) -> dict[str, int]:
    """The teacher's best rank (0 = top) of a relevant passage, for each judged query.

    ``vectors`` must cover the queries and the corpus of ``data``; ranks are among all
    of ``data.corpus``. Returns query id -> rank.
    """
    ids = list(data.corpus)
    qids = data.judged_queries()
    ranks: dict[str, int] = {}
    column = {pid: j for j, pid in enumerate(ids)}
    for start in range(0, len(qids), batch):
        block = qids[start : start + batch]
        scores = vectors.scores(block, ids)  # (b, P)
        for row, qid in zip(scores, block, strict=True):
            relevant = [column[d] for d, r in data.qrels[qid].items() if r > 0 and d in column]
            if not relevant:
                continue
            best = float(row[relevant].max())
            ranks[qid] = int(np.count_nonzero(row > best))
    return ranks


def teacher_filter(data: BeirSet, vectors: TeacherVectors, k: int) -> list[str]:
    """Remove from ``data`` (in place) the queries whose relevant passages all rank below k.

    Returns the removed query ids.
    """
    ranks = teacher_ranks(data, vectors)
    dropped = [qid for qid, rank in ranks.items() if rank >= k]
    for qid in dropped:
        data.queries.pop(qid, None)
        data.qrels.pop(qid, None)
        data.query_meta.pop(qid, None)
    log.info(
        "teacher filter (top %d): kept %d of %d queries", k, len(ranks) - len(dropped), len(ranks)
    )
    return dropped


__all__ = ["teacher_filter", "teacher_ranks"]
