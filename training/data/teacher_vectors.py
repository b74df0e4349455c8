"""The teacher's vectors of a training set, computed once and stored beside it.

``teacher.npz`` (in a BEIR training folder, or ``<file>.teacher.npz`` beside a
pair/triplet JSONL file) holds the teacher's normalised embedding of every query and
every passage, by id, in float16 (384 values, 768 bytes a text). The SFT loop reads a
batch's teacher scores from it with one small matrix product (:meth:`TeacherVectors.scores`),
so the distillation loss never runs the teacher.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from training.config.sft import Config
    from training.data.batches import TrainSet
    from training.teacher import BgeTeacher, Teacher

log = logging.getLogger(__name__)

TEACHER_VECTORS = "teacher.npz"


@dataclass
class TeacherVectors:
    """Teacher embeddings of queries and passages, looked up by id."""

    query_ids: list[str]
    queries: np.ndarray  # (Q, E) float16, rows of norm ~1
    passage_ids: list[str]
    passages: np.ndarray  # (P, E) float16

    def __post_init__(self) -> None:
        self._q = {qid: i for i, qid in enumerate(self.query_ids)}
        self._p = {pid: i for i, pid in enumerate(self.passage_ids)}

    def covers(self, query_ids: Sequence[str], passage_ids: Sequence[str]) -> bool:
        """True when every given query and passage id has a vector."""
        return all(q in self._q for q in query_ids) and all(p in self._p for p in passage_ids)

    def scores(self, query_ids: Sequence[str], passage_ids: Sequence[str]) -> np.ndarray:
        """The teacher's cosines: returns (len(query_ids), len(passage_ids)) float32."""
        q = self.queries[[self._q[i] for i in query_ids]].astype(np.float32)
        p = self.passages[[self._p[i] for i in passage_ids]].astype(np.float32)
        return q @ p.T


def vectors_path(train_path: str | Path) -> Path:
    """Where the teacher's vectors of a training set live (folder or JSONL file)."""
    p = Path(train_path)
    return p.with_name(p.name + ".teacher.npz") if p.is_file() else p / TEACHER_VECTORS


def write_teacher_vectors(path: Path, vectors: TeacherVectors) -> None:
    """Write ``vectors`` to ``path`` (npz, float16)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(
        tmp,
        query_ids=np.array(vectors.query_ids, dtype=str),
        queries=vectors.queries.astype(np.float16),
        passage_ids=np.array(vectors.passage_ids, dtype=str),
        passages=vectors.passages.astype(np.float16),
    )
    tmp.replace(path)


def read_teacher_vectors(path: Path) -> TeacherVectors | None:
    """Read what :func:`write_teacher_vectors` wrote; None when ``path`` does not exist."""
    if not path.is_file():
        return None
    with np.load(path) as data:
        return TeacherVectors(
            query_ids=[str(x) for x in data["query_ids"]],
            queries=data["queries"],
            passage_ids=[str(x) for x in data["passage_ids"]],
            passages=data["passages"],
        )


def compute_teacher_vectors(
    teacher: Teacher | BgeTeacher, queries: dict[str, str], passages: dict[str, str]
) -> TeacherVectors:
    """Embed ``queries`` and ``passages`` (id -> text) with ``teacher``."""
    qids, pids = list(queries), list(passages)
    log.info("teacher: embedding %d queries and %d passages", len(qids), len(pids))
    return TeacherVectors(
        query_ids=qids,
        queries=teacher.encode_queries([queries[i] for i in qids]).astype(np.float16),
        passage_ids=pids,
        passages=teacher.encode_passages([passages[i] for i in pids]).astype(np.float16),
    )


def ensure_teacher_vectors(
    train_path: str | Path, data: TrainSet, make_teacher: Callable[[], Teacher | BgeTeacher]
) -> TeacherVectors:
    """The cached teacher vectors of ``data``; computed with ``make_teacher()`` and stored
    at :func:`vectors_path` when missing or when they do not cover every id.
    """
    path = vectors_path(train_path)
    queries = {ex.query_id: ex.query for ex in data.examples}
    cached = read_teacher_vectors(path)
    if cached is not None and cached.covers(list(queries), list(data.corpus)):
        return cached
    vectors = compute_teacher_vectors(make_teacher(), queries, data.corpus)
    write_teacher_vectors(path, vectors)
    log.info("teacher vectors cached in %s", path)
    return vectors


__all__ = [
    "TEACHER_VECTORS",
    "TeacherVectors",
    "compute_teacher_vectors",
    "ensure_teacher_vectors",
    "read_teacher_vectors",
    "vectors_path",
    "write_teacher_vectors",
]


def teacher_vectors_for(cfg: Config, data: TrainSet) -> TeacherVectors:
    """The teacher's vectors of run config ``cfg``'s training set ``data`` (SFT and RL's
    distillation): read from beside the data, or computed once with the teacher the
    data build used (``data.build.teacher_max_tokens``, ``train.threads``).
    """

    def make_teacher() -> Teacher | BgeTeacher:
        from training.teacher import make_teacher as named

        build = cfg.data.build
        return named(build.teacher, build.teacher_max_tokens, cfg.train.threads)

    return ensure_teacher_vectors(cfg.data.train_path, data, make_teacher)
