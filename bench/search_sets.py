"""Search quality on every labelled set, in one command: keyword, vector, hybrid,
reasoning and deep search, per set and side by side.

The sets (bench/realsets.py, bench/search_quality.py), none of them trained on:

    python-docs  python3.11-doc   Python library reference   query = a module's :synopsis:
    emacs-lisp   emacs-el         Emacs editor libraries     query = ";;; x.el --- LINE"
    gnome-help   gnome-user-docs  GNOME desktop user help    query = a page's <desc>
    gnuplot      gnuplot-doc      plotting program manual    the CPU recipe's cross-domain
                                                             set (heading and cloze queries)

Each set is written to ``--work``/NAME/docs and indexed into NAME/home with the
real indexer and the model; a later run with the same documents, model and chunking
reuses the index (and the searcher's cached calibration). Then every query runs as
keyword search, vector search and the default hybrid search (the searcher measures
its own vector weight, as the app does); the first ``--reason-queries`` queries also
with reasoning (seconds each; keyword and hybrid rows on the same queries beside
them); and, where the cross-encoder is installed, deep search (the best 20 files
re-ranked) over keyword search without a model and over the default hybrid search.
``--teachers`` adds the training's teachers on the same passages (bench/teacher_rows.py).

    python bench/search_sets.py [--sets gnome-help emacs-lisp] [--work /tmp/sets-work]
        [--docs 150] [--reason-queries 40] [--no-deep] [--teachers] [--json sets.json]

Prints nDCG@10 / MRR@10 / recall@10 per set and a summary (nDCG@10, sets as rows).
Exits 1 when the default hybrid search is below keyword search on any set. With the
default model, the four sets index in about 25 minutes on 2 cores the first time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.realsets import (  # noqa: E402
    MissingSource,
    build_crossdomain,
    emacs_lisp_set,
    gnome_help_set,
    gnuplot_set,
    set_digest,
    sync_folder,
)
from bench.search_quality import (  # noqa: E402
    DEFAULT_MODEL,
    PY_DOC_SOURCES,
    LabelledSet,
    build_index,
    python_docs_set,
)
from bench.teacher_rows import ROWS as TEACHER_ROWS  # noqa: E402
from sr3desk.index.types import IndexOptions  # noqa: E402
from sr3desk.search.metrics import Scores, evaluate  # noqa: E402
from sr3desk.search.types import SearchRequest, SearchResponse  # noqa: E402

KEYWORD = "keyword"
VECTOR = "vector"
HYBRID = "hybrid (default)"
REASON = "hybrid + reasoning"
DEEP_KEYWORD = "deep (keyword + rerank)"
DEEP_HYBRID = "deep (default hybrid + rerank)"
FIXED_WEIGHTS = (0.2, 0.5, 1.0)  # hybrid at these vector weights: what the calibration chose from
SUBSET = " @reason queries"  # suffix of the keyword/hybrid rows on the reasoning subset
MARKER = "index.json"


@dataclass(frozen=True)
class SetSpec:
    """A labelled set: its Debian package, its field, and how it is built into a folder."""

    name: str
    package: str
    domain: str
    build: Callable[[Path, argparse.Namespace], tuple[LabelledSet, dict[str, Any]]]


def _python_docs(dest: Path, args: argparse.Namespace) -> tuple[LabelledSet, dict[str, Any]]:
    # Written to a scratch folder, then synced, so that unchanged pages keep their mtime.
    if not PY_DOC_SOURCES.is_dir():
        raise MissingSource(f"{PY_DOC_SOURCES} is missing: install Debian's python3.11-doc")
    scratch = dest.parent / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    made = python_docs_set(scratch, args.docs, args.max_chars, seed=args.seed)
    files = {p.name: p.read_text(encoding="utf-8") for p in made.root.iterdir()}
    root = sync_folder(dest, files)
    shutil.rmtree(scratch, ignore_errors=True)
    out = LabelledSet(root, dict(made.queries))
    out.qrels = {q: {str(root / Path(p).name) for p in rel} for q, rel in made.qrels.items()}
    return out, {}


def _emacs(dest: Path, args: argparse.Namespace) -> tuple[LabelledSet, dict[str, Any]]:
    return emacs_lisp_set(dest, args.docs, args.max_chars, args.seed), {}


def _gnome(dest: Path, args: argparse.Namespace) -> tuple[LabelledSet, dict[str, Any]]:
    return gnome_help_set(dest, args.docs, args.max_chars, args.seed), {}


def _gnuplot(dest: Path, args: argparse.Namespace) -> tuple[LabelledSet, dict[str, Any]]:
    from training.data.corpora import get_corpus

    corpus = get_corpus("gnuplot")
    if not Path(corpus.root).exists():
        raise MissingSource(f"{corpus.root} is missing: install Debian's {corpus.package}")
    built = build_crossdomain(dest.parent / "beir")
    if built.seconds:
        print(f"  built the cross-domain set in {built.seconds:.0f} s")
    labelled = gnuplot_set(dest, built.folder, args.queries, args.seed)
    counts = built.manifest.get("counts", {})
    info = {
        "build_seconds": round(built.seconds, 1),
        "corpus_passages": counts.get("crossdomain_passages"),
        "queries_in_set": _count_lines(built.folder / "qrels" / "test.tsv"),
    }
    return labelled, info


def _count_lines(qrels: Path) -> int:
    """Queries judged in a qrels file."""
    lines = qrels.read_text(encoding="utf-8").splitlines()
    return len({line.split("\t")[0] for line in lines[1:] if line.strip()})


SETS: dict[str, SetSpec] = {
    s.name: s
    for s in (
        SetSpec("python-docs", "python3.11-doc", "Python library reference", _python_docs),
        SetSpec("emacs-lisp", "emacs-el", "Emacs editor libraries", _emacs),
        SetSpec("gnome-help", "gnome-user-docs", "GNOME desktop user help", _gnome),
        SetSpec("gnuplot", "gnuplot-doc", "plotting manual, cross-domain", _gnuplot),
    )
}


@dataclass
class SetResult:
    """Everything measured on one set (also what ``--json`` writes)."""

    name: str
    package: str
    domain: str
    docs: int = 0
    queries: int = 0
    examples: list[str] = field(default_factory=list)
    index_seconds: float | None = None  # None: the index was reused
    weight: float | None = None
    weight_note: str = ""
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    ms_per_query: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""

    def ndcg(self, method: str) -> float | None:
        """nDCG@10 of a method, None when it was not run."""
        row = self.scores.get(method)
        return None if row is None else row["ndcg10"]

    def hybrid_below_keyword(self) -> bool:
        """True when the default hybrid search scored below keyword search."""
        return self.scores[HYBRID]["ndcg10"] < self.scores[KEYWORD]["ndcg10"]


# -- the index ------------------------------------------------------------------------


def ensure_index(
    home: Path, labelled: LabelledSet, model: Path, options: IndexOptions
) -> float | None:
    """Index ``labelled`` into ``home`` unless the index there is complete for exactly
    these documents, this model and these options; returns the seconds, None if reused.

    ``home/index.json`` records what a finished index was built from. Another model or
    other chunking starts from an empty index; other documents are indexed incrementally.
    """
    stat = model.stat()
    want = {
        "model": str(model.resolve()),
        "model_bytes": stat.st_size,
        "model_mtime": stat.st_mtime,
        "options": asdict(options),
        "documents": set_digest(labelled),
    }
    want = json.loads(json.dumps(want))  # as read back: tuples become lists
    marker = home / MARKER
    have = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None
    if have == want:
        return None
    if have is not None and {k: have.get(k) for k in want if k != "documents"} != {
        k: v for k, v in want.items() if k != "documents"
    }:
        shutil.rmtree(home)
    marker.unlink(missing_ok=True)
    seconds = build_index(home, labelled.root, model, options)
    marker.write_text(json.dumps(want, indent=2), encoding="utf-8")
    return seconds


# -- measuring ------------------------------------------------------------------------


def open_deep(enabled: bool) -> tuple[Any, str]:
    """The cross-encoder of deep search, or (None, why not)."""
    if not enabled:
        return None, "deep search left out (--no-deep)"
    try:
        from sr3desk.search.rerank import open_reranker
    except ImportError as exc:
        return None, f"deep search is not available in this tree ({exc})"
    from sr3desk.errors import Sr3Error

    try:
        return open_reranker(), ""
    except (Sr3Error, OSError, ValueError) as exc:
        return None, f"deep search left out: {exc}"


class Runs:
    """Ranked files and times per method and query."""

    def __init__(self) -> None:
        self.ranked: dict[str, dict[str, list[str]]] = {}
        self.ms: dict[str, list[float]] = {}

    def add(self, method: str, qid: str, response: SearchResponse, extra_ms: float = 0.0) -> None:
        self.ranked.setdefault(method, {})[qid] = [r.path for r in response.results]
        self.ms.setdefault(method, []).append(response.took_ms + extra_ms)


def measure(
    home: Path,
    model: Path,
    labelled: LabelledSet,
    result: SetResult,
    reason_queries: int,
    reranker: Any,
) -> None:
    """Run every query of ``labelled`` in each way; fills ``result``'s scores and times."""
    from sr3desk.index.store import Store
    from sr3desk.model.runtime import open_embedder
    from sr3desk.search.searcher import Searcher

    runs = Runs()
    qids = list(labelled.queries)
    subset = qids[:reason_queries]
    from sr3desk.search.deep import DeepRanker

    # One ranker for both deep rows: a pair both first stages hand it is scored once.
    deep: dict[str, Any] = {"reranker": DeepRanker(reranker)} if reranker is not None else {}
    with (
        open_embedder(model) as embedder,
        Store.open(home, embedder.info) as store,
        Searcher(store, None, **deep) as keyword,
        Searcher(store, embedder) as vector,
        Searcher(store, embedder, home=home, **deep) as default,
    ):
        fixed = {w: Searcher(store, embedder, vector_weight=w) for w in FIXED_WEIGHTS}
        weight = default.vector_weight()
        result.weight, result.weight_note = weight.weight, weight.describe()
        for n, qid in enumerate(qids, 1):
            text = labelled.queries[qid]
            t0 = time.perf_counter()
            query = embedder.embed_query(text)
            embed_ms = (time.perf_counter() - t0) * 1000.0
            runs.add(KEYWORD, qid, keyword.search(SearchRequest(text, mode="keyword")))
            runs.add(
                VECTOR,
                qid,
                vector.search_embedded(SearchRequest(text, mode="vector"), query),
                embed_ms,
            )
            runs.add(HYBRID, qid, default.search_embedded(SearchRequest(text), query), embed_ms)
            for w, searcher in fixed.items():
                response = searcher.search_embedded(SearchRequest(text), query)
                runs.add(fixed_row(w), qid, response, embed_ms)
            if reranker is not None:
                request = SearchRequest(text, mode="keyword", deep=True)
                runs.add(DEEP_KEYWORD, qid, keyword.search(request))
                hybrid = default.search_embedded(SearchRequest(text, deep=True), query)
                runs.add(DEEP_HYBRID, qid, hybrid, embed_ms)
            if qid in subset:
                runs.add(REASON, qid, default.search(SearchRequest(text, reason=True)))
            if n % 25 == 0:
                print(f"  {n}/{len(qids)} queries", flush=True)
        for searcher in fixed.values():
            searcher.close()
    for method, ranked in runs.ranked.items():
        qrels = {q: labelled.qrels[q] for q in (subset if method == REASON else qids)}
        result.scores[method] = asdict(evaluate(ranked, qrels))
        result.ms_per_query[method] = round(sum(runs.ms[method]) / len(runs.ms[method]), 1)
    if subset:
        qrels = {q: labelled.qrels[q] for q in subset}
        for method in (KEYWORD, HYBRID):
            result.scores[method + SUBSET] = asdict(evaluate(runs.ranked[method], qrels))


def fixed_row(weight: float) -> str:
    """The row name of hybrid search at a fixed vector weight."""
    return f"hybrid, vector weight {weight:g}"


def run_set(spec: SetSpec, args: argparse.Namespace, reranker: Any) -> SetResult:
    """Build, index and measure one set; a set whose package is missing is skipped."""
    result = SetResult(spec.name, spec.package, spec.domain)
    folder = args.work / spec.name
    print(f"\n== {spec.name} ({spec.package}: {spec.domain})", flush=True)
    try:
        labelled, result.info = spec.build(folder / "docs", args)
    except MissingSource as exc:
        result.skipped = str(exc)
        print(f"  skipped: {exc}")
        return result
    result.docs = sum(1 for p in labelled.root.rglob("*") if p.is_file())
    result.queries = len(labelled.queries)
    result.examples = list(labelled.queries.values())[:3]
    options = IndexOptions(max_tokens=args.max_tokens, overlap_tokens=args.max_tokens // 8)
    result.index_seconds = ensure_index(folder / "home", labelled, args.model, options)
    seconds = result.index_seconds
    done = "reused the index" if seconds is None else f"indexed in {seconds:.0f} s"
    print(f"  {result.docs} documents, {result.queries} queries; {done}", flush=True)
    measure(folder / "home", args.model, labelled, result, args.reason_queries, reranker)
    if args.teachers:
        from bench.teacher_rows import teacher_runs

        runs, ms = teacher_runs(folder / "home", labelled.queries, reranker)
        for method, ranked in runs.items():
            result.scores[method] = asdict(evaluate(ranked, labelled.qrels))
            result.ms_per_query[method] = round(ms[method], 1)
    print(set_table(result))
    return result


# -- tables ---------------------------------------------------------------------------


def set_table(result: SetResult) -> str:
    """One set's scores as a printed table."""
    lines = [f"  {'search':34s} {'nDCG@10':>8s} {'MRR@10':>8s} {'recall@10':>9s}     n    ms/q"]

    def row(method: str, label: str | None = None) -> None:
        s = result.scores.get(method)
        if s is None:
            return
        ms = result.ms_per_query.get(method)
        scores = Scores(s["ndcg10"], s["mrr10"], s["recall10"], int(s["n"])).row()
        lines.append(f"  {label or method:34s} {scores} {'' if ms is None else f'{ms:7.0f}'}")

    for method in (KEYWORD, VECTOR, *map(fixed_row, FIXED_WEIGHTS), HYBRID):
        row(method)
    for method in (DEEP_KEYWORD, DEEP_HYBRID, *TEACHER_ROWS):
        row(method)
    if REASON in result.scores:
        n = int(result.scores[REASON]["n"])
        lines.append(f"  -- the first {n} queries --")
        row(KEYWORD + SUBSET, KEYWORD)
        row(HYBRID + SUBSET, HYBRID)
        row(REASON)
    lines.append(f"  vector weight: {result.weight_note}")
    return "\n".join(lines)


SUMMARY = [
    ("keyword", KEYWORD),
    ("vector", VECTOR),
    ("hybrid", HYBRID),
    ("deep kw", DEEP_KEYWORD),
    ("deep hyb", DEEP_HYBRID),
    ("kw@R", KEYWORD + SUBSET),
    ("hyb@R", HYBRID + SUBSET),
    ("reason@R", REASON),
    ("MiniLM", TEACHER_ROWS[0]),
    ("bge", TEACHER_ROWS[1]),
    ("bge+CE", TEACHER_ROWS[2]),
]


def summary_table(results: list[SetResult]) -> str:
    """nDCG@10 per set (rows) and method (columns), with the vector weight."""
    lines = [
        f"{'set':12s} {'docs':>5s} {'q':>4s} "
        + " ".join(f"{h:>8s}" for h, _m in SUMMARY)
        + f" {'weight':>7s}"
    ]
    for r in results:
        if r.skipped:
            lines.append(f"{r.name:12s} skipped: {r.skipped}")
            continue
        cells = []
        for _h, method in SUMMARY:
            v = r.ndcg(method)
            cells.append(f"{'-' if v is None else f'{v:.3f}':>8s}")
        weight = "-" if r.weight is None else f"{r.weight:.2f}"
        lines.append(f"{r.name:12s} {r.docs:5d} {r.queries:4d} {' '.join(cells)} {weight:>7s}")
    lines.append("nDCG@10; @R: on the first --reason-queries queries of each set only")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build, index and measure every set; exit 1 if default hybrid < keyword on any."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sets", nargs="+", choices=list(SETS), default=list(SETS), help="sets to run (all)"
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="embedding GGUF")
    parser.add_argument(
        "--work",
        type=Path,
        default=ROOT / "build" / "search-sets",
        help="where the sets and their indexes are kept and reused",
    )
    parser.add_argument("--docs", type=int, default=150, help="documents per one-line set")
    parser.add_argument("--max-chars", type=int, default=2000, help="cut each document to this")
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=IndexOptions().max_tokens,
        help="chunk size in model tokens (default: the app's)",
    )
    parser.add_argument(
        "--queries", type=int, default=150, help="gnuplot: a seeded sample of its queries"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every sample")
    parser.add_argument(
        "--reason-queries", type=int, default=40, help="queries also run with reasoning (0: none)"
    )
    parser.add_argument("--no-deep", action="store_true", help="leave deep search out")
    parser.add_argument(
        "--teachers",
        action="store_true",
        help="add the training's teachers as rows: MiniLM, bge-small, bge-small + cross-encoder",
    )
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"no model at {args.model}: run `make models` or give --model")
    args.work = args.work.resolve()
    reranker, why = open_deep(not args.no_deep)
    if why:
        print(why)
    results = []
    try:
        for name in args.sets:
            results.append(run_set(SETS[name], args, reranker))
    finally:
        if reranker is not None:
            reranker.close()
    print("\n" + summary_table(results))
    worse = [r.name for r in results if not r.skipped and r.hybrid_below_keyword()]
    if args.json:
        payload = {
            "model": str(args.model),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "deep": why or "on",
            "sets": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    if worse:
        print(f"default hybrid below keyword search on: {', '.join(worse)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
