"""Reads of one generation: searches, previews, samples, counts.

Each function takes the open :class:`~sr3desk.index.connection.Connection` and
the generation to read; :class:`~sr3desk.index.store.Store` picks the served
generation and retries once when a swap happened under the read.

One read per retriever: a keyword search reads the chunk table (its full-text
index), a vector search reads the vector table, whose rows carry their passage
(layout 2). A generation still in layout 1 (vectors beside the filter columns
only) is searched and then its passages looked up by id, until its writer
upgrades it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sr3desk.errors import IndexAccessError, ModelRequiredError
from sr3desk.index.connection import Connection
from sr3desk.index.generations import LAYOUT_SPLIT, Generation
from sr3desk.index.tables import (
    HIT_COLUMNS,
    LIGHT_COLUMNS,
    batched,
    filters_sql,
    hits,
    light_hits,
    records,
    search_hits,
    sql_in,
    sql_str,
)
from sr3desk.index.types import (
    OCR_NOTE_PREFIX,
    STATUS_INDEXED,
    STATUS_SKIPPED,
    ChunkHit,
    FileRecord,
    Filters,
    IndexStatus,
    OcrNote,
)

# How the ANN index (maintenance.ann_config) is searched; bench/search.py
# --ann-kinds measures the choice (recall@10 against exact search beside the
# latency of each setting).
ANN_NPROBES = 4  # partitions searched
ANN_REFINE: int | None = 1  # re-rank the k found with exact distances: scores stay true cosines
SPLIT_LAYOUT_ANN = (24, 4)  # (nprobes, refine) of the IVF_PQ index of a layout-1 index


def has_vector_index(table: Any) -> bool:
    """True when ``table`` has an ANN index on its vectors."""
    try:
        return any(ix.index_type != "FTS" and "vector" in ix.columns for ix in table.list_indices())
    except (RuntimeError, ValueError, OSError):
        return False


def vector_search(
    conn: Connection,
    gen: Generation,
    vector: np.ndarray,
    k: int,
    filters: Filters | None,
    with_text: bool,
) -> list[ChunkHit]:
    """The ``k`` passages nearest to ``vector`` by cosine, best first (see
    :meth:`Store.vector_search`)."""
    if gen.dim is None:
        raise ModelRequiredError(
            "The index holds no vectors yet: index with a model (--model GGUF)"
        )
    if vector.shape[0] != gen.dim:
        raise IndexAccessError(
            f"The query vector has {vector.shape[0]} dimensions but the index holds "
            f"vectors of {gen.model_name or gen.model_id} ({gen.dim}): "
            "search with that model or index again with yours"
        )
    table = conn.table(gen.vectors_table)
    query = (
        table.search(vector, vector_column_name="vector", query_type="vector")
        .distance_type("cosine")
        .limit(k)
    )
    if has_vector_index(table):
        nprobes, refine = (
            SPLIT_LAYOUT_ANN if gen.layout == LAYOUT_SPLIT else (ANN_NPROBES, ANN_REFINE)
        )
        query = query.nprobes(nprobes)
        if refine:
            query = query.refine_factor(refine)
    where = filters_sql(filters)
    if where:
        query = query.where(where, prefilter=True)
    if gen.layout != LAYOUT_SPLIT:
        return search_hits(query.select([*HIT_COLUMNS, "_distance"]).to_arrow(), "_distance")
    if not with_text:
        found = query.select([*LIGHT_COLUMNS, "_distance"]).to_arrow()
        return light_hits(found)
    found = query.select(["chunk_id", "_distance"]).to_arrow()
    return hits_by_id(conn, gen, found["chunk_id"].to_pylist(), _scores(found))


def _scores(found: pa.Table) -> list[float]:
    return [1.0 - float(d) for d in found["_distance"].to_pylist()]


def keyword_search(
    conn: Connection, gen: Generation, text: str, k: int, filters: Filters | None
) -> list[ChunkHit]:
    """The ``k`` best passages for ``text`` by BM25 (see :meth:`Store.keyword_search`)."""
    table = conn.table(gen.chunks_table)
    query = table.search(text, query_type="fts", fts_columns="text").limit(k)
    where = filters_sql(filters)
    if where:
        query = query.where(where, prefilter=True)
    hits = search_hits(query.select([*HIT_COLUMNS, "_score"]).to_arrow(), "_score")
    # Equal scores (repeated or near-identical passages) come back in no fixed order:
    # by passage id, so the same query always gives the same list.
    hits.sort(key=lambda h: (-h.score, h.chunk_id))
    return hits


def rows_by_id(table: Any, ids: Sequence[str], columns: list[str]) -> pa.Table:
    """Rows of ``table`` whose chunk id is in ``ids`` (any order)."""
    parts = [
        table.search().where(sql_in("chunk_id", part)).select(columns).limit(None).to_arrow()
        for part in batched(ids)
    ]
    return pa.concat_tables(parts) if parts else pa.table({c: [] for c in columns})


def hits_by_id(
    conn: Connection, gen: Generation, ids: list[str], scores: list[float]
) -> list[ChunkHit]:
    """Chunk rows for ``ids`` in the given order (ids without a chunk dropped)."""
    if not ids:
        return []
    rows = rows_by_id(conn.table(gen.chunks_table), ids, HIT_COLUMNS)
    position = {cid: i for i, cid in enumerate(rows["chunk_id"].to_pylist())}
    kept = [(position[cid], s) for cid, s in zip(ids, scores, strict=True) if cid in position]
    return hits(rows.take(pa.array([i for i, _s in kept], pa.int64())), [s for _i, s in kept])


def complete_hits(conn: Connection, gen: Generation, partial: Sequence[ChunkHit]) -> list[ChunkHit]:
    """``partial`` with each partial hit's passage filled in (see :meth:`Store.complete_hits`)."""
    wanted = [h.chunk_id for h in partial if h.partial]
    rows = rows_by_id(conn.table(gen.chunks_table), wanted, HIT_COLUMNS)
    by_id = {h.chunk_id: h for h in hits(rows)}
    out = []
    for h in partial:
        if not h.partial:
            out.append(h)
        elif h.chunk_id in by_id:
            out.append(replace(by_id[h.chunk_id], score=h.score, rank=h.rank))
    return out


def file_chunks(conn: Connection, gen: Generation, file_id: str) -> list[ChunkHit]:
    """All chunks of one file in text order (``score`` 0)."""
    found = (
        conn.table(gen.chunks_table)
        .search()
        .where(f"file_id = {sql_str(file_id)}")
        .select(HIT_COLUMNS)
        .limit(None)
        .to_arrow()
        .sort_by("ordinal")
    )
    return hits(found)


def sample_chunks(conn: Connection, gen: Generation, n: int, seed: int) -> list[ChunkHit]:
    """Up to ``n`` embedded chunks drawn at random, each with its vector."""
    if gen.dim is None or n <= 0:
        return []
    vectors = conn.table(gen.vectors_table)
    ids = vectors.search().select(["chunk_id"]).limit(None).to_arrow()["chunk_id"]
    pool = sorted(set(ids.to_pylist()))  # scan order depends on history
    if not pool:
        return []
    rng = np.random.default_rng(seed)
    picked = [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
    out = hits_by_id(conn, gen, picked, [0.0] * len(picked))
    vecs = vectors_of(conn, gen, [h.chunk_id for h in out])
    kept = [h for h in out if h.chunk_id in vecs]
    for rank, hit in enumerate(kept):
        hit.vector, hit.rank = vecs[hit.chunk_id], rank
    return kept


def vectors_of(conn: Connection, gen: Generation, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The stored vectors of ``ids`` (pending or unknown ones left out)."""
    if not ids or gen.dim is None:
        return {}
    rows = rows_by_id(conn.table(gen.vectors_table), ids, ["chunk_id", "vector"])
    if not rows.num_rows:
        return {}
    flat = rows["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    matrix = np.asarray(flat, dtype=np.float32).reshape(rows.num_rows, gen.dim)
    return dict(zip(rows["chunk_id"].to_pylist(), matrix, strict=True))


def file_at(conn: Connection, gen: Generation, path: str) -> FileRecord | None:
    """The record of the file at ``path``, or None."""
    table = conn.table(gen.files_table)
    found = records(table.search().where(f"path = {sql_str(path)}").limit(None).to_arrow())
    return found[0] if found else None


def file_records(conn: Connection, gen: Generation, status: str | None) -> list[FileRecord]:
    """The generation's file records (optionally of one status)."""
    query = conn.table(gen.files_table).search()
    if status is not None:
        query = query.where(f"status = {sql_str(status)}")
    return records(query.limit(None).to_arrow())


def ocr_notes(conn: Connection, gen: Generation, file_ids: Sequence[str]) -> dict[str, OcrNote]:
    """The OCR notes of those of ``file_ids`` whose text came (in part) from OCR."""
    out: dict[str, OcrNote] = {}
    table = conn.table(gen.files_table)
    for part in batched(list(dict.fromkeys(file_ids))):
        where = (
            f"{sql_in('file_id', part)} AND status = {sql_str(STATUS_INDEXED)} "
            f"AND starts_with(reason, {sql_str(OCR_NOTE_PREFIX)})"
        )
        found = table.search().where(where).select(["file_id", "reason"]).limit(None).to_arrow()
        for fid, reason in zip(
            found["file_id"].to_pylist(), found["reason"].to_pylist(), strict=True
        ):
            note = OcrNote.parse(reason or "")
            if note is not None:
                out[fid] = note
    return out


def counts(conn: Connection, gen: Generation) -> dict[str, Any]:
    """Files, chunks, vectors, skipped files and the last indexing time of ``gen``."""
    files = conn.table(gen.files_table)
    skipped = (
        files.search()
        .where(f"status = {sql_str(STATUS_SKIPPED)}")
        .select(["path", "reason"])
        .limit(None)
        .to_arrow()
    )
    out: dict[str, Any] = {
        "files": files.count_rows(f"status = {sql_str(STATUS_INDEXED)}"),
        "chunks": conn.table(gen.chunks_table).count_rows(),
        "embedded": conn.table(gen.vectors_table).count_rows() if gen.dim is not None else 0,
        "skipped": sorted(
            zip(skipped["path"].to_pylist(), skipped["reason"].to_pylist(), strict=True)
        ),
        "last_indexed": None,
    }
    if out["files"]:
        stamps = files.search().select(["indexed_at"]).limit(None).to_arrow()
        out["last_indexed"] = pc.max(stamps["indexed_at"]).as_py()
    return out


def index_status(conn: Connection, gen: Generation, building: Generation | None) -> IndexStatus:
    """Counts, the served model and the skipped files of ``gen``, and the progress
    of the ``building`` generation (``folders`` and ``disk_bytes`` left to the caller)."""
    got = counts(conn, gen)
    out = IndexStatus(files=got["files"], chunks=got["chunks"], skipped=got["skipped"])
    out.last_indexed = got["last_indexed"]
    if gen.dim is not None:
        out.embedded = min(out.chunks, got["embedded"])
        out.pending = out.chunks - out.embedded
        out.model, out.model_name = gen.model_id, gen.model_name
        out.model_path, out.dim = gen.model_path, gen.dim
    if building is not None:
        new = counts(conn, building)
        out.building = building.model_id
        out.building_chunks, out.building_embedded = new["chunks"], new["embedded"]
    return out


def disk_usage(path: Path) -> int:
    """Bytes of the files under ``path``."""
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def embedded_fraction(conn: Connection, gen: Generation) -> float:
    """Embedded / all chunks (1.0 when empty; 0.0 for keyword-only with chunks)."""
    total = conn.table(gen.chunks_table).count_rows()
    if not total:
        return 1.0
    if gen.dim is None:
        return 0.0
    return min(1.0, conn.table(gen.vectors_table).count_rows() / total)
