"""Raw throughput and latency of deep search's reranker (the cross-encoder alone).

Scores calls of 10, 20 and 30 (query, passage) pairs cut to 128, 256 and 512 tokens
with 1 and 2 onnxruntime threads and prints, per cell, the median milliseconds a call
(of ``--runs``), per pair, and tokens a second (padding not counted). Text is real:
queries are the Python docs' module synopses, passages their reST prose, long enough
that every pair is cut to exactly its length.

    python bench/rerank.py [--path DIR] [--runs 3] [--tokens 128 256 512]
                           [--pairs 10 20 30] [--threads 1 2] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sr3desk.search.rerank import (  # noqa: E402
    DEFAULT_BATCH_SIZE,
    CrossEncoder,
    default_reranker_dir,
)

LIBRARY = Path("/usr/share/doc/python3.11/html/_sources/library")
PASSAGE_WORDS = 700  # more than 512 tokens of prose, so every pair is cut to its length


def load_text(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` queries (module synopses) and ``n`` passages (prose of other modules)."""
    if not LIBRARY.is_dir():
        sys.exit(f"{LIBRARY} is missing: install Debian's python3.11-doc (make testdata)")
    queries: list[str] = []
    passages: list[str] = []
    for path in sorted(LIBRARY.glob("*.rst.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if m := re.search(r":synopsis:\s*(.+)", text):
            queries.append(m.group(1).strip())
        # Prose only: no directives, indented blocks (code, options) or headings.
        paras = [
            " ".join(p.split())
            for p in re.split(r"\n\s*\n", text)
            if p and not p.startswith((" ", "..", "=", "-", "*", ":")) and len(p) > 200
        ]
        words = " ".join(paras).split()
        if len(words) >= PASSAGE_WORDS:
            passages.append(" ".join(words[:PASSAGE_WORDS]))
    rng = random.Random(seed)
    rng.shuffle(queries)
    rng.shuffle(passages)
    if len(queries) < n or len(passages) < n:
        sys.exit(f"only {len(queries)} queries and {len(passages)} passages in {LIBRARY}")
    return queries[:n], passages[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--path", type=Path, default=None, help="reranker folder (default: installed)")
    ap.add_argument("--runs", type=int, default=3, help="timed calls a cell (median)")
    ap.add_argument("--tokens", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--pairs", type=int, nargs="+", default=[10, 20, 30])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="pairs a run")
    args = ap.parse_args()

    import onnxruntime

    path = args.path or default_reranker_dir()
    queries, passages = load_text(max(args.pairs) + args.runs + 1)
    print(
        f"reranker {path}\nonnxruntime {onnxruntime.__version__}, {_cpu()}"
        f" ({os.cpu_count()} CPUs), batch size {args.batch_size}, median of {args.runs} calls\n"
        f"load average before: {_load()}\n"
    )
    header = f"{'tokens':>6} {'pairs':>5} {'threads':>7} {'ms/call':>9} {'ms/pair':>8} {'tok/s':>7}"
    print(header)
    print("-" * len(header))
    for threads in args.threads:
        with CrossEncoder(path, threads=threads, batch_size=args.batch_size) as encoder:
            encoder.score(queries[0], passages[:2], max_tokens=128)  # warm up
            for tokens in args.tokens:
                for pairs in args.pairs:
                    times: list[float] = []
                    counted: list[int] = []
                    for run in range(args.runs):
                        # Another query and window each run: no cache anywhere helps.
                        query = queries[run + 1]
                        batch = passages[run : run + pairs]
                        before = encoder.tokens()
                        start = time.perf_counter()
                        encoder.score(query, batch, max_tokens=tokens)
                        times.append(time.perf_counter() - start)
                        counted.append(encoder.tokens() - before)
                    ms = statistics.median(times) * 1000
                    rate = sum(counted) / sum(times)
                    print(
                        f"{tokens:>6} {pairs:>5} {threads:>7} {ms:>9.0f} {ms / pairs:>8.1f}"
                        f" {rate:>7.0f}",
                        flush=True,
                    )
    # Other work on the machine slows every cell: the load says how much to trust them.
    print(f"\nload average after: {_load()}")
    return 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
