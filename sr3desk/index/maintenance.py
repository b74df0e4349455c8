"""Upkeep of the generation a writer fills: optimize, indices, repair, upgrade.

- *optimize* folds recent commits into the full-text and vector indices,
  compacts small files and deletes versions no reader can still be reading;
- *indices*: a BTREE on chunk ids once lookups by id pay for it, and the ANN
  index on the vectors once a flat scan costs more than it;
- *repair* (:func:`reconcile`) makes a generation consistent after a writer was
  killed between two of its commits;
- *upgrade* (:func:`upgrade_layout`) rewrites a generation's vector table in the
  current layout, carrying every vector over (no re-embedding), and
  *sweep* (:func:`drop_debris`) removes tables no generation owns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sr3desk.index.connection import Connection
from sr3desk.index.generations import LAYOUT, LAYOUT_SPLIT, Generation, Pointer
from sr3desk.index.reads import has_vector_index, rows_by_id
from sr3desk.index.tables import (
    HIT_COLUMNS,
    batched,
    chunks_schema,
    embedded_rows,
    embedded_schema,
    files_schema,
    sql_in,
)
from sr3desk.index.types import STATUS_INDEXED
from sr3desk.index.writes import GenerationWriter

log = logging.getLogger(__name__)

# Maintenance policy; the figures behind each value are in bench/store.py's output.
OPTIMIZE_EVERY_COMMITS = 12  # small commits before indices are refreshed and files compacted
ANN_MIN_ROWS = 20_000  # vectors from which an ANN index beats a flat scan
# The ANN index's partitions are sized for the rows it was built on; rows added
# later join those partitions, so it is rebuilt each time the table doubles.
ANN_REBUILD_GROWTH = 2.0
SCALAR_MIN_ROWS = 10_000  # rows from which a BTREE on chunk_id beats scanning for id lookups
CLEANUP_OLDER_THAN = timedelta(seconds=60)  # versions a reader may still be reading
UPGRADE_BATCH = 4096  # vectors carried into the new layout per commit
TABLE_PREFIXES = ("files_", "chunks_", "vectors_", "embedded_")

UpgradeProgress = Callable[[int, int], None]  # (vectors carried over, all of them)


def ensure_tables(conn: Connection, gen: Generation) -> None:
    """Create the generation's missing tables (the chunk table with its
    full-text index, which searches rows written later by a scan until the
    next optimize folds them in)."""
    from lancedb.index import FTS

    existing = set(conn.names())
    if gen.files_table not in existing:
        conn.create(gen.files_table, files_schema())
    if gen.chunks_table not in existing:
        conn.create(gen.chunks_table, chunks_schema()).create_index(
            "text", config=FTS(), replace=True
        )
    if gen.dim is not None and gen.vectors_table not in existing:
        conn.create(gen.vectors_table, embedded_schema(gen.dim))


def optimize(writer: GenerationWriter, pointer: Pointer) -> dict[str, float]:
    """Refresh the indices, compact, drop old versions; build the id indices and
    (re)build the ANN index when the generation has grown enough for it.
    Returns timings in seconds."""
    timings: dict[str, float] = {}
    tables = [writer.files, writer.chunks, writer.vectors]
    t0 = time.perf_counter()
    for table in tables:
        if table is not None:
            # delete_unverified: this writer holds the lock, so files no version
            # knows are debris of a killed writer, not a transaction in flight.
            table.optimize(cleanup_older_than=CLEANUP_OLDER_THAN, delete_unverified=True)
    timings["optimize_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for table in tables[1:]:
        # Hits, vectors and repairs look chunks up by id; without an index each
        # lookup scans the table.
        if table is not None and _ensure_id_index(table):
            timings["id_index_s"] = time.perf_counter() - t0
    if ann_due(writer):
        t0 = time.perf_counter()
        build_ann_index(writer, pointer)
        timings["ann_s"] = time.perf_counter() - t0
    writer.commits = 0
    return timings


def ann_due(writer: GenerationWriter) -> bool:
    """True when the vectors need their first ANN index, or a rebuild for their growth."""
    vectors = writer.vectors
    if vectors is None:
        return False
    rows = vectors.count_rows()
    if rows < ANN_MIN_ROWS:
        return False
    built = writer.gen.ann_rows if has_vector_index(vectors) else 0
    return not built or rows >= ANN_REBUILD_GROWTH * built


def ann_config(dim: int) -> Any:
    """The ANN index every vector table gets: IVF with 8-bit scalar quantization.

    bench/search.py ``--ann-kinds`` measured it against IVF_PQ and IVF_HNSW_SQ
    on 100k passages: the fastest with recall@10 >= 0.95, quick to build, and
    unhurt by filters (IVF_HNSW_SQ was faster unfiltered, several times slower
    with a folder filter and ten times slower to build; IVF_PQ needed a refine
    step to reach 0.93 and took minutes to train).
    """
    from lancedb.index import IvfSq

    return IvfSq(distance_type="cosine")


def build_ann_index(writer: GenerationWriter, pointer: Pointer) -> None:
    """Build (or rebuild) the ANN index on the generation's vectors."""
    vectors, dim = writer.vectors, writer.gen.dim
    if vectors is None or dim is None:
        return
    rows = vectors.count_rows()
    vectors.create_index("vector", config=ann_config(dim), replace=True)
    writer.gen.ann_rows = rows
    pointer.save()
    log.info("Built the vector index of %s on %d vectors", writer.gen.vectors_table, rows)


def _ensure_id_index(table: Any) -> bool:
    """Build a BTREE index on ``chunk_id`` once ``table`` is large enough for it to pay;
    returns True when one was built. Later optimizes keep it current."""
    try:
        if any("chunk_id" in ix.columns for ix in table.list_indices()):
            return False
        if table.count_rows() < SCALAR_MIN_ROWS:
            return False
        table.create_scalar_index("chunk_id", index_type="BTREE", replace=True)
    except (RuntimeError, ValueError, OSError) as err:
        log.warning("Could not index chunk ids of %s: %s", table.name, err)
        return False
    return True


def reconcile(writer: GenerationWriter) -> dict[str, int]:
    """Make the generation self-consistent after an interrupted writer.

    Drops chunks whose file has no indexed row (a batch killed between its
    commits), file rows whose chunk count is wrong or that duplicate a path
    (their files are read again by the next scan), and vectors without a chunk
    or stored twice. Returns what was repaired. Costs a scan of the id columns.
    """
    files, chunks, vectors = writer.files, writer.chunks, writer.vectors
    frows = (
        files.search()
        .select(["file_id", "path", "status", "n_chunks", "indexed_at"])
        .limit(None)
        .to_arrow()
        .sort_by([("indexed_at", "descending")])
    )
    crows = chunks.search().select(["chunk_id", "file_id"]).limit(None).to_arrow()
    valid, bad_rows = _vouched_files(frows, _chunk_counts(crows))
    dead_chunks = sorted(set(crows["file_id"].to_pylist()) - valid)
    for part in batched(dead_chunks):
        chunks.delete(sql_in("file_id", part))
    for part in batched(bad_rows):
        files.delete(sql_in("file_id", part))
    doomed: set[str] = set()
    if vectors is not None:
        alive = crows.filter(pc.is_in(crows["file_id"], pa.array(list(valid), pa.string())))
        live = set(alive["chunk_id"].to_pylist())
        seen: set[str] = set()
        for cid in vectors.search().select(["chunk_id"]).limit(None).to_arrow()["chunk_id"]:
            key = cid.as_py()
            if key not in live or key in seen:
                doomed.add(key)
            seen.add(key)
        for part in batched(sorted(doomed)):
            vectors.delete(sql_in("chunk_id", part))
    report = {"chunk_files": len(dead_chunks), "file_rows": len(bad_rows), "vectors": len(doomed)}
    if any(report.values()):
        log.info("Repaired the index after an interrupted run: %s", report)
    return report


def _chunk_counts(crows: pa.Table) -> dict[str, int]:
    if not crows.num_rows:
        return {}
    grouped = crows.group_by("file_id").aggregate([("chunk_id", "count")])
    return dict(
        zip(grouped["file_id"].to_pylist(), grouped["chunk_id_count"].to_pylist(), strict=True)
    )


def _vouched_files(frows: pa.Table, counts: dict[str, int]) -> tuple[set[str], list[str]]:
    """(ids of file rows that vouch for exactly their chunks, ids of bad rows);
    of two rows with one path the newest wins (``frows`` is sorted newest first)."""
    valid: set[str] = set()
    bad_rows: list[str] = []
    paths: set[str] = set()
    for fid, path, status, n in zip(
        frows["file_id"].to_pylist(),
        frows["path"].to_pylist(),
        frows["status"].to_pylist(),
        frows["n_chunks"].to_pylist(),
        strict=True,
    ):
        want = int(n or 0) if status == STATUS_INDEXED else 0
        if path in paths or counts.get(fid, 0) != want:
            bad_rows.append(fid)
        else:
            valid.add(fid)
        paths.add(path)
    return valid, bad_rows


def upgrade_layout(
    conn: Connection, pointer: Pointer, gen: Generation, progress: UpgradeProgress | None = None
) -> Generation:
    """Rewrite ``gen``'s vector table in the current layout; returns the upgraded
    generation (saved in the pointer).

    The new table is filled beside the old one, which keeps serving readers;
    then the pointer names the new layout (one atomic rename) and the old table
    is dropped. A kill before the rename leaves a partial new table that the
    next upgrade drops and refills; a kill after it leaves the old table, which
    :func:`drop_debris` removes. Every vector whose chunk exists is carried over.
    """
    if not gen.outdated or gen.dim is None:
        return gen
    new = replace(gen, layout=LAYOUT)
    conn.drop(new.vectors_table)  # a partial table of an interrupted upgrade
    target = conn.create(new.vectors_table, embedded_schema(gen.dim))
    old, chunks = conn.table(gen.vectors_table), conn.table(gen.chunks_table)
    total, done = old.count_rows(), 0
    log.info("Upgrading the index layout of %s (%d vectors)", gen.key, total)
    for batch in old.search().select(["chunk_id", "vector"]).limit(None).to_batches(UPGRADE_BATCH):
        part = pa.Table.from_batches([batch])
        rows = rows_by_id(chunks, part["chunk_id"].to_pylist(), HIT_COLUMNS)
        position = {cid: i for i, cid in enumerate(part["chunk_id"].to_pylist())}
        order = pa.array([position[c] for c in rows["chunk_id"].to_pylist()], pa.int64())
        if len(order):
            vectors = part["vector"].combine_chunks().take(order)
            target.add(embedded_rows(rows, vectors, gen.model_id, gen.dim))
        done += part.num_rows
        if progress is not None:
            progress(done, total)
    pointer.meta.gens[gen.key] = new
    pointer.save()
    conn.drop(gen.vectors_table)
    log.info("Upgraded the index layout of %s", gen.key)
    return new


def drop_retired(conn: Connection, pointer: Pointer) -> None:
    """Drop the tables of generations retired longer ago than their grace time."""
    due = pointer.due_for_drop()
    for gen in due:
        for name in (*gen.table_names(), gen.vectors_table_of(LAYOUT_SPLIT)):
            conn.drop(name)
        log.info("Dropped the retired index generation %s", gen.key)
    pointer.forget([gen.key for gen in due])


def drop_debris(conn: Connection, pointer: Pointer) -> list[str]:
    """Drop index tables no generation owns (left by a killed upgrade or a
    generation whose creation was interrupted); the writer's lock makes this
    safe. Returns the names dropped."""
    live = pointer.live_tables()
    debris = [n for n in conn.names() if n.startswith(TABLE_PREFIXES) and n not in live]
    for name in debris:
        conn.drop(name)
        log.info("Dropped the leftover index table %s", name)
    return debris
