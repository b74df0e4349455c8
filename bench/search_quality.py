"""Search quality on a labelled set made from the Python docs: does fusion help or hurt?

The set: the library reference pages of the Python docs (reST sources from
Debian's python3.11-doc) that document a module. Query = the module's one-line
synopsis (":synopsis: Encode and decode the JSON format."), relevant = that
page. The synopsis line is removed from the indexed copy and pages whose
synopsis is also their title are left out, so the query is a description of
the page in other words, never a line of it; pages are cut to
``--max-chars`` (at a paragraph break) to keep indexing time reasonable.

The pages are indexed with the real indexer and the given model, then every
query is run in five ways: keyword, vector, hybrid with the vector side at equal
weight (RRF and score-normalised fusion), and hybrid at the weight the searcher
measures for the model (its default). Prints nDCG@10, MRR@10 and recall@10.

    python bench/search_quality.py [--docs 150] [--max-chars 2000] [--model GGUF]

The default model is the app's: smollm2-sr3-cpu (Q8_0), trained by the CPU recipe
(training/recipe.py) on text that has no Python docs in it, and rebuilt by
`make models`; give ``--model build/models/smollm2-sr3/smollm2-sr3.Q8_0.gguf``
for the untrained base. SmolLM2-135M embeds about 200 tokens/s per core: the
defaults (~75k tokens) index in ~5 minutes on 2 cores.

The tests (tests/search/test_quality_pydocs.py) run the same code on a subset.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sr3desk.index.types import IndexOptions  # noqa: E402
from sr3desk.search.metrics import Scores, evaluate  # noqa: E402
from sr3desk.search.types import SearchRequest  # noqa: E402

PY_DOC_SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
DEFAULT_MODEL = ROOT / "build" / "models" / "smollm2-sr3-cpu" / "smollm2-sr3-cpu.Q8_0.gguf"
_ROLE = re.compile(r":[\w:]+:`([^`<]*?)\s*(?:<[^>]*>)?`")
_SYNOPSIS = re.compile(r"^[ \t]*:synopsis:[ \t]*(.+?)[ \t]*$", re.MULTILINE)


@dataclass
class LabelledSet:
    """Documents under ``root`` and queries with their relevant files (absolute paths)."""

    root: Path
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, set[str]] = field(default_factory=dict)


def _cut(text: str, max_chars: int | None) -> str:
    if max_chars is None or len(text) <= max_chars:
        return text
    cut = text.rfind("\n\n", 0, max_chars)
    return text[: cut if cut > max_chars // 2 else max_chars]


def python_docs_set(
    dest: Path,
    n_docs: int = 256,
    max_chars: int | None = 6000,
    sources: Path = PY_DOC_SOURCES,
    seed: int = 0,
) -> LabelledSet:
    """Copy up to ``n_docs`` module pages to ``dest`` and label one query per page.

    Takes the folder to fill, the number of pages (a reproducible random choice
    by ``seed`` when fewer than all), the length to cut each page to, and the
    reST sources; returns the labelled set. Pages whose synopsis is shared with
    another page, appears in the page itself (often as its title), or is too
    short to be a query (fewer than 3 words) are left out: about 190 remain.
    """
    pages: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for path in sorted((sources / "library").glob("*.rst.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        m = _SYNOPSIS.search(text)
        if not m:
            continue
        synopsis = _ROLE.sub(r"\1", m.group(1)).rstrip(".")  # ":pep:`3119`" -> "3119"
        key = synopsis.lower()
        rest = " ".join(_SYNOPSIS.sub("", text).lower().split())
        # A synopsis that is also the page's title (":mod:`re` --- Regular expression
        # operations") or one of its lines would be found by copying: left out.
        if len(synopsis.split()) < 3 or key in seen or " ".join(key.split()) in rest:
            continue
        seen.add(key)
        pages.append((path, synopsis))
    if n_docs < len(pages):
        pages = sorted(random.Random(seed).sample(pages, n_docs))
    dest.mkdir(parents=True, exist_ok=True)
    out = LabelledSet(dest.resolve())
    for i, (path, synopsis) in enumerate(pages):
        text = _SYNOPSIS.sub("", path.read_text(encoding="utf-8", errors="replace"))
        target = out.root / path.name
        target.write_text(_cut(text, max_chars), encoding="utf-8")
        qid = f"q{i:03d}"
        out.queries[qid] = synopsis
        out.qrels[qid] = {str(target)}
    return out


def build_index(home: Path, docs: Path, model: Path, options: IndexOptions | None = None) -> float:
    """Index ``docs`` into ``home`` with the real indexer and ``model``; returns seconds."""
    from sr3desk.index.indexer import Indexer
    from sr3desk.index.store import Store
    from sr3desk.model.runtime import open_embedder

    t0 = time.perf_counter()
    with open_embedder(model) as embedder, Store.open(home, embedder.info, write=True) as store:
        Indexer(store, embedder, options or IndexOptions()).run([docs])
    return time.perf_counter() - t0


@dataclass
class QualityReport:
    """Scores per way of searching, and the weight the searcher chose."""

    scores: dict[str, Scores]
    weight_note: str
    weight: float


KEYWORD = "keyword"
VECTOR = "vector"
EQUAL_RRF = "hybrid, equal weight, RRF"
EQUAL_SCORE = "hybrid, equal weight, score fusion"
DEFAULT = "hybrid, measured weight, score fusion (default)"


def measure(home: Path, model: Path, labelled: LabelledSet, k: int = 10) -> QualityReport:
    """Run every query of ``labelled`` in each way against the index in ``home``.

    RRF at equal weight is not a way the app searches: it is the naive fusion
    the table shows for contrast, computed here from the two retrievers' lists.
    """
    from sr3desk.index.store import Store
    from sr3desk.model.runtime import open_embedder
    from sr3desk.search.fusion import Ranking, rrf_fuse
    from sr3desk.search.searcher import Searcher
    from sr3desk.search.text import keyword_text

    with open_embedder(model) as embedder, Store.open(home, embedder.info) as store:
        default = Searcher(store, embedder, home=home)
        ways = {
            KEYWORD: (Searcher(store, None), "keyword"),
            VECTOR: (Searcher(store, embedder), "vector"),
            EQUAL_SCORE: (Searcher(store, embedder, vector_weight=1.0), "hybrid"),
            DEFAULT: (default, "hybrid"),
        }
        weight = default.vector_weight()
        runs: dict[str, dict[str, list[str]]] = {name: {} for name in [EQUAL_RRF, *ways]}
        for qid, text in labelled.queries.items():
            query = embedder.embed_query(text)
            for name, (searcher, mode) in ways.items():
                request = SearchRequest(text, mode=mode, k=k)  # type: ignore[arg-type]
                response = searcher.search_embedded(request, query)
                runs[name][qid] = [r.path for r in response.results]
            kw = store.keyword_search(keyword_text(text), 50)
            vec = store.vector_search(query.vector, 50)
            fused = rrf_fuse([Ranking("keyword", kw), Ranking("vector", vec)])
            runs[EQUAL_RRF][qid] = [g.path for g in fused[:k]]
    scores = {name: evaluate(run, labelled.qrels, k) for name, run in runs.items()}
    return QualityReport(scores, weight.describe(), weight.weight)


def table(report: QualityReport) -> str:
    """The report as a printed table."""
    lines = [f"{'search':48s} {'nDCG@10':>8s} {'MRR@10':>8s} {'recall@10':>9s} {'n':>5s}"]
    for name, s in report.scores.items():
        lines.append(f"{name:48s} {s.row()}")
    lines.append(f"measured weight: {report.weight_note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build the set, index it, measure, print the table; exit 1 if hybrid < keyword."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=150, help="module pages (max ~190)")
    parser.add_argument("--max-chars", type=int, default=2000, help="cut each page to this")
    parser.add_argument(
        "--max-tokens", type=int, default=128, help="chunk size in model tokens (default 128)"
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--work", type=Path, help="keep the set and index here (reused)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="sr3-quality-"))
    try:
        labelled = python_docs_set(work / "docs", args.docs, args.max_chars)
        home = work / "home"
        options = IndexOptions(max_tokens=args.max_tokens, overlap_tokens=args.max_tokens // 8)
        seconds = build_index(home, labelled.root, args.model, options)
        print(f"indexed {len(labelled.queries)} pages with {args.model.name} in {seconds:.0f} s")
        report = measure(home, args.model, labelled)
        print(table(report))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    keyword = report.scores[KEYWORD].ndcg10
    hybrid = report.scores[DEFAULT].ndcg10
    verdict = "ABOVE" if hybrid > keyword else "EQUAL" if hybrid == keyword else "WORSE"
    print(f"default hybrid {hybrid:.3f} vs keyword {keyword:.3f}: {verdict}")
    return 0 if hybrid >= keyword else 1


if __name__ == "__main__":
    sys.exit(main())
