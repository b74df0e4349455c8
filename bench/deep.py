"""Deep search latency at 10k and 100k passages: the instant search, then the cross-encoder.

Uses bench/search.py's index (real text: ~1,000-character passages of the Python
docs' reST sources; synthetic vectors; built once and cached in ``--work``) and
its queries (module synopses), and times ``Searcher.search_embedded`` with
``deep=True`` through the real cross-encoder: keyword search and hybrid search
(vector side at full weight, both retrievers run) each followed by the
re-ranking of their top files. Query embedding is excluded, as in
bench/search.py (it is the model's cost, measured by bench/embed.py). The
cross-encoder's own limit is printed beside it: its raw time on the same
pairs, outside the searcher.

Limits (the deep-search issue): p50 <= 1,000 ms and p95 <= 2,000 ms at 100k
passages on this 2-core machine, re-ranking included.

    python bench/deep.py [--sizes 10000 100000] [--queries 60] [--top 20] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from search import (  # noqa: E402
    TOPICS,
    SyntheticModel,
    Timing,
    percentiles,
    prepare,
    timed,
    workload,
)

from sr3desk.index.store import Store  # noqa: E402
from sr3desk.search.deep import (  # noqa: E402
    RERANK_PASSAGES,
    RERANK_TOKENS,
    RERANK_TOP,
    DeepRanker,
    passage_text,
)
from sr3desk.search.rerank import open_reranker  # noqa: E402
from sr3desk.search.searcher import Searcher  # noqa: E402
from sr3desk.search.types import Mode, SearchRequest  # noqa: E402

P50_LIMIT_MS = 1000.0
P95_LIMIT_MS = 2000.0


def time_deep(
    store: Store,
    model: SyntheticModel,
    centroids: np.ndarray,
    args: argparse.Namespace,
    threads: int | None,
) -> list[tuple[str, Timing, bool]]:
    """Time deep keyword and deep hybrid searches, and the cross-encoder alone."""
    w = workload(centroids, args.queries, args.dim)
    rows: list[tuple[str, Timing, bool]] = []
    with open_reranker(threads=threads) as encoder:

        def fresh() -> DeepRanker:
            # A new ranker per run: its cache would otherwise answer the repeated queries.
            return DeepRanker(encoder, top=args.top, passages=args.passages, max_tokens=args.tokens)

        for mode in ("keyword", "hybrid"):
            searcher = Searcher(store, model, vector_weight=1.0)  # type: ignore[arg-type]
            m: Mode = "keyword" if mode == "keyword" else "hybrid"

            def run(i: int, s: Searcher = searcher, m: Mode = m) -> object:
                s.reranker = fresh()
                return s.search_embedded(
                    SearchRequest(w.text[i], m, k=10, deep=True), w.embedded[i]
                )

            name = f"deep {mode} (search + rerank top {args.top})"
            try:
                rows.append((name, timed(run, args.queries, 3), True))
            finally:
                searcher.close()
        # The cross-encoder alone on the pairs the deep keyword search scores.
        plain = Searcher(store, None)
        pairs = []
        for i in range(args.queries):
            found = plain.search(SearchRequest(w.text[i], "keyword", k=args.top))
            texts = [passage_text(p) for r in found.results for p in r.passages[: args.passages]]
            pairs.append((w.text[i], texts))
        rows.append(
            (
                f"  cross-encoder alone ({args.tokens} tokens a pair)",
                timed(lambda i: encoder.score(*pairs[i], max_tokens=args.tokens), args.queries, 3),
                False,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Time deep search at each size; print the table; exit 1 over a limit."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--top", type=int, default=RERANK_TOP, help="files re-ranked")
    parser.add_argument("--passages", type=int, default=RERANK_PASSAGES, help="per file")
    parser.add_argument("--tokens", type=int, default=RERANK_TOKENS, help="per pair")
    parser.add_argument("--threads", type=int, default=None, help="cross-encoder threads")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench" / "search")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    centroids = np.random.default_rng(1).standard_normal((TOPICS, args.dim)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    ok = True
    print(
        f"{'ms per search, query embedding excluded':52s} {'passages':>9s} {'p50':>7s} "
        f"{'p95':>7s} {'limit p50/p95':>18s}"
    )
    for size in args.sizes:
        home = args.work / f"{size}-{args.dim}"
        model = SyntheticModel(home / "synthetic.gguf", args.dim)
        build_args = argparse.Namespace(chunks=size, dim=args.dim, rebuild=args.rebuild)
        t0 = time.perf_counter()
        prepare(build_args, home, model, centroids)
        if time.perf_counter() - t0 > 5:
            print(f"(index of {size:,} passages ready in {time.perf_counter() - t0:,.0f} s)")
        with Store.open(home) as store:
            for name, timing, limited in time_deep(store, model, centroids, args, args.threads):
                p50, p95 = percentiles(timing.wall)
                verdict = ""
                if limited:
                    good = p50 <= P50_LIMIT_MS and p95 <= P95_LIMIT_MS
                    ok &= good
                    verdict = (
                        f"{P50_LIMIT_MS:.0f} / {P95_LIMIT_MS:.0f} {'PASS' if good else 'FAIL'}"
                    )
                print(f"{name:52s} {size:9,d} {p50:7.0f} {p95:7.0f} {verdict:>18s}")
    print(f"load average when done: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
