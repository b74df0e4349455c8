"""Search latency at 100k passages, query embedding excluded.

Builds (once, then reused from ``--work``) an index of ``--chunks`` passages
through the store's own write path: real text (paragraphs of the Python docs'
reST sources, shuffled into ~1,000-character passages, 10 per file) and
synthetic unit vectors (``--dim``, clustered around 256 topics so that
nearest neighbours mean something), then the store's maintenance (full-text
index refresh, compaction, ANN index). Then runs the same queries (the Python
docs' module synopses, with vectors drawn near a topic) through
``Searcher.search_embedded`` in each mode, and the store's reads alone for the
breakdown. Limits: p50 <= 20 ms and p95 <= 60 ms per mode.

    python bench/search.py [--chunks 100000] [--dim 576] [--queries 200] [--work DIR]

Hybrid is measured with the vector side at full weight, so that both retrievers
always run (the slowest case; with a weak model hybrid is keyword search).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sr3desk.index.chunking import Chunk  # noqa: E402
from sr3desk.index.connection import Connection  # noqa: E402
from sr3desk.index.generations import Pointer  # noqa: E402
from sr3desk.index.store import FileWrite, Store  # noqa: E402
from sr3desk.index.tables import chunk_ids, new_file_id  # noqa: E402
from sr3desk.index.types import STATUS_INDEXED, FileRecord, Filters  # noqa: E402
from sr3desk.model.base import QueryEmbedding  # noqa: E402
from sr3desk.search.searcher import MIN_FETCH, Searcher  # noqa: E402
from sr3desk.search.types import Mode, SearchRequest  # noqa: E402

P50_LIMIT_MS = 20.0
P95_LIMIT_MS = 60.0
SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
CHUNKS_PER_FILE = 10
TOPICS = 256
EXTS = ("txt", "md", "rst", "pdf", "html")
FORMAT = 2  # bump when the way the corpus is built changes
NO_FILTERS = Filters()
RECALL_LIMIT = 0.95  # ANN recall@10 against exact search


@dataclass(frozen=True)
class SyntheticModel:
    """The model facts the store and the searcher read; its vectors are precomputed."""

    path: Path
    dim: int
    name: str = "bench-synthetic"
    eval: dict[str, Any] | None = None

    @property
    def model_id(self) -> str:
        return f"{self.name}-{self.dim}"

    @property
    def info(self) -> SyntheticModel:
        return self

    @property
    def n_ctx(self) -> int:
        return 512

    def embed_query(self, text: str, reason: bool = False, max_reason_tokens: int = 0) -> Any:
        raise RuntimeError("the benchmark passes precomputed query vectors")

    def embed_documents(self, texts: Sequence[str]) -> Any:
        raise RuntimeError("the benchmark writes precomputed vectors")

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    def close(self) -> None:
        pass


def paragraphs(sources: Path) -> list[str]:
    """Paragraphs of 80-1200 characters from the reST sources (whitespace collapsed)."""
    out = []
    for path in sorted(sources.rglob("*.rst.txt")):
        for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            text = " ".join(para.split())
            if 80 <= len(text) <= 1200:
                out.append(text)
    return out


def synopses(sources: Path) -> list[str]:
    """Module synopses of the library reference: realistic short queries."""
    pattern = re.compile(r"^[ \t]*:synopsis:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
    found = []
    for path in sorted((sources / "library").glob("*.rst.txt")):
        found += pattern.findall(path.read_text(encoding="utf-8", errors="replace"))
    return sorted(set(found))


def fingerprint(args: argparse.Namespace) -> str:
    """What the cached index was built from (checked together with :func:`usable`)."""
    return json.dumps({"chunks": args.chunks, "dim": args.dim, "format": FORMAT})


def usable(home: Path, model: SyntheticModel, n_chunks: int) -> bool:
    """True when the cached index in ``home`` opens with the current store code and
    holds ``n_chunks`` embedded passages of ``model`` (else it is rebuilt: a store
    change that the old files do not survive costs a rebuild, not a wrong figure)."""
    try:
        with Store.open(home) as store:
            status = store.status()
            if store.read_model_id != model.model_id:
                return False
            if not (status.chunks == status.embedded == n_chunks):
                return False
            store.keyword_search("file", 1)
            store.vector_search(np.ones(model.dim, np.float32) / np.sqrt(model.dim), 1)
    except Exception as exc:  # any failure (old format, missing table) means "rebuild"
        print(f"cached index not usable ({type(exc).__name__}: {exc}): rebuilding")
        return False
    return True


def synthetic_file(f: int, n_files: int, texts: list[str]) -> FileWrite:
    """File ``f`` of the corpus: its path, type, date and passages."""
    ext = EXTS[f % len(EXTS)]
    path = f"/bench/corpus/d{f % 100:02d}/f{f:06d}.{ext}"
    mtime = 1.42e9 + (f * 7919 % n_files) / n_files * 3.2e8  # 2015 .. 2025
    chunks, pos = [], 0
    for i, text in enumerate(texts):
        page = i + 1 if ext == "pdf" else None
        chunks.append(Chunk(i, text, pos, pos + len(text), page, f"Part {i}", len(text) // 4))
        pos += len(text) + 2
    record = FileRecord(
        file_id=new_file_id(),
        path=path,
        size=pos,
        mtime=mtime,
        content_hash=hashlib.blake2b(path.encode()).hexdigest(),
        status=STATUS_INDEXED,
        indexed_at=time.time(),
        n_chunks=len(chunks),
        kind="text",
    )
    return FileWrite(record, chunks)


def build(
    home: Path, model: SyntheticModel, n_chunks: int, centroids: np.ndarray
) -> dict[str, float]:
    """Write ``n_chunks`` passages and their vectors through the store, then optimize;
    returns the build's seconds and the index's bytes on disk."""
    rng = random.Random(0)
    nrng = np.random.default_rng(0)
    paras = paragraphs(SOURCES)
    t0 = time.perf_counter()
    n_files = (n_chunks + CHUNKS_PER_FILE - 1) // CHUNKS_PER_FILE
    with Store.open(home, model, write=True) as store:
        batch: list[FileWrite] = []
        written = 0
        for f in range(n_files):
            texts = []
            for _ in range(min(CHUNKS_PER_FILE, n_chunks - written)):
                text = ""
                while len(text) < 900:
                    text += rng.choice(paras) + "\n\n"
                texts.append(text.strip())
            written += len(texts)
            batch.append(synthetic_file(f, n_files, texts))
            if len(batch) == 500 or f == n_files - 1:
                store.write_files(batch)
                ids = [
                    cid
                    for w in batch
                    for cid in chunk_ids(w.record.file_id, [c.text for c in w.chunks])
                ]
                vecs = centroids[
                    nrng.integers(0, len(centroids), len(ids))
                ] + 0.6 * nrng.standard_normal((len(ids), model.dim)).astype(np.float32) / np.sqrt(
                    model.dim
                )
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                store.write_vectors(ids, vecs.astype(np.float32))
                batch = []
                if store.maintenance_due():
                    store.optimize()
                print(f"\r  written {written:,}/{n_chunks:,} passages", end="", flush=True)
        print()
        t1 = time.perf_counter()
        timings = store.optimize(force=True)
        t2 = time.perf_counter()
        disk = store.status().disk_bytes
    print(
        f"  built in {t2 - t0:.0f} s (writes {t1 - t0:.0f} s, final optimize {t2 - t1:.0f} s: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"), {disk / 2**20:,.0f} MiB on disk"
    )
    return {"build_s": t2 - t0, "writes_s": t1 - t0, "disk_bytes": float(disk), **timings}


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    """(p50, p95) of the samples."""
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


@dataclass
class Timing:
    """Per-call wall-clock and process CPU milliseconds (CPU counts every thread of
    this process, LanceDB's included: the load-independent cost of a call)."""

    wall: list[float]
    cpu: list[float]


def timed(fn: Callable[[int], object], n: int, warmup: int = 5) -> Timing:
    """Time ``fn(i)`` for i in range(n), after ``warmup`` untimed calls."""
    for i in range(warmup):
        fn(i)
    out = Timing([], [])
    for i in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        out.wall.append((time.perf_counter() - t0) * 1000.0)
        out.cpu.append((time.process_time() - c0) * 1000.0)
    return out


@dataclass
class Workload:
    """The queries of a run: texts, their synthetic vectors and a filter."""

    text: list[str]
    vectors: np.ndarray
    embedded: list[QueryEmbedding]
    filters: Filters


def workload(centroids: np.ndarray, n: int, dim: int) -> Workload:
    """``n`` module synopses with vectors drawn near a topic, and a folder/type filter."""
    queries = synopses(SOURCES)
    rng = np.random.default_rng(2)
    qvecs = centroids[rng.integers(0, TOPICS, n)] + 0.6 * rng.standard_normal((n, dim)).astype(
        np.float32
    ) / np.sqrt(dim)
    qvecs = (qvecs / np.linalg.norm(qvecs, axis=1, keepdims=True)).astype(np.float32)
    return Workload(
        text=[queries[i % len(queries)] for i in range(n)],
        vectors=qvecs,
        embedded=[QueryEmbedding(v) for v in qvecs],
        filters=Filters(folders=("/bench/corpus/d07",), exts=("pdf", "md")),
    )


def prepare(
    args: argparse.Namespace, home: Path, model: SyntheticModel, centroids: np.ndarray
) -> dict[str, Any]:
    """Build the index or reuse the cached one; returns what the build measured."""
    stamp = home / "bench-fingerprint.json"
    cached = stamp.exists() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint(
        args
    )
    if args.rebuild or not cached or not usable(home, model, args.chunks):
        import shutil

        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        print(f"building an index of {args.chunks:,} passages in {home} (cached for next runs)")
        built = build(home, model, args.chunks, centroids)
        stamp.write_text(json.dumps({"fingerprint": fingerprint(args), **built}))
        return built
    # A cached index gets what the current store code's maintenance adds (new indices).
    with Store.open(home, model, write=True) as store:
        store.optimize(force=True)
    return {k: v for k, v in json.loads(stamp.read_text()).items() if k != "fingerprint"}


def time_searches(
    store: Store, model: SyntheticModel, w: Workload, n: int
) -> list[tuple[str, Timing, bool]]:
    """Time each search mode through the Searcher, and the store's reads alone."""
    full = Searcher(store, model, vector_weight=1.0)  # type: ignore[arg-type]
    weak = Searcher(store, model, vector_weight=0.0)  # type: ignore[arg-type]
    rows: list[tuple[str, Timing, bool]] = []

    def searcher(
        s: Searcher, mode: Mode = "hybrid", filters: Filters = NO_FILTERS
    ) -> Callable[[int], object]:
        return lambda i: s.search_embedded(
            SearchRequest(w.text[i], mode, k=10, filters=filters), w.embedded[i]
        )

    try:
        modes: tuple[Mode, ...] = ("hybrid", "vector", "keyword")
        for mode in modes:
            rows.append((f"search {mode}", timed(searcher(full, mode), n), mode != "keyword"))
        rows.append(
            (
                "search hybrid + folder/type filters",
                timed(searcher(full, filters=w.filters), n),
                False,
            )
        )
        rows.append(
            ("search hybrid, vector weight 0 (weak model)", timed(searcher(weak), n), False)
        )
    finally:
        full.close()
        weak.close()
    parts: list[tuple[str, Callable[[int], object], int]] = [
        (
            f"  store.keyword_search(k={MIN_FETCH})",
            lambda i: store.keyword_search(w.text[i], MIN_FETCH),
            0,
        ),
        (
            f"  store.vector_search(k={MIN_FETCH})",
            lambda i: store.vector_search(w.vectors[i], MIN_FETCH),
            0,
        ),
        (
            f"  store.vector_search(k={MIN_FETCH}) + filters",
            lambda i: store.vector_search(w.vectors[i], MIN_FETCH, w.filters),
            0,
        ),
        ("  store.embedded_fraction()", lambda i: store.embedded_fraction(), 0),
        ("  store.read_model_id", lambda i: store.read_model_id, 0),
        ("  store.status() (once per CLI search)", lambda i: store.status(), 20),
    ]
    for name, fn, count in parts:
        rows.append((name, timed(fn, count or n), False))
    return rows


def recall_at_10(store: Store, home: Path, vectors: np.ndarray) -> float:
    """Mean share of the exact top 10 that the store's vector search (k = 50, as
    deep as the searcher's fetch) ranks in its top 10."""
    found = [{h.chunk_id for h in store.vector_search(q, MIN_FETCH)[:10]} for q in vectors]
    exact = exact_top(home, vectors, 10)
    return float(np.mean([len(f & e) / 10 for f, e in zip(found, exact, strict=True)]))


def print_table(rows: list[tuple[str, Timing, bool]]) -> bool:
    """Print the timings; returns True when every limited row is within its limits."""
    ok = True
    print(
        f"\n{'ms per call, query embedding excluded':44s} {'p50':>7s} {'p95':>7s} "
        f"{'cpu p50':>8s} {'limit p50/p95':>19s}"
    )
    for name, timing, limited in rows:
        p50, p95 = percentiles(timing.wall)
        cpu50, _ = percentiles(timing.cpu)
        verdict = ""
        if limited:
            good = p50 <= P50_LIMIT_MS and p95 <= P95_LIMIT_MS
            ok &= good
            verdict = f"{P50_LIMIT_MS:.0f} / {P95_LIMIT_MS:.0f}  {'PASS' if good else 'FAIL'}"
        print(f"{name:44s} {p50:7.1f} {p95:7.1f} {cpu50:8.1f} {verdict:>19s}")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Build or reuse the index, time each mode, print the table; exit 1 over a limit."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=576, help="576: the default model's width")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench" / "search")
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached index")
    parser.add_argument(
        "--ann-kinds",
        action="store_true",
        help="also compare ANN index kinds and settings on this index (rebuilds its ANN index)",
    )
    args = parser.parse_args(argv)

    home = args.work / f"{args.chunks}-{args.dim}"
    model = SyntheticModel(home / "synthetic.gguf", args.dim)
    centroids = np.random.default_rng(1).standard_normal((TOPICS, args.dim)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    built = prepare(args, home, model, centroids)
    w = workload(centroids, args.queries, args.dim)
    if args.ann_kinds:
        compare_ann_kinds(home, model, w, min(args.queries, 100))
    with Store.open(home) as store:
        status = store.status()
        print(
            f"index: {status.chunks:,} passages, {status.embedded:,} vectors of {args.dim} "
            f"dimensions, {status.files:,} files, {status.disk_bytes / 2**20:,.0f} MiB on disk; "
            f"built in {built.get('build_s', float('nan')):,.0f} s"
        )
        rows = time_searches(store, model, w, args.queries)
        recall = recall_at_10(store, home, w.vectors[: min(50, args.queries)])
    ok = print_table(rows)
    print(
        f"\nANN recall@10 against exact search over {min(50, args.queries)} queries: {recall:.3f}"
    )
    print(f"load average when done: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0 if ok and recall >= RECALL_LIMIT else 1


# ANN kinds and search settings compared by --ann-kinds: (name, index config, nprobes, refine).
def ann_candidates() -> list[tuple[str, Any, int, int | None]]:
    from lancedb.index import IvfHnswSq, IvfPq, IvfSq

    pq = IvfPq(distance_type="cosine", num_sub_vectors=72)
    sq = IvfSq(distance_type="cosine")
    hnsw = IvfHnswSq(distance_type="cosine")
    return [
        ("IVF_PQ", pq, 24, 4),
        ("IVF_PQ", pq, 32, 8),
        ("IVF_SQ", sq, 4, 1),
        ("IVF_SQ", sq, 8, None),
        ("IVF_SQ", sq, 8, 1),
        ("IVF_SQ", sq, 16, 1),
        ("IVF_HNSW_SQ", hnsw, 8, 1),
        ("IVF_HNSW_SQ", hnsw, 16, 1),
    ]


def compare_ann_kinds(home: Path, model: SyntheticModel, w: Workload, n: int) -> None:
    """Time ``store.vector_search`` (k = 50, with and without filters) and its
    recall@10 for each ANN kind and setting, then restore the store's own index."""
    from sr3desk.index import reads

    saved = reads.ANN_NPROBES, reads.ANN_REFINE
    print(f"\n{'ANN index':12s} {'nprobes':>7s} {'refine':>6s} {'build s':>8s} {'p50':>6s} "
          f"{'p95':>6s} {'cpu p50':>7s} {'filtered p50':>12s} {'recall@10':>9s}")  # fmt: skip
    built: dict[str, float] = {}
    try:
        for name, config, nprobes, refine in ann_candidates():
            if name not in built:
                with Store.open(home, model, write=True) as store:
                    t0 = time.perf_counter()
                    vectors = store.writer.vectors
                    assert vectors is not None
                    vectors.create_index("vector", config=config, replace=True)
                    built = {name: time.perf_counter() - t0}
            reads.ANN_NPROBES, reads.ANN_REFINE = nprobes, refine
            with Store.open(home) as store:
                plain = timed(lambda i: store.vector_search(w.vectors[i], MIN_FETCH), n)
                filtered = timed(
                    lambda i: store.vector_search(w.vectors[i], MIN_FETCH, w.filters), n
                )
                recall = recall_at_10(store, home, w.vectors[: min(50, n)])
            p50, p95 = percentiles(plain.wall)
            cpu50, _ = percentiles(plain.cpu)
            f50, _ = percentiles(filtered.wall)
            print(f"{name:12s} {nprobes:7d} {refine or '-':>6} {built[name]:8.1f} {p50:6.1f} "
                  f"{p95:6.1f} {cpu50:7.1f} {f50:12.1f} {recall:9.3f}")  # fmt: skip
    finally:
        reads.ANN_NPROBES, reads.ANN_REFINE = saved
        with Store.open(home, model, write=True) as store:
            store.build_ann_index()


def exact_top(home: Path, queries: np.ndarray, k: int) -> list[set[str]]:
    """Chunk ids of the exact top-``k`` by cosine, by brute force over every vector
    (read in batches, so a million vectors fit in memory)."""
    conn, pointer = Connection(home / "index"), Pointer(home / "index")
    pointer.refresh(force=True)
    gen = pointer.active
    assert gen is not None
    table = conn.table(gen.vectors_table)
    best_ids = [np.empty(0, dtype=object) for _ in queries]
    best_scores = [np.empty(0, dtype=np.float32) for _ in queries]
    for batch in table.search().select(["chunk_id", "vector"]).limit(None).to_batches(65536):
        ids = np.asarray(batch.column("chunk_id").to_pylist(), dtype=object)
        flat = batch.column("vector").flatten().to_numpy(zero_copy_only=False)
        scores = np.asarray(flat, np.float32).reshape(len(ids), -1) @ queries.T
        for j in range(len(queries)):
            cand_s = np.concatenate([best_scores[j], scores[:, j]])
            cand_i = np.concatenate([best_ids[j], ids])
            top = np.argsort(-cand_s)[:k]
            best_scores[j], best_ids[j] = cand_s[top], cand_i[top]
    return [set(ids.tolist()) for ids in best_ids]


if __name__ == "__main__":
    sys.exit(main())
