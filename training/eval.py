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

This module is the command line and :func:`evaluate`, which puts the rows
together; the rows' retrieval and metrics are :mod:`training.eval_runs`, the fused
rows :mod:`training.eval_fusion`, the table :mod:`training.eval_report` (their
names are importable from here too).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from sr3desk.errors import Sr3Error
from sr3desk.search.calibration import weight_from_scores
from training.config import Config, ConfigError, from_mapping, read_yaml
from training.data.beir import BeirSet, load_beir
from training.eval_fusion import (
    FETCH,
    HYBRID,
    SOURCE_FILE,
    SOURCE_GGUF,
    SOURCE_RUN,
    FusionWeight,
    K,
    PastEval,
    chunk_hits,
    fuse_run,
    gguf_weight,
    read_past_eval,
)
from training.eval_report import MARKDOWN, Report, dataset_name, write_sr3_eval
from training.eval_runs import (
    DEPTH,
    METRICS,
    TEACHER,
    Hits,
    Retrieval,
    bm25_retrieval,
    bm25_run,
    model_run,
    rank_by_vectors,
    score_run,
    select_queries,
    teacher_run,
    vector_hits,
)
from training.teacher import TeacherMissing

log = logging.getLogger(__name__)


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
    fuse = _checked_rows(models, teacher, fuse, max_queries, sample_queries)
    root = Path(folder)
    data = load_beir(root, split)
    judged = data.judged_queries()
    qids = select_queries(judged, max_queries, sample_queries, seed)
    if not qids:
        raise ValueError(f"{root} has no judged queries in split {split}")

    # Weights that do not depend on this run, settled before the long part: a missing
    # row in --weights-from fails now, not after every model has run.
    weights = _settled_weights(fuse, models, weights_from)

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
        _add_fused_row(report, data, qids, label, keyword, kept[label], weights[label])
    return report


def _checked_rows(
    models: Mapping[str, str | Path],
    teacher: bool,
    fuse: Sequence[str],
    max_queries: int,
    sample_queries: int,
) -> list[str]:
    """The fused labels, each once, after checking that the asked rows make sense."""
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
    return list(dict.fromkeys(fuse))


def _settled_weights(
    fuse: Sequence[str], models: Mapping[str, str | Path], weights_from: str | Path | None
) -> dict[str, FusionWeight | None]:
    """The fused rows' weights from the GGUFs' ``sr3.eval``, else from ``weights_from``;
    None where only this run's figures can give it."""
    past = read_past_eval(weights_from) if weights_from is not None else None
    weights: dict[str, FusionWeight | None] = {}
    for label in fuse:
        weights[label] = gguf_weight(models[label]) if label in models else None
        if weights[label] is None and past is not None:
            weights[label] = past.weight(label)
    return weights


def _add_fused_row(
    report: Report,
    data: BeirSet,
    qids: Sequence[str],
    label: str,
    keyword: Retrieval,
    vector: Retrieval,
    weight: FusionWeight | None,
) -> None:
    """Add row ``hybrid:LABEL``: ``keyword`` fused with ``vector`` at ``weight`` (None:
    from this run's nDCG@10 of ``label`` and BM25)."""
    if weight is None:
        bm25_row = report.rows.get("bm25") or score_run(_cut(keyword.run()), data, qids)
        model, kw = report.rows[label]["ndcg@10"], bm25_row["ndcg@10"]
        dataset = f"{report.dataset} ({report.split})"
        weight = FusionWeight(weight_from_scores(model, kw), SOURCE_RUN, model, kw, dataset)
    run = fuse_run(keyword.hits, vector.hits, weight.weight)
    info = {"kind": "hybrid", "of": label, "fetch": FETCH, "weight": weight.weight}
    report.add(HYBRID + label, run, data, info)
    report.fusion[HYBRID + label] = weight
    log.info("%s%s: %s", HYBRID, label, weight.describe())


def _cut(run: dict[str, list[str]], depth: int = DEPTH) -> dict[str, list[str]]:
    return {qid: ranked[:depth] for qid, ranked in run.items()}


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


def _parser() -> argparse.ArgumentParser:
    """The command line of ``python -m training.eval``."""
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
    return parser


def _report(ns: argparse.Namespace) -> tuple[Report, dict[str, str]]:
    """Evaluate what the parsed command line ``ns`` asks; returns the report and the
    ``--sr3-eval`` targets (label -> path). Raises ConfigError on a wrong command line."""
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
    return report, targets


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.eval``: print the table, write JSON; returns the exit status."""
    ns = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report, targets = _report(ns)
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


__all__ = [
    "DEPTH",
    "FETCH",
    "HYBRID",
    "MARKDOWN",
    "METRICS",
    "SOURCE_FILE",
    "SOURCE_GGUF",
    "SOURCE_RUN",
    "TEACHER",
    "BeirSet",
    "FusionWeight",
    "Hits",
    "K",
    "PastEval",
    "Report",
    "Retrieval",
    "bm25_retrieval",
    "bm25_run",
    "chunk_hits",
    "dataset_name",
    "evaluate",
    "fuse_run",
    "load_beir",
    "main",
    "model_run",
    "rank_by_vectors",
    "read_past_eval",
    "score_run",
    "select_queries",
    "teacher_run",
    "vector_hits",
    "write_sr3_eval",
]


if __name__ == "__main__":
    sys.exit(main())
