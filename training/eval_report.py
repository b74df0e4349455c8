"""The evaluation's table: a :class:`Report` of metrics per row, as text, markdown and JSON.

A model row's figures (and BM25's) also become its ``sr3.eval`` metadata
(:meth:`Report.sr3_eval`), which :func:`write_sr3_eval` puts where the exporter
reads it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.checkpoints import write_sidecar
from training.data.beir import BeirSet
from training.eval_fusion import FusionWeight
from training.eval_runs import METRICS, score_run

log = logging.getLogger(__name__)

# The markdown table's columns: the README's order.
MARKDOWN = (
    ("nDCG@10", "ndcg@10"),
    ("Recall@10", "recall@10"),
    ("MRR@10", "mrr@10"),
    ("Recall@100", "recall@100"),
)


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
