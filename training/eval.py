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
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sr3desk.errors import Sr3Error
from sr3desk.search.metrics import ndcg_at_k, recall_at_k, reciprocal_rank
from training.bm25 import BM25, top_k
from training.checkpoints import write_sidecar
from training.config import Config, ConfigError, from_mapping, read_yaml
from training.data.beir import BeirSet, load_beir

log = logging.getLogger(__name__)

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
DEPTH = 100


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


def rank_by_vectors(
    queries: np.ndarray, docs: np.ndarray, ids: Sequence[str], depth: int = DEPTH
) -> list[list[str]]:
    """Passage ids by cosine, best first, top ``depth`` per query: (Q, D) x (N, D)."""
    scores = queries @ docs.T  # (Q, N), rows are unit vectors
    tie = _tiebreak(ids)
    out = []
    for row in scores:
        order = np.lexsort((tie, -row))[:depth]
        out.append([ids[i] for i in order])
    return out


def bm25_run(data: BeirSet, qids: Sequence[str], depth: int = DEPTH) -> dict[str, list[str]]:
    """BM25 rankings (passages with a zero score are not retrieved)."""
    ids = list(data.corpus)
    index = BM25([data.corpus[i].full_text for i in ids])
    return {q: [ids[i] for i, _s in top_k(index.scores(data.queries[q]), depth)] for q in qids}


def model_run(
    gguf: str | Path,
    data: BeirSet,
    qids: Sequence[str],
    reason: bool = False,
    threads: int | None = None,
    depth: int = DEPTH,
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Rankings of one GGUF through the app's runtime, and facts about the run."""
    from sr3desk.model.runtime import open_embedder

    ids = list(data.corpus)
    t0 = time.perf_counter()
    with open_embedder(gguf, threads=threads) as embedder:
        docs = embedder.embed_documents([data.corpus[i].full_text for i in ids])
        t_docs = time.perf_counter() - t0
        embedded = [embedder.embed_query(data.queries[q], reason=reason) for q in qids]
        info = {
            "model": str(gguf),
            "model_name": embedder.info.name,
            "model_id": embedder.model_id,
            "stage": embedder.info.stage,
            "reason": reason,
            "forced": sum(e.forced for e in embedded),
            "seconds": round(time.perf_counter() - t0, 2),
            "docs_per_s": round(len(ids) / max(t_docs, 1e-9), 1),
        }
    queries = np.stack([e.vector for e in embedded]) if embedded else np.zeros((0, docs.shape[1]))
    ranked = rank_by_vectors(queries.astype(np.float32), docs, ids, depth)
    return dict(zip(qids, ranked, strict=True)), info


@dataclass
class Report:
    """Metrics per row label (``bm25`` and each model), with what was evaluated."""

    dataset: str
    split: str
    n_queries: int
    n_passages: int
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def sr3_eval(self, label: str) -> dict[str, Any]:
        """The ``sr3.eval`` metadata of model ``label``: its figures and BM25's."""
        row = self.rows[label]
        out: dict[str, Any] = {k: round(v, 4) for k, v in row.items()}
        if "bm25" in self.rows:
            for k, v in self.rows["bm25"].items():
                out[f"bm25_{k}"] = round(v, 4)
        out.update(dataset=self.dataset, split=self.split, queries=self.n_queries)
        return out

    def table(self) -> str:
        """The rows as a fixed-width text table."""
        head = f"{'model':<12}" + "".join(f"{m:>12}" for m in METRICS)
        lines = [
            f"held-out {self.dataset} ({self.split}): {self.n_queries} queries, "
            f"{self.n_passages} passages",
            head,
            "-" * len(head),
        ]
        for label, row in self.rows.items():
            lines.append(f"{label:<12}" + "".join(f"{row[m]:>12.4f}" for m in METRICS))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Everything, plus each model's ``sr3.eval`` dict."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "queries": self.n_queries,
            "passages": self.n_passages,
            "results": self.rows,
            "runs": self.runs,
            "sr3_eval": {label: self.sr3_eval(label) for label in self.rows if label != "bm25"},
        }


def dataset_name(folder: Path) -> str:
    """A short name for a held-out folder: ``<dataset>/<split folder>`` when built by us."""
    if (folder.parent / "manifest.json").is_file():
        return f"{folder.parent.name}/{folder.name}"
    return folder.name


def evaluate(
    folder: str | Path,
    models: Mapping[str, str | Path],
    split: str = "test",
    bm25: bool = True,
    reason: Collection[str] = (),
    threads: int | None = None,
    max_queries: int = 0,
) -> Report:
    """Evaluate BM25 and each ``label -> GGUF`` on a BEIR folder's ``split``.

    ``reason`` names the labels whose queries are embedded with reasoning.
    ``max_queries`` > 0 keeps the first that many judged queries.
    """
    root = Path(folder)
    data = load_beir(root, split)
    qids = data.judged_queries()
    if max_queries:
        qids = qids[:max_queries]
    if not qids:
        raise ValueError(f"{root} has no judged queries in split {split}")
    report = Report(dataset_name(root), split, len(qids), len(data.corpus))
    if bm25:
        report.rows["bm25"] = score_run(bm25_run(data, qids), data, qids)
    for label, path in models.items():
        run, info = model_run(path, data, qids, reason=label in reason, threads=threads)
        report.rows[label] = score_run(run, data, qids)
        report.runs[label] = info
        log.info("%s: %s", label, " ".join(f"{k} {v:.4f}" for k, v in report.rows[label].items()))
    return report


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
    parser.add_argument("--max-queries", type=int, default=0, help="first N queries only")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: cores)")
    parser.add_argument("--json", help="write the results here")
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
        )
    except (Sr3Error, ValueError) as exc:
        sys.stderr.write(f"training.eval: error: {exc}\n")
        return exc.exit_code if isinstance(exc, Sr3Error) else 2
    sys.stdout.write(report.table() + "\n")
    if ns.json:
        Path(ns.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ns.json).write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
        sys.stdout.write(f"results: {ns.json}\n")
    for label, target in targets.items():
        sys.stdout.write(f"sr3.eval of {label}: {write_sr3_eval(report, label, target)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
