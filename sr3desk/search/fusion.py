"""Fusing ranked passage lists into one ranked list of files.

Each retriever (full text, vectors) returns passages best first. A result is a
file, so both fusions work at file level: a file's evidence from a list is its
best passage there. Fusing files (rather than fusing passages and then
grouping) keeps a long file with many mediocre passages from outranking a short
file whose one passage is the best match in both lists.

:func:`score_fuse` (the searcher's default) is a weighted sum of min-max
normalised scores: per list, the best passage scores 1 and the last returned 0,
and a file scores ``sum_i w_i * best_i(file) / sum_i w_i``.

:func:`rrf_fuse` is weighted reciprocal-rank fusion (Cormack et al., 2009):
``sum_i w_i / (k0 + rank_i(file))`` with ``k0 = 60``; it uses ranks only. It is
kept as the baseline that benchmarks compare against, not offered in search:
with a weak model at a misjudged weight (the untrained smollm2-sr3 calibrated
to 0.35 on one CPU) it fell below keyword search (nDCG@10 0.900 vs 0.966) where
score fusion at the same weight held (0.977), so it cannot keep the guarantee.

Why scores by default: measured with ``bench/search_quality.py``'s set (150
Python docs pages, nDCG@10; keyword alone 0.94), a weak model (the untrained
smollm2-sr3, vector alone 0.42) fused at weights 1 / 0.5 / 0.25 gave 0.75 /
0.78 / 0.83 with RRF but 0.89 / 0.93 / 0.95 with scores; a lexical model (a
hashed bag of words, vector alone 0.89) gave 0.93 / 0.93 / 0.93 with RRF and
0.94 / 0.95 / 0.94 with scores. Ranks throw away how sure a list is: BM25
usually puts the right page far above the rest while a weak model's scores are
flat, and min-max scaling keeps that difference where RRF does not. So with
scores a misjudged weight costs far less.

The weights carry how much a retriever deserves to be trusted (see
:mod:`sr3desk.search.calibration`). With the vector weight at 0 either fusion
returns every file the full-text list found in exactly the full-text order;
files only the vectors found follow, in vector order, so they can fill a short
list but never push a keyword hit down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from sr3desk.index.types import ChunkHit

RRF_K = 60


@dataclass(frozen=True)
class Ranking:
    """One retriever's passages, best first, and the weight of its vote (>= 0).

    ``blind``: ids of files and passages this retriever could not see (not yet
    embedded, for the vector side). A missing vote there means "unknown", not
    "irrelevant", so it is imputed as the mean of the votes the item got from
    the lists that could see it: a partly embedded index does not push the
    files still waiting for their vectors below the embedded ones.
    """

    name: str
    hits: Sequence[ChunkHit]
    weight: float = 1.0
    blind: frozenset[str] = frozenset()


@dataclass
class ScoredChunk:
    """A passage with its fused score and its 1-based rank in each list that had it."""

    hit: ChunkHit
    score: float
    ranks: dict[str, int] = field(default_factory=dict)


@dataclass
class FileGroup:
    """A file in the fused ranking: its score and its passages, best first.

    ``score`` is the fused score (for single-list modes: the best passage's own
    score); ``ranks`` gives the file's 1-based rank in each list that found it.
    """

    file_id: str
    path: str
    score: float
    chunks: list[ScoredChunk]
    ranks: dict[str, int] = field(default_factory=dict)

    @property
    def best(self) -> ChunkHit:
        """The file's best passage."""
        return self.chunks[0].hit


def file_ranks(hits: Sequence[ChunkHit]) -> dict[str, int]:
    """Return each file's 1-based rank in a passage list (rank of its first passage)."""
    ranks: dict[str, int] = {}
    for hit in hits:
        if hit.file_id not in ranks:
            ranks[hit.file_id] = len(ranks) + 1
    return ranks


def _tiebreak(ranks: dict[str, int], order: Sequence[str]) -> tuple[float, ...]:
    # Equal fused scores (notably 0 when a list's weight is 0): earlier lists first,
    # so with the vector weight at 0 the keyword order is kept exactly.
    return tuple(ranks.get(name, math.inf) for name in order)


def rrf_fuse(rankings: Sequence[Ranking], k0: int = RRF_K) -> list[FileGroup]:
    """Fuse passage rankings into files by weighted reciprocal-rank fusion.

    Takes the rankings (best first each) and RRF's ``k0``; returns files best
    first, each with its passages ordered by their own fused score (passage
    ranks fused the same way). Scores are normalised so that a file first in
    every list with positive weight scores 1.0.
    """
    if any(r.weight < 0 for r in rankings):
        raise ValueError("fusion weights must be >= 0")
    order = [r.name for r in rankings]
    top = sum(r.weight for r in rankings) / (k0 + 1) or 1.0

    def fused(ranks: dict[str, int], key: str) -> float:
        votes = {name: 1.0 / (k0 + rank) for name, rank in ranks.items()}
        mean = sum(votes.values()) / len(votes)
        total = 0.0
        for r in rankings:
            if r.name in votes:
                total += r.weight * votes[r.name]
            elif key in r.blind:
                total += r.weight * mean
        return total / top

    files: dict[str, FileGroup] = {}
    chunks: dict[str, ScoredChunk] = {}
    for ranking in rankings:
        for file_id, rank in file_ranks(ranking.hits).items():
            group = files.get(file_id)
            if group is None:
                hit = next(h for h in ranking.hits if h.file_id == file_id)
                group = files[file_id] = FileGroup(file_id, hit.path, 0.0, [])
            group.ranks[ranking.name] = rank
        for rank, hit in enumerate(ranking.hits, start=1):
            sc = chunks.get(hit.chunk_id)
            if sc is None:
                # A passage found by both lists keeps the first list's fields.
                sc = chunks[hit.chunk_id] = ScoredChunk(hit, 0.0)
                files[hit.file_id].chunks.append(sc)
            sc.ranks.setdefault(ranking.name, rank)
    for group in files.values():
        group.score = fused(group.ranks, group.file_id)
        for sc in group.chunks:
            sc.score = fused(sc.ranks, sc.hit.chunk_id)
        group.chunks.sort(key=lambda c: (-c.score, _tiebreak(c.ranks, order)))
    return sorted(files.values(), key=lambda g: (-g.score, _tiebreak(g.ranks, order)))


def group_hits(hits: Sequence[ChunkHit], name: str = "single") -> list[FileGroup]:
    """Group one passage list by file, keeping its order; a file scores its best passage.

    Used by the single-retriever modes, where the store's own score (BM25 or
    cosine) is more telling to a user than a rank-derived one.
    """
    files: dict[str, FileGroup] = {}
    for rank, hit in enumerate(hits, start=1):
        group = files.get(hit.file_id)
        if group is None:
            group = files[hit.file_id] = FileGroup(
                hit.file_id, hit.path, hit.score, [], {name: len(files) + 1}
            )
        group.chunks.append(ScoredChunk(hit, hit.score, {name: rank}))
    return list(files.values())


def _minmax(hits: Sequence[ChunkHit]) -> dict[str, float]:
    if not hits:
        return {}
    scores = [h.score for h in hits]
    lo, hi = min(scores), max(scores)
    span = hi - lo
    out: dict[str, float] = {}
    for h in hits:
        # A list whose scores are all equal says only "these matched": 1.0 each.
        out.setdefault(h.chunk_id, (h.score - lo) / span if span > 0 else 1.0)
    return out


def score_fuse(rankings: Sequence[Ranking]) -> list[FileGroup]:
    """Fuse by a weighted sum of min-max normalised scores, at file level.

    Each list's scores are scaled to [0, 1] over the passages it returned (its
    best 1, its last 0); a file gets, per list, the best scaled score of its
    passages (0 when the list did not return it, imputed for blind files as in
    :func:`rrf_fuse`), and its score is the weighted sum with the weights
    normalised to sum to 1, so scores lie in [0, 1]. Passages within a file are
    ordered the same way. Returns files best first.
    """
    total = sum(r.weight for r in rankings) or 1.0
    order = [r.name for r in rankings]

    def fused(parts: dict[str, float], key: str, file_id: str) -> float:
        mean = sum(parts.values()) / len(parts)
        out = 0.0
        for r in rankings:
            if r.name in parts:
                out += r.weight / total * parts[r.name]
            elif key in r.blind or file_id in r.blind:
                out += r.weight / total * mean
        return out

    files: dict[str, FileGroup] = {}
    chunks: dict[str, ScoredChunk] = {}
    file_parts: dict[str, dict[str, float]] = {}
    chunk_parts: dict[str, dict[str, float]] = {}
    for ranking in rankings:
        norm = _minmax(ranking.hits)
        for rank, hit in enumerate(ranking.hits, start=1):
            group = files.get(hit.file_id)
            if group is None:
                group = files[hit.file_id] = FileGroup(hit.file_id, hit.path, 0.0, [])
            parts = file_parts.setdefault(hit.file_id, {})
            parts[ranking.name] = max(parts.get(ranking.name, 0.0), norm[hit.chunk_id])
            sc = chunks.get(hit.chunk_id)
            if sc is None:
                sc = chunks[hit.chunk_id] = ScoredChunk(hit, 0.0)
                group.chunks.append(sc)
            sc.ranks.setdefault(ranking.name, rank)
            chunk_parts.setdefault(hit.chunk_id, {}).setdefault(ranking.name, norm[hit.chunk_id])
        for file_id, rank in file_ranks(ranking.hits).items():
            files[file_id].ranks[ranking.name] = rank
    for group in files.values():
        group.score = fused(file_parts[group.file_id], group.file_id, group.file_id)
        for sc in group.chunks:
            sc.score = fused(chunk_parts[sc.hit.chunk_id], sc.hit.chunk_id, group.file_id)
        group.chunks.sort(key=lambda c: (-c.score, _tiebreak(c.ranks, order)))
    return sorted(files.values(), key=lambda g: (-g.score, _tiebreak(g.ranks, order)))


__all__ = [
    "RRF_K",
    "FileGroup",
    "Ranking",
    "ScoredChunk",
    "file_ranks",
    "group_hits",
    "rrf_fuse",
    "score_fuse",
]
