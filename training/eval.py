"""Held-out evaluation through the app's own llama.cpp runtime.

    python -m training.eval --config training/configs/tiny-cpu.yaml \\
        --model base=build/models/tiny-qwen2/tiny-qwen2.F32.gguf \\
        --model sft=build/runs/tiny/sft.F32.gguf --json build/runs/tiny/eval.json \\
        --sr3-eval sft=build/runs/tiny/sft/final

Ranks every held-out passage for every held-out query with BM25 and with each
GGUF (opened with :func:`sr3desk.model.runtime.open_embedder`, exactly as the app
opens it: same prompts, same token, same truncation), and reports nDCG@10,
Recall@10, Recall@100 and MRR@10 as one table and as JSON. What the app measures
against is the same: the model's figures and BM25's go into the GGUF's
``sr3.eval`` metadata (``--sr3-eval LABEL=HF_DIR`` puts them into that checkpoint's
``sr3.json``, which ``python -m training.export`` writes into the GGUF; a
``.json`` path instead writes a file for ``training.export --eval-json``), and the
app's search weighs vector results against keyword results by them.

More rows, for the README's tables:

* ``--teacher``: all-MiniLM-L6-v2 through its own library (:mod:`training.teacher`),
  ranked by cosine like the models (row ``teacher``).
* ``--fuse LABEL`` (a ``--model`` label or ``teacher``): row ``hybrid:LABEL``, BM25
  fused with that row's vectors as the app's default hybrid search fuses them
  (:func:`sr3desk.search.fusion.score_fuse` of passage hits, each side fetched to the
  searcher's depth for 10 results, with its own scores: BM25 and cosine). In a BEIR
  set every passage is its own file. The vector weight is the app's: from the GGUF's
  ``sr3.eval`` (:func:`sr3desk.search.calibration.from_eval`) when it has one, else
  from ``--weights-from JSON`` (an earlier ``--json`` report, e.g. of the held-out
  split, so a cross-domain set's weight is not fitted on itself), else from this
  run's own figures; the report records each weight and its source. A fused list
  holds at most the two fetched lists, so its Recall@100 counts those files.
* ``--sample-queries N --seed S``: a seeded random sample of the judged queries.
* ``--markdown``: the table as GitHub markdown (stdout then holds only the table and
  the weights under it; the other messages go to the log).

A model may be given twice under two labels, e.g. ``--model sft=X.gguf --model
sft-reason=X.gguf --reason sft-reason``; its passages are embedded once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sr3desk.errors import Sr3Error
from sr3desk.index.types import ChunkHit
from sr3desk.model.ggufinfo import inspect_gguf
from sr3desk.search.calibration import from_eval, weight_from_scores
from sr3desk.search.fusion import Ranking, score_fuse
from sr3desk.search.metrics import ndcg_at_k, recall_at_k, reciprocal_rank
from sr3desk.search.searcher import MIN_FETCH, OVERFETCH
from training.bm25 import BM25, top_k
from training.checkpoints import write_sidecar
from training.config import Config, ConfigError, from_mapping, read_yaml
from training.data.beir import BeirSet, load_beir
from training.teacher import TeacherMissing

log = logging.getLogger(__name__)

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
DEPTH = 100
K = 10  # files a search shows (SearchRequest's default k): the @10 of the metrics
FETCH = max(MIN_FETCH, OVERFETCH * K)  # passages each side of hybrid search fetches
TEACHER = "teacher"
HYBRID = "hybrid:"

# Where a fused row's vector weight came from.
SOURCE_GGUF = "sr3.eval"  # the GGUF's metadata, as the app reads it
SOURCE_FILE = "weights-from"  # an earlier report (--weights-from)
SOURCE_RUN = "this run"  # this run's own figures

# The markdown table's columns: the README's order.
MARKDOWN = (
    ("nDCG@10", "ndcg@10"),
    ("Recall@10", "recall@10"),
    ("MRR@10", "mrr@10"),
    ("Recall@100", "recall@100"),
)

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


@dataclass
class Report:
    """Metrics per row label (``bm25``, each model, ``teacher``, ``hybrid:LABEL``), with
    what was evaluated.

    ``runs``: facts per row; ``fusion``: the weight of each fused row; ``sample``:
    the query sample (size, seed, pool), None when every query was used;
    ``rankings``: each row's passage ids per query, best first (not in the JSON).
    """

    dataset: str
    split: str
    n_queries: int
    n_passages: int
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    fusion: dict[str, FusionWeight] = field(default_factory=dict)
    sample: dict[str, int] | None = None
    rankings: dict[str, dict[str, list[str]]] = field(default_factory=dict, repr=False)

    def add(
        self, label: str, run: Mapping[str, Sequence[str]], data: BeirSet, info: dict[str, Any]
    ) -> None:
        """Score ``run`` (passage ids per query) and add it as row ``label``."""
        self.rows[label] = score_run(run, data, list(run))
        self.runs[label] = info
        self.rankings[label] = {q: list(ranked) for q, ranked in run.items()}
        log.info("%s: %s", label, " ".join(f"{k} {v:.4f}" for k, v in self.rows[label].items()))

    def sr3_eval(self, label: str) -> dict[str, Any]:
        """The ``sr3.eval`` metadata of model ``label``: its figures and BM25's, and,
        when the same GGUF was also evaluated the other way (with or without
        reasoning), its reasoned figures as ``reason_*`` beside the plain ones."""
        plain, reasoned = self._reason_pair(label)
        row = self.rows[plain]
        out: dict[str, Any] = {k: round(v, 4) for k, v in row.items()}
        if reasoned is not None:
            for k, v in self.rows[reasoned].items():
                out[f"reason_{k}"] = round(v, 4)
            p90 = self.runs[reasoned].get("reason_tokens_p90")
            if p90 is not None:
                out["reason_tokens_p90"] = round(float(p90), 1)
        if "bm25" in self.rows:
            for k, v in self.rows["bm25"].items():
                out[f"bm25_{k}"] = round(v, 4)
        out.update(dataset=self.dataset, split=self.split, n_queries=self.n_queries)
        return out

    def _reason_pair(self, label: str) -> tuple[str, str | None]:
        """The labels of ``label``'s GGUF evaluated without and with reasoning.

        Returns (plain, reasoned): ``label`` itself where it is the only run of its
        file, and None for the reasoned one when none was made.
        """
        info = self.runs.get(label, {})
        twins = [
            other
            for other, run in self.runs.items()
            if run.get("kind") == "gguf" and run.get("model_id") == info.get("model_id")
        ]
        plain = [t for t in twins if not self.runs[t].get("reason")]
        reasoned = [t for t in twins if self.runs[t].get("reason")]
        if not info.get("reason"):
            return label, reasoned[0] if reasoned else None
        return (plain[0], label) if plain else (label, None)

    def title(self) -> str:
        """What was evaluated, in one line."""
        queries = f"{self.n_queries} queries"
        if self.sample is not None:
            queries += f" (a seeded sample of {self.sample['from']}, seed {self.sample['seed']})"
        return f"held-out {self.dataset} ({self.split}): {queries}, {self.n_passages} passages"

    def weight_notes(self) -> list[str]:
        """One line per fused row: its vector weight and where it came from."""
        return [f"{label}: {weight.describe()}" for label, weight in self.fusion.items()]

    def table(self) -> str:
        """The rows as a fixed-width text table, the fusion weights under it."""
        width = max([12, *(len(label) + 2 for label in self.rows)])
        head = f"{'model':<{width}}" + "".join(f"{m:>12}" for m in METRICS)
        lines = [self.title(), head, "-" * len(head)]
        for label, row in self.rows.items():
            lines.append(f"{label:<{width}}" + "".join(f"{row[m]:>12.4f}" for m in METRICS))
        notes = self.weight_notes()
        return "\n".join(lines + (["", *notes] if notes else []))

    def markdown(self) -> str:
        """The rows as a GitHub markdown table (the README's columns), the weights as a list."""
        lines = [
            self.title(),
            "",
            "| model | " + " | ".join(name for name, _ in MARKDOWN) + " |",
            "| --- |" + " ---: |" * len(MARKDOWN),
        ]
        for label, row in self.rows.items():
            cells = " | ".join(f"{row[key]:.4f}" for _, key in MARKDOWN)
            lines.append(f"| {label} | {cells} |")
        notes = self.weight_notes()
        return "\n".join(lines + (["", *(f"- {n}" for n in notes)] if notes else []))

    def to_json(self) -> dict[str, Any]:
        """Everything, plus each GGUF model's ``sr3.eval`` dict."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "queries": self.n_queries,
            "passages": self.n_passages,
            "sample": self.sample,
            "results": self.rows,
            "runs": self.runs,
            "fusion": {label: asdict(weight) for label, weight in self.fusion.items()},
            "sr3_eval": {
                label: self.sr3_eval(label)
                for label, run in self.runs.items()
                if run.get("kind") == "gguf"
            },
        }


def dataset_name(folder: Path) -> str:
    """A short name for a held-out folder: ``<dataset>/<split folder>`` when built by us."""
    if (folder.parent / "manifest.json").is_file():
        return f"{folder.parent.name}/{folder.name}"
    return folder.name


def _gguf_weight(gguf: str | Path) -> FusionWeight | None:
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


def evaluate(
    folder: str | Path,
    models: Mapping[str, str | Path],
    split: str = "test",
    bm25: bool = True,
    reason: Collection[str] = (),
    threads: int | None = None,
    max_queries: int = 0,
    *,
    teacher: bool = False,
    fuse: Sequence[str] = (),
    weights_from: str | Path | None = None,
    sample_queries: int = 0,
    seed: int = 0,
    max_reason_tokens: int | None = None,
) -> Report:
    """Evaluate BM25 and each ``label -> GGUF`` on a BEIR folder's ``split``.

    ``reason`` names the labels whose queries are embedded with reasoning.
    ``max_queries`` > 0 keeps the first that many judged queries; ``sample_queries``
    > 0 then draws that many of them at random with ``seed``. ``teacher`` adds the
    teacher's row. Each label in ``fuse`` (a model label or ``teacher``) adds the row
    ``hybrid:LABEL``, weighted from the GGUF's ``sr3.eval``, else from the report
    ``weights_from``, else from this run's figures. ``max_reason_tokens`` bounds
    the reasoning of the ``reason`` labels (None: the app's budget). Rows come in that order: BM25
    (unless ``bm25`` is False), the models, the teacher, the fused rows.
    """
    known = [*models, *([TEACHER] if teacher else [])]
    if TEACHER in models and teacher:
        raise ValueError(f"{TEACHER!r} is the teacher's row: give the model another label")
    for label in fuse:
        if label not in known:
            hint = " (add --teacher)" if label == TEACHER else ""
            raise ValueError(
                f"cannot fuse {label!r}: not a model label ({', '.join(known) or 'none'}){hint}"
            )
    if sample_queries < 0 or max_queries < 0:
        raise ValueError("query counts must be >= 0")
    fuse = list(dict.fromkeys(fuse))
    root = Path(folder)
    data = load_beir(root, split)
    judged = data.judged_queries()
    qids = select_queries(judged, max_queries, sample_queries, seed)
    if not qids:
        raise ValueError(f"{root} has no judged queries in split {split}")

    # Weights that do not depend on this run, settled before the long part: a missing
    # row in --weights-from fails now, not after every model has run.
    past = read_past_eval(weights_from) if weights_from is not None else None
    weights: dict[str, FusionWeight | None] = {}
    for label in fuse:
        weights[label] = _gguf_weight(models[label]) if label in models else None
        if weights[label] is None and past is not None:
            weights[label] = past.weight(label)

    report = Report(dataset_name(root), split, len(qids), len(data.corpus))
    if sample_queries:
        pool = len(judged[:max_queries] if max_queries else judged)
        report.sample = {"size": len(qids), "seed": seed, "from": pool}
    depth = max(DEPTH, FETCH)  # one retrieval serves both its row and its fused row
    keyword = bm25_retrieval(data, qids, depth) if bm25 or fuse else None
    if bm25 and keyword is not None:
        report.add("bm25", _cut(keyword.run()), data, keyword.info)
    kept: dict[str, Retrieval] = {}  # the vector sides of the fused rows
    doc_cache: dict[str, np.ndarray] = {}
    for label, path in models.items():
        got = model_run(
            path, data, qids, label in reason, threads, depth, doc_cache, max_reason_tokens
        )
        report.add(label, _cut(got.run()), data, got.info)
        if label in fuse:
            kept[label] = got
    if teacher:
        got = teacher_run(data, qids, threads, depth)
        report.add(TEACHER, _cut(got.run()), data, got.info)
        if TEACHER in fuse:
            kept[TEACHER] = got
    for label in fuse:
        assert keyword is not None
        weight = weights[label]
        if weight is None:
            bm25_row = report.rows.get("bm25") or score_run(_cut(keyword.run()), data, qids)
            model, kw = report.rows[label]["ndcg@10"], bm25_row["ndcg@10"]
            dataset = f"{report.dataset} ({split})"
            weight = FusionWeight(weight_from_scores(model, kw), SOURCE_RUN, model, kw, dataset)
        run = fuse_run(keyword.hits, kept[label].hits, weight.weight)
        info = {"kind": "hybrid", "of": label, "fetch": FETCH, "weight": weight.weight}
        report.add(HYBRID + label, run, data, info)
        report.fusion[HYBRID + label] = weight
        log.info("%s%s: %s", HYBRID, label, weight.describe())
    return report


def _cut(run: dict[str, list[str]], depth: int = DEPTH) -> dict[str, list[str]]:
    return {qid: ranked[:depth] for qid, ranked in run.items()}


def write_sr3_eval(report: Report, label: str, target: str | Path) -> Path:
    """Put model ``label``'s ``sr3.eval`` dict where the exporter reads it.

    A folder (an HF checkpoint) gets it as ``eval`` in its ``sr3.json``; a ``.json``
    path gets the dict itself (for ``python -m training.export --eval-json``).
    """
    path = Path(target)
    metrics = report.sr3_eval(label)
    if path.is_dir():
        return write_sidecar(path, eval=metrics)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return path


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        label, sep, value = item.partition("=")
        if not sep or not label or not value:
            raise ConfigError(f"{what} {item!r}: write LABEL=PATH, e.g. sft=build/sft.gguf")
        if label in out:
            raise ConfigError(f"{what} {item!r}: label {label!r} is given twice")
        out[label] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.eval``: print the table, write JSON; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m training.eval",
        description="Evaluate BM25 and GGUF models on a held-out BEIR split, through "
        "the app's llama.cpp runtime.",
    )
    parser.add_argument("--data", help="held-out BEIR folder (default: the config's)")
    parser.add_argument("--config", help="training YAML whose data.* names the held-out set")
    parser.add_argument("--split", help="qrels split (default: the config's, else test)")
    parser.add_argument(
        "--model", action="append", default=[], metavar="LABEL=GGUF", help="a model row"
    )
    parser.add_argument("--no-bm25", action="store_true", help="leave out the BM25 row")
    parser.add_argument(
        "--reason",
        action="append",
        default=[],
        metavar="LABEL",
        help="embed its queries after reasoning (as the app's deep search does)",
    )
    parser.add_argument(
        "--max-reason-tokens",
        type=int,
        help="reasoning budget of the --reason rows (default: the app's)",
    )
    parser.add_argument(
        "--teacher", action="store_true", help="add the teacher's row (all-MiniLM-L6-v2)"
    )
    parser.add_argument(
        "--fuse",
        action="append",
        default=[],
        metavar="LABEL",
        help="add row hybrid:LABEL: BM25 fused with LABEL (a --model label or teacher) as "
        "the app's hybrid search does",
    )
    parser.add_argument(
        "--weights-from",
        metavar="JSON",
        help="an earlier --json report whose figures give the fusion weights of models "
        "without sr3.eval (default: this run's figures)",
    )
    parser.add_argument("--max-queries", type=int, default=0, help="first N queries only")
    parser.add_argument(
        "--sample-queries", type=int, default=0, metavar="N", help="a random sample of N queries"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample-queries")
    parser.add_argument(
        "--threads", type=int, help="llama.cpp and teacher threads (default: cores)"
    )
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the table as GitHub markdown (other messages go to the log)",
    )
    parser.add_argument(
        "--sr3-eval",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="write LABEL's sr3.eval into PATH/sr3.json (an HF checkpoint) or PATH.json",
    )
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        split = ns.split
        folder = ns.data
        if ns.config:
            cfg = from_mapping(Config, read_yaml(ns.config))
            folder = folder or str(cfg.data.heldout_path)
            split = split or cfg.data.heldout_split
        if not folder:
            raise ConfigError("give --data FOLDER or --config YAML")
        models = _pairs(ns.model, "--model")
        targets = _pairs(ns.sr3_eval, "--sr3-eval")
        for label in [*targets, *ns.reason]:
            if label not in models:
                raise ConfigError(f"{label!r} is not a --model label ({', '.join(models)})")
        report = evaluate(
            folder,
            models,
            split or "test",
            not ns.no_bm25,
            set(ns.reason),
            ns.threads,
            ns.max_queries,
            teacher=ns.teacher,
            fuse=ns.fuse,
            weights_from=ns.weights_from,
            sample_queries=ns.sample_queries,
            seed=ns.seed,
            max_reason_tokens=ns.max_reason_tokens,
        )
    except (Sr3Error, ValueError, TeacherMissing) as exc:
        sys.stderr.write(f"training.eval: error: {exc}\n")
        return exc.exit_code if isinstance(exc, Sr3Error) else 2
    sys.stdout.write((report.markdown() if ns.markdown else report.table()) + "\n")

    def say(line: str) -> None:
        # With --markdown, stdout is the table alone (it is pasted or redirected).
        if ns.markdown:
            log.info("%s", line)
        else:
            sys.stdout.write(line + "\n")

    if ns.json:
        Path(ns.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ns.json).write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
        say(f"results: {ns.json}")
    for label, target in targets.items():
        say(f"sr3.eval of {label}: {write_sr3_eval(report, label, target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
