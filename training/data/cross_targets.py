"""The cross-encoder's scores of each training query's own candidates, computed once at build time.

A cross-encoder reads the query and the passage together, so its scores rank better
than any bi-encoder's (ms-marco-MiniLM-L-12-v2, deep search's reranker: TREC-DL19
nDCG@10 74.3) and make better soft targets. It is too slow to score every pair of a
batch in the training loop (about 20 ms a pair on 2 CPU cores), so it scores what a
query always meets: its positive and its mined hard negatives. ``cross.npz`` beside
the training set holds them; :meth:`CrossTargets.batch` gives a batch's scores with a
mask of the pairs it knows, the targets of ``loss.cross_distill``.

The same scores clean the mined negatives: one the cross-encoder scores at or above
the query's positive is more likely relevant than not (a false negative), and is
dropped from the query's negatives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from training.data.beir import BeirSet

log = logging.getLogger(__name__)

CROSS_TARGETS = "cross.npz"

# Scores (query, passages) -> (len(passages),) float32.
PairScorer = Callable[[str, Sequence[str]], np.ndarray]


@dataclass
class CrossTargets:
    """Per query: its candidates' ids (positive first) and the cross-encoder's scores."""

    query_ids: list[str]
    doc_ids: np.ndarray  # (Q, C) str, "" where a query has fewer candidates
    scores: np.ndarray  # (Q, C) float32, nan where doc_ids is ""

    def __post_init__(self) -> None:
        self._pairs: dict[tuple[str, str], float] = {}
        for row, qid in enumerate(self.query_ids):
            for did, score in zip(self.doc_ids[row], self.scores[row], strict=True):
                if did:
                    self._pairs[(qid, str(did))] = float(score)

    def __len__(self) -> int:
        return len(self.query_ids)

    def batch(
        self, query_ids: Sequence[str], document_ids: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The scores of a batch's (query, document) pairs that the cross-encoder scored.

        Returns ``(scores, known)``: (len(query_ids), len(document_ids)) float32 (0 where
        unknown) and bool (True where scored).
        """
        scores = np.zeros((len(query_ids), len(document_ids)), dtype=np.float32)
        known = np.zeros(scores.shape, dtype=bool)
        for i, qid in enumerate(query_ids):
            for j, did in enumerate(document_ids):
                value = self._pairs.get((qid, did))
                if value is not None:
                    scores[i, j] = value
                    known[i, j] = True
        return scores, known


def compute_cross_targets(
    data: BeirSet, negatives: dict[str, list[str]], score: PairScorer
) -> tuple[CrossTargets, dict[str, list[str]]]:
    """Score each judged query of ``data`` against its positive and its ``negatives``.

    ``score(query, passages)`` is the cross-encoder. Returns the targets and the
    negatives without those scored at or above the query's positive.
    """
    qids = [q for q in data.judged_queries() if q in negatives]
    width = 1 + max((len(negatives[q]) for q in qids), default=0)
    doc_ids = np.full((len(qids), width), "", dtype=object)
    scores = np.full((len(qids), width), np.nan, dtype=np.float32)
    kept: dict[str, list[str]] = {}
    dropped = 0
    t0 = time.perf_counter()
    for row, qid in enumerate(qids):
        positive = sorted(p for p, rel in data.qrels[qid].items() if rel > 0)[0]
        candidates = [positive, *negatives[qid]]
        got = score(data.queries[qid], [data.corpus[d].full_text for d in candidates])
        doc_ids[row, : len(candidates)] = candidates
        scores[row, : len(candidates)] = got
        kept[qid] = [d for d, s in zip(candidates[1:], got[1:], strict=True) if s < got[0]]
        dropped += len(candidates) - 1 - len(kept[qid])
        if (row + 1) % 500 == 0:
            rate = (row + 1) / (time.perf_counter() - t0)
            log.info("cross-encoder: %d of %d queries (%.1f/s)", row + 1, len(qids), rate)
    for qid, negs in negatives.items():
        kept.setdefault(qid, negs)
    log.info(
        "cross-encoder: scored %d queries in %.0f s; dropped %d negatives scored at or "
        "above their positive",
        len(qids),
        time.perf_counter() - t0,
        dropped,
    )
    return CrossTargets(qids, doc_ids.astype(str), scores), kept


def cross_encoder_scorer(threads: int = 0) -> PairScorer:
    """The installed reranker (sr3desk.search.rerank) as a :data:`PairScorer`.

    ``threads`` 0: the physical cores. Raises RerankerError when it is not installed.
    """
    from sr3desk.search.rerank import CrossEncoder, default_reranker_dir, verify_install

    folder = default_reranker_dir()
    verify_install(folder)
    return CrossEncoder(folder, threads=threads or None, batch_size=8).score


def write_cross_targets(path: Path, targets: CrossTargets) -> None:
    """Write ``targets`` to ``path`` (npz), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(
        tmp,
        query_ids=np.array(targets.query_ids, dtype=str),
        doc_ids=targets.doc_ids.astype(str),
        scores=targets.scores.astype(np.float32),
    )
    tmp.replace(path)


def read_cross_targets(path: Path) -> CrossTargets | None:
    """Read what :func:`write_cross_targets` wrote; None when ``path`` does not exist."""
    if not path.is_file():
        return None
    with np.load(path) as data:
        return CrossTargets(
            query_ids=[str(x) for x in data["query_ids"]],
            doc_ids=data["doc_ids"],
            scores=data["scores"],
        )


def cross_targets_for(train_path: str | Path, weight: float) -> CrossTargets | None:
    """The cross-encoder targets beside the training set at ``train_path`` when the loss
    uses them (``weight`` = loss.cross_distill > 0), else None. Raises ConfigError when
    they are needed and missing.
    """
    if weight <= 0:
        return None
    from training.config import ConfigError

    path = Path(train_path) / CROSS_TARGETS
    targets = read_cross_targets(path)
    if targets is None:
        raise ConfigError(
            f"loss.cross_distill > 0 but {path} is missing: build the data with "
            "data.build.cross_targets: true"
        )
    return targets


def batch_tensors(
    targets: CrossTargets | None, query_ids: Sequence[str], document_ids: Sequence[str], device: Any
) -> tuple[Any, Any] | None:
    """A batch's ``(scores, known)`` as torch tensors on ``device`` (None without targets)."""
    if targets is None:
        return None
    import torch

    scores, known = targets.batch(query_ids, document_ids)
    return torch.from_numpy(scores).to(device), torch.from_numpy(known).to(device)


__all__ = [
    "CROSS_TARGETS",
    "CrossTargets",
    "PairScorer",
    "batch_tensors",
    "compute_cross_targets",
    "cross_encoder_scorer",
    "cross_targets_for",
    "read_cross_targets",
    "write_cross_targets",
]
