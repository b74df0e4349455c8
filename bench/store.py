"""Measurements behind the store's design choices (synthetic chunks, random vectors).

1. null vectors: flat vector search and ANN training on a table where half the
   vectors are null (pending), versus the same rows all embedded.
2. full-text refresh: keyword query latency with N rows outside the FTS index,
   and the time ``optimize`` takes to fold them in.
3. ANN threshold: flat search latency versus the ANN index by table size
   (bench/search.py --ann-kinds compares the index kinds).
4. compaction: disk use after many small commits with and without periodic optimize.
5. merge_insert cost: writing vectors into existing rows, and replacing files' chunks.

Usage: python bench/store.py [--dim 576] [--sizes 10000,25000,50000] [--only fts,ann,...]
Prints one table per measurement. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sr3desk.index.store import Store
from sr3desk.index.tables import FileWrite, new_file_id
from sr3desk.index.types import FileRecord

WORDS = [
    "index",
    "search",
    "vector",
    "keyword",
    "model",
    "folder",
    "document",
    "chunk",
    "embedding",
    "latency",
    "python",
    "function",
    "module",
    "class",
    "method",
    "argument",
    "return",
    "value",
    "string",
    "list",
    "dict",
    "tuple",
    "set",
    "file",
    "path",
    "read",
    "write",
    "open",
    "close",
    "error",
    "exception",
    "raise",
    "import",
    "package",
    "version",
]


@dataclass(frozen=True)
class FakeModel:
    """Identity of a model for the store (no weights: vectors are random)."""

    model_id: str
    name: str
    dim: int
    path: Path


@dataclass(frozen=True)
class Piece:
    ordinal: int
    text: str
    start: int
    end: int
    page: int | None
    heading: str
    tokens: int


def _text(rng: random.Random, n_words: int = 120) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(500)) for _ in range(n_words))


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _batch(rng: random.Random, files: int, chunks_per_file: int, start: int) -> list[FileWrite]:
    out = []
    for i in range(files):
        path = f"/bench/docs/d{(start + i) // 100}/file{start + i}.txt"
        pieces = [Piece(j, _text(rng), 0, 10, None, "Heading", 150) for j in range(chunks_per_file)]
        rec = FileRecord(
            new_file_id(), path, 1000, float(start + i), "h", n_chunks=len(pieces), indexed_at=1.0
        )
        out.append(FileWrite(rec, pieces))
    return out


def _fill(store: Store, n_chunks: int, dim: int, embed_fraction: float = 1.0) -> None:
    """Write ``n_chunks`` chunks (10 per file) and embed ``embed_fraction`` of them."""
    rng = random.Random(0)
    files = n_chunks // 10
    step = 500
    for start in range(0, files, step):
        store.write_files(_batch(rng, min(step, files - start), 10, start))
    pending = store.pending_chunks()
    n = int(pending.num_rows * embed_fraction)
    ids = pending["chunk_id"].to_pylist()[:n]
    nrng = np.random.default_rng(0)
    for i in range(0, n, 5000):
        part = ids[i : i + 5000]
        store.write_vectors(part, _unit(nrng, len(part), dim))
    store.optimize(force=True)


def _timed(fn: Callable[[], object], repeat: int = 20) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def _table(title: str, header: list[str], rows: Sequence[Sequence[object]]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(x)) for x in [h, *[r[i] for r in rows]]) for i, h in enumerate(header)]
    print("  ".join(str(h).rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)))


def _open(tmp: Path, name: str, dim: int) -> Store:
    home = tmp / name
    shutil.rmtree(home, ignore_errors=True)
    return Store.open(
        home, FakeModel(f"bench-{dim}", "bench", dim, Path("/bench.gguf")), write=True
    )


def bench_nulls(tmp: Path, dim: int, size: int) -> None:
    rows = []
    q = _unit(np.random.default_rng(1), 1, dim)[0]
    for frac in (1.0, 0.5):
        store = _open(tmp, f"nulls{frac}", dim)
        _fill(store, size, dim, embed_fraction=frac)
        p50, p95 = _timed(partial(store.vector_search, q, 10))
        hits = store.vector_search(q, 10)
        t0 = time.perf_counter()
        store.build_ann_index()
        build = time.perf_counter() - t0
        a50, _ = _timed(partial(store.vector_search, q, 10))
        rows.append(
            [
                f"{frac:.0%}",
                size,
                f"{p50:.1f}",
                f"{p95:.1f}",
                len(hits),
                f"{build:.1f}",
                f"{a50:.1f}",
            ]
        )
        store.close()
    _table(
        f"1. pending vectors (dim {dim}): flat search and the ANN index see the embedded rows",
        ["embedded", "rows", "flat p50 ms", "flat p95 ms", "hits", "ann build s", "ann p50 ms"],
        rows,
    )


def bench_fts(tmp: Path, dim: int, size: int) -> None:
    store = _open(tmp, "fts", dim)
    _fill(store, size, dim, embed_fraction=0.0)
    rng = random.Random(5)
    rows = []
    base50, _ = _timed(lambda: store.keyword_search("python function", 10))
    rows.append([0, f"{base50:.1f}", "-"])
    added = 0
    for extra in (1000, 5000, 20000):
        while added < extra:
            n = min(100, extra - added)
            store.write_files(_batch(rng, n // 10, 10, 10_000_000 + added))
            added += n
        p50, _ = _timed(lambda: store.keyword_search("python function", 10))
        t0 = time.perf_counter()
        store.optimize(force=True)
        opt = time.perf_counter() - t0
        after, _ = _timed(lambda: store.keyword_search("python function", 10))
        rows.append([extra, f"{p50:.1f}", f"{opt:.1f}", f"{after:.1f}"])
        # Put them back outside the index for the next step: rewrite is not needed,
        # the next step adds more rows on top.
    rows[0].append(f"{base50:.1f}")
    _table(
        f"2. full-text refresh on {size} indexed rows: query cost of unindexed rows",
        ["unindexed rows", "query p50 ms", "optimize s", "after p50 ms"],
        rows,
    )
    store.close()


def bench_ann(tmp: Path, dim: int, sizes: list[int]) -> None:
    rows = []
    q = _unit(np.random.default_rng(2), 1, dim)[0]
    for size in sizes:
        store = _open(tmp, f"ann{size}", dim)
        _fill(store, size, dim)
        f50, f95 = _timed(partial(store.vector_search, q, 10))
        exact = {h.chunk_id for h in store.vector_search(q, 10)}
        t0 = time.perf_counter()
        store.build_ann_index()
        build = time.perf_counter() - t0
        a50, a95 = _timed(partial(store.vector_search, q, 10))
        recall = len(exact & {h.chunk_id for h in store.vector_search(q, 10)}) / 10
        rows.append(
            [
                size,
                f"{f50:.1f}",
                f"{f95:.1f}",
                f"{build:.1f}",
                f"{a50:.1f}",
                f"{a95:.1f}",
                f"{recall:.1f}",
            ]
        )
        store.close()
        shutil.rmtree(tmp / f"ann{size}", ignore_errors=True)
    _table(
        f"3. ANN threshold (dim {dim}, random unit vectors, k=10)",
        ["rows", "flat p50", "flat p95", "ann build s", "ann p50", "ann p95", "recall"],
        rows,
    )


def _du(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def bench_compaction(tmp: Path, dim: int, commits: int) -> None:
    from sr3desk.index import maintenance as store_mod

    rows = []
    for label, every in (("never", 10**9), ("every 20 commits", 20)):
        old = store_mod.CLEANUP_OLDER_THAN
        store_mod.CLEANUP_OLDER_THAN = timedelta(0)  # this process is the only reader
        store = _open(tmp, f"compact{every}", dim)
        rng = random.Random(7)
        nrng = np.random.default_rng(7)
        t0 = time.perf_counter()
        for i in range(commits):
            store.write_files(_batch(rng, 5, 4, i * 5))
            pending = store.pending_chunks()
            ids = pending["chunk_id"].to_pylist()
            store.write_vectors(ids, _unit(nrng, len(ids), dim))
            if (i + 1) % every == 0:
                store.optimize(force=True)
        elapsed = time.perf_counter() - t0
        size = _du(store.dir)
        store.optimize(force=True)
        final = _du(store.dir)
        rows.append(
            [label, commits * 3, commits * 20, f"{size:.1f}", f"{final:.1f}", f"{elapsed:.1f}"]
        )
        store.close()
        store_mod.CLEANUP_OLDER_THAN = old
    _table(
        "4. disk growth from small commits (5 files x 4 chunks a batch, then their vectors)",
        ["optimize", "commits", "chunks", "MB before final optimize", "MB after", "write s"],
        rows,
    )


def bench_merge(tmp: Path, dim: int, size: int) -> None:
    store = _open(tmp, "merge", dim)
    _fill(store, size, dim, embed_fraction=0.0)
    rng = random.Random(3)
    nrng = np.random.default_rng(3)
    pending = store.pending_chunks()
    ids = pending["chunk_id"].to_pylist()
    rows = []
    for n in (32, 256, 2048):
        t0 = time.perf_counter()
        store.write_vectors(ids[:n], _unit(nrng, n, dim))
        rows.append([f"write_vectors({n})", f"{(time.perf_counter() - t0) * 1000:.0f}"])
        ids = ids[n:]
    files = store.load_files()
    some = files.records()[:64]
    batch = [
        FileWrite(rec, [Piece(j, _text(rng), 0, 10, None, "H", 150) for j in range(10)])
        for rec in some
    ]
    t0 = time.perf_counter()
    store.write_files(batch)
    rows.append(["write_files(64 changed files)", f"{(time.perf_counter() - t0) * 1000:.0f}"])
    new = _batch(rng, 64, 10, 20_000_000)
    t0 = time.perf_counter()
    store.write_files(new)
    rows.append(["write_files(64 new files)", f"{(time.perf_counter() - t0) * 1000:.0f}"])
    t0 = time.perf_counter()
    store.close()
    t0 = time.perf_counter()
    reopened = Store.open(
        tmp / "merge", FakeModel(f"bench-{dim}", "bench", dim, Path("/bench.gguf")), write=True
    )
    rows.append(["open writer + reconcile", f"{(time.perf_counter() - t0) * 1000:.0f}"])
    reopened.close()
    _table(f"5. write costs on a {size}-chunk table", ["operation", "ms"], rows)


def main() -> int:
    """Run the selected measurements and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--size", type=int, default=20000, help="rows for nulls/fts/merge")
    parser.add_argument("--sizes", default="10000,25000,50000", help="rows for the ANN table")
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--only", default="nulls,fts,ann,compaction,merge")
    args = parser.parse_args()
    only = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="sr3-store-bench-"))
    try:
        if "nulls" in only:
            bench_nulls(tmp, args.dim, args.size)
        if "fts" in only:
            bench_fts(tmp, args.dim, args.size)
        if "ann" in only:
            bench_ann(tmp, args.dim, [int(s) for s in args.sizes.split(",")])
        if "compaction" in only:
            bench_compaction(tmp, args.dim, args.commits)
        if "merge" in only:
            bench_merge(tmp, args.dim, args.size)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
