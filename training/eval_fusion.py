"""The evaluation's fused rows: BM25 and a model's vectors as the app's hybrid search fuses them.

Each side is fetched to the searcher's depth for 10 results (:data:`FETCH`) and
fused by :func:`sr3desk.search.fusion.score_fuse` with its own scores; in a BEIR
set every passage is its own file. The vector side's weight (a
:class:`FusionWeight`) comes from the GGUF's ``sr3.eval`` (:func:`gguf_weight`),
from an earlier report (:func:`read_past_eval`) or from the run's own figures,
and records where it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sr3desk.index.types import ChunkHit
from sr3desk.model.ggufinfo import inspect_gguf
from sr3desk.search.calibration import from_eval, weight_from_scores
from sr3desk.search.fusion import Ranking, score_fuse
from sr3desk.search.searcher import MIN_FETCH, OVERFETCH
from training.eval_runs import Hits

K = 10  # files a search shows (SearchRequest's default k): the @10 of the metrics
FETCH = max(MIN_FETCH, OVERFETCH * K)  # passages each side of hybrid search fetches
HYBRID = "hybrid:"

# Where a fused row's vector weight came from.
SOURCE_GGUF = "sr3.eval"  # the GGUF's metadata, as the app reads it
SOURCE_FILE = "weights-from"  # an earlier report (--weights-from)
SOURCE_RUN = "this run"  # this run's own figures


def chunk_hits(hits: Hits) -> list[ChunkHit]:
    """Scored passages as the app's store returns them; each passage is its own file."""
    return [
        ChunkHit(
            chunk_id=pid,
            file_id=pid,
            path=pid,
            ext="",
            mtime=0.0,
            size=0,
            page=None,
            start=0,
            end=0,
            heading="",
            text="",
            score=score,
            rank=rank,
        )
        for rank, (pid, score) in enumerate(hits)
    ]


def fuse_run(
    keyword: Mapping[str, Hits], vector: Mapping[str, Hits], weight: float, fetch: int = FETCH
) -> dict[str, list[str]]:
    """The app's default hybrid ranking per query: :func:`score_fuse` of the top ``fetch``
    keyword hits and the top ``fetch`` vector hits, the vector side at ``weight``.

    Takes per-query hits of both sides (best first, with their own scores); returns
    file (= passage) ids best first.
    """
    out = {}
    for qid, kw in keyword.items():
        rankings = [
            Ranking("keyword", chunk_hits(kw[:fetch])),
            Ranking("vector", chunk_hits(vector[qid][:fetch]), weight),
        ]
        out[qid] = [group.file_id for group in score_fuse(rankings)]
    return out


@dataclass(frozen=True)
class FusionWeight:
    """The vector weight of a fused row and where it came from.

    ``source``: :data:`SOURCE_GGUF`, :data:`SOURCE_FILE` or :data:`SOURCE_RUN`;
    ``model_ndcg``/``bm25_ndcg``: the nDCG@10 figures it was mapped from;
    ``dataset``: the set they were measured on; ``origin``: the GGUF or JSON file
    read ("" for this run).
    """

    weight: float
    source: str
    model_ndcg: float | None = None
    bm25_ndcg: float | None = None
    dataset: str = ""
    origin: str = ""

    def describe(self) -> str:
        """One line: the weight and the figures behind it."""
        where = {
            SOURCE_GGUF: f"sr3.eval of {self.origin}",
            SOURCE_FILE: f"--weights-from {self.origin}",
        }.get(self.source, self.source)
        figures = f"nDCG@10 {self.model_ndcg:.4f} vs BM25 {self.bm25_ndcg:.4f}"
        on = f" on {self.dataset}" if self.dataset else ""
        return f"vector weight {self.weight:.4f}, from {where} ({figures}{on})"


@dataclass(frozen=True)
class PastEval:
    """The rows of an earlier ``training.eval --json`` report, for ``--weights-from``."""

    path: str
    dataset: str
    split: str
    rows: dict[str, dict[str, float]]

    def weight(self, label: str) -> FusionWeight:
        """Fusion weight of ``label`` from its nDCG@10 and BM25's in this report."""
        missing = [name for name in ("bm25", label) if name not in self.rows]
        if missing:
            raise ValueError(
                f"--weights-from {self.path} has no row {missing[0]!r} "
                f"(rows: {', '.join(self.rows)}): evaluate it there first"
            )
        model, bm25 = self.rows[label]["ndcg@10"], self.rows["bm25"]["ndcg@10"]
        dataset = f"{self.dataset} ({self.split})"
        return FusionWeight(
            weight_from_scores(model, bm25), SOURCE_FILE, model, bm25, dataset, self.path
        )


def read_past_eval(path: str | Path) -> PastEval:
    """Read a report written by ``python -m training.eval --json``; ValueError if it is not one."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = raw["results"]
        if not isinstance(rows, dict):
            raise TypeError("results is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"Cannot read --weights-from {path}: it should be a `training.eval --json` report "
            f"({exc})"
        ) from None
    return PastEval(str(path), str(raw.get("dataset", "")), str(raw.get("split", "")), rows)


def gguf_weight(gguf: str | Path) -> FusionWeight | None:
    """The weight the app gives this GGUF from its ``sr3.eval``; None without one."""
    evaluated = from_eval(inspect_gguf(gguf).eval)
    if evaluated is None:
        return None
    assert evaluated.model_score is not None and evaluated.keyword_score is not None
    return FusionWeight(
        evaluated.weight,
        SOURCE_GGUF,
        evaluated.model_score,
        evaluated.keyword_score,
        evaluated.dataset,
        str(gguf),
    )
