"""Table schemas and row conversions for the store.

Kept apart from the store's reads and writes so that those read as the protocol
they implement (what is committed in which order), not as field lists.

A generation owns ``files_<key>`` (one row per file: path, size, mtime, content
hash, status, skip reason, time indexed, number of chunks), ``chunks_<key>``
(one row per passage: text, file, page, character span, heading, model id, plus
copies of the file's path, folder, type and mtime so that filters need no join)
and ``embedded_<key>`` (one row per embedded passage: the chunk row's columns
and its vector, so that a vector search returns its passages in one read).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from sr3desk.index.types import STATUS_INDEXED, ChunkHit, FileRecord, Filters, normalize_ext

SQL_IN_BATCH = 500  # ids per "IN (...)" list

# Columns of a chunk row that make a ChunkHit.
HIT_COLUMNS = [
    "chunk_id",
    "file_id",
    "ordinal",
    "path",
    "folder",
    "ext",
    "mtime",
    "size",
    "page",
    "char_start",
    "char_end",
    "heading",
    "text",
]
# Copies of the file's facts in chunk and vector rows, so that filters need no join.
FILTER_COLUMNS = ["path", "folder", "ext", "mtime"]
# What a layout-1 vector row alone tells about a hit (``vector_search(...,
# with_text=False)`` on an index not yet upgraded).
LIGHT_COLUMNS = ["chunk_id", "file_id", *FILTER_COLUMNS]


class ChunkLike(Protocol):
    """A passage to store (``sr3desk.index.chunking.Chunk`` has these fields)."""

    @property
    def ordinal(self) -> int: ...

    @property
    def text(self) -> str: ...

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...

    @property
    def page(self) -> int | None: ...

    @property
    def heading(self) -> str: ...

    @property
    def tokens(self) -> int: ...


@dataclass
class FileWrite:
    """One file of a write batch: its new record and, when indexed, its chunks;
    ``ocr_pages``/``ocr_seconds``: pages its reading put through OCR, and the time."""

    record: FileRecord
    chunks: Sequence[ChunkLike] = ()
    ocr_pages: int = 0
    ocr_seconds: float = 0.0


def files_schema() -> pa.Schema:
    """Schema of a files table."""
    return pa.schema(
        [
            pa.field("file_id", pa.string(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("folder", pa.string()),
            pa.field("ext", pa.string()),
            pa.field("size", pa.int64()),
            pa.field("mtime", pa.float64()),
            pa.field("ino", pa.int64()),
            pa.field("content_hash", pa.string()),
            pa.field("status", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("kind", pa.string()),
            pa.field("indexed_at", pa.float64()),
            pa.field("n_chunks", pa.int32()),
        ]
    )


def chunks_schema() -> pa.Schema:
    """Schema of a chunk table (text; the vectors live in their own table)."""
    return pa.schema(
        [
            pa.field("chunk_id", pa.string(), nullable=False),
            pa.field("file_id", pa.string(), nullable=False),
            pa.field("ordinal", pa.int32()),
            pa.field("text", pa.string()),
            pa.field("n_tokens", pa.int32()),
            pa.field("page", pa.int32()),
            pa.field("char_start", pa.int32()),
            pa.field("char_end", pa.int32()),
            pa.field("heading", pa.string()),
            pa.field("path", pa.string()),
            pa.field("folder", pa.string()),
            pa.field("ext", pa.string()),
            pa.field("mtime", pa.float64()),
            pa.field("size", pa.int64()),
            pa.field("model_id", pa.string()),
        ]
    )


def embedded_schema(dim: int) -> pa.Schema:
    """Schema of a vector table (layout 2): one row per embedded passage, with
    every column a hit shows, so that a vector search needs no second read."""
    passage = [f for f in chunks_schema() if f.name in HIT_COLUMNS or f.name == "model_id"]
    return pa.schema([*passage, pa.field("vector", pa.list_(pa.float32(), dim), nullable=False)])


def split_vectors_schema(dim: int) -> pa.Schema:
    """Schema of a layout-1 vector table: chunk id, filter columns and vector only."""
    return pa.schema(
        [
            pa.field("chunk_id", pa.string(), nullable=False),
            pa.field("file_id", pa.string(), nullable=False),
            pa.field("path", pa.string()),
            pa.field("folder", pa.string()),
            pa.field("ext", pa.string()),
            pa.field("mtime", pa.float64()),
            pa.field("model_id", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


def embedded_rows(passages: pa.Table, vectors: pa.Array, model_id: str, dim: int) -> pa.Table:
    """Rows of a vector table: ``passages`` (chunk rows with HIT_COLUMNS) beside
    their ``vectors`` (a FixedSizeList array, one per row, in the same order)."""
    schema = embedded_schema(dim)
    columns = {name: passages[name] for name in HIT_COLUMNS}
    columns["model_id"] = pa.array([model_id] * passages.num_rows, pa.string())
    columns["vector"] = vectors
    return pa.table({f.name: columns[f.name] for f in schema}, schema=schema)


def vector_array(vectors: np.ndarray, dim: int) -> pa.FixedSizeListArray:
    """Float32 rows as the Arrow array of a vector column."""
    flat = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)


def new_file_id() -> str:
    """A fresh random file id (stable across renames, unlike anything path-based)."""
    return secrets.token_hex(8)


def chunk_ids(file_id: str, texts: Iterable[str]) -> list[str]:
    """Ids of a file's chunks: the file and a hash of the text (plus a counter for
    repeated texts). An unchanged passage keeps its id, and so its vector, when the
    file is edited elsewhere; a changed one gets a new id, so a vector computed for
    an old text can never be attached to a new one."""
    seen: dict[str, int] = {}
    out = []
    for text in texts:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
        n = seen.get(digest, 0)
        seen[digest] = n + 1
        out.append(f"{file_id}-{digest}" + (f"-{n}" if n else ""))
    return out


def sql_str(value: str) -> str:
    """Quote ``value`` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Iterable[str]) -> str:
    """``column IN ('a', 'b')`` for string values."""
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


def batched(items: Sequence[str], n: int = SQL_IN_BATCH) -> Iterator[Sequence[str]]:
    """``items`` in slices of ``n`` (for IN lists of bounded length)."""
    for i in range(0, len(items), n):
        yield items[i : i + n]


def filters_sql(filters: Filters | None) -> str | None:
    """Translate Filters into a where clause on the denormalised filter columns."""
    if filters is None:
        return None
    parts: list[str] = []
    if filters.folders:
        ors = [f"starts_with(path, {sql_str(f.rstrip('/') + '/')})" for f in filters.folders]
        parts.append("(" + " OR ".join(ors) + ")")
    if filters.exts:
        parts.append(sql_in("ext", filters.exts))
    if filters.modified_after is not None:
        parts.append(f"mtime >= {float(filters.modified_after)!r}")
    if filters.modified_before is not None:
        parts.append(f"mtime < {float(filters.modified_before)!r}")
    return " AND ".join(parts) if parts else None


def chunk_rows(model_id: str, batch: Sequence[FileWrite]) -> pa.Table:
    """The chunk rows of a write batch (indexed files only)."""
    cols: dict[str, list[Any]] = {name: [] for name in chunks_schema().names}
    for write in batch:
        rec = write.record
        if rec.status != STATUS_INDEXED or not write.chunks:
            continue
        ids = chunk_ids(rec.file_id, (c.text for c in write.chunks))
        for cid, ch in zip(ids, write.chunks, strict=True):
            cols["chunk_id"].append(cid)
            cols["file_id"].append(rec.file_id)
            cols["ordinal"].append(ch.ordinal)
            cols["text"].append(ch.text)
            cols["n_tokens"].append(int(ch.tokens))
            cols["page"].append(ch.page)
            cols["char_start"].append(ch.start)
            cols["char_end"].append(ch.end)
            cols["heading"].append(ch.heading)
            cols["path"].append(rec.path)
            cols["folder"].append(rec.folder)
            cols["ext"].append(rec.ext)
            cols["mtime"].append(rec.mtime)
            cols["size"].append(rec.size)
            cols["model_id"].append(model_id)
    return pa.table(cols, schema=chunks_schema())


def records_table(records: Sequence[FileRecord]) -> pa.Table:
    """File records as rows of a files table."""
    return pa.table(
        {
            "file_id": [r.file_id for r in records],
            "path": [r.path for r in records],
            "folder": [r.folder for r in records],
            "ext": [r.ext for r in records],
            "size": [r.size for r in records],
            "mtime": [r.mtime for r in records],
            "ino": [r.ino for r in records],
            "content_hash": [r.content_hash for r in records],
            "status": [r.status for r in records],
            "reason": [r.reason for r in records],
            "kind": [r.kind for r in records],
            "indexed_at": [r.indexed_at for r in records],
            "n_chunks": [r.n_chunks for r in records],
        },
        schema=files_schema(),
    )


def records(table: pa.Table) -> list[FileRecord]:
    """Rows of a files table as FileRecords."""
    out = []
    for row in table.to_pylist():
        out.append(
            FileRecord(
                file_id=row["file_id"],
                path=row["path"],
                size=int(row["size"] or 0),
                mtime=float(row["mtime"] or 0.0),
                content_hash=row["content_hash"] or "",
                status=row["status"] or STATUS_INDEXED,
                reason=row["reason"] or "",
                indexed_at=float(row["indexed_at"] or 0.0),
                n_chunks=int(row["n_chunks"] or 0),
                kind=row["kind"] or "",
                ext=row["ext"] or normalize_ext(os.path.splitext(row["path"])[1]),
                folder=row["folder"] or os.path.dirname(row["path"]),
                ino=int(row["ino"] or 0),
            )
        )
    return out


class KnownFiles:
    """The files table as the scan needs it: membership and (size, mtime) by path
    at the cost of three column conversions; full records built only on demand."""

    def __init__(self, table: pa.Table, loader: Callable[[], pa.Table] | None = None) -> None:
        self._table = table
        self._loader = loader  # reads the full rows when ``table`` has only some columns
        self.paths: list[str] = table["path"].to_pylist()
        self.positions = {path: i for i, path in enumerate(self.paths)}
        self.sizes: list[int] = table["size"].to_pylist()
        self.mtimes: list[float] = table["mtime"].to_pylist()

    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, path: object) -> bool:
        return path in self.positions

    def same(self, path: str, size: int, mtime: float) -> bool:
        """True when ``path`` is known with this size and mtime."""
        i = self.positions.get(path)
        return i is not None and self.sizes[i] == size and self.mtimes[i] == mtime

    def get(self, path: str) -> FileRecord | None:
        """The full record of ``path``, or None."""
        i = self.positions.get(path)
        if i is None:
            return None
        self._full()
        return records(self._table.slice(i, 1))[0]

    def _full(self) -> None:
        if self._loader is not None:
            full = self._loader()
            self._loader = None
            # The full read may come back in another order: align it with ``paths``.
            order = {path: i for i, path in enumerate(full["path"].to_pylist())}
            self._table = full.take(pa.array([order[p] for p in self.paths], pa.int64()))

    def records(self) -> list[FileRecord]:
        """All records."""
        self._full()
        return records(self._table)


def hits(found: pa.Table, scores: Sequence[float] | None = None) -> list[ChunkHit]:
    """Chunk rows (a table with HIT_COLUMNS) as ChunkHits, ranked in their order,
    with ``scores`` (None: 0). Read by column: per-row dicts cost more than the
    search that returned the rows."""
    cols = found.select(HIT_COLUMNS).to_pydict()
    given = [0.0] * found.num_rows if scores is None else scores
    return [
        ChunkHit(
            chunk_id=cid,
            file_id=fid,
            path=path,
            ext=ext or "",
            mtime=float(mtime or 0.0),
            size=int(size or 0),
            page=page,
            start=int(start or 0),
            end=int(end or 0),
            heading=heading or "",
            text=text or "",
            score=float(score),
            rank=rank,
            ordinal=int(ordinal or 0),
            folder=folder or "",
        )
        for rank, (
            cid,
            fid,
            ordinal,
            path,
            folder,
            ext,
            mtime,
            size,
            page,
            start,
            end,
            heading,
            text,
            score,
        ) in enumerate(zip(*(cols[c] for c in HIT_COLUMNS), given, strict=True))
    ]


def search_hits(found: pa.Table, score_column: str) -> list[ChunkHit]:
    """A search's result (HIT_COLUMNS and ``score_column``) as ChunkHits, best
    first; ``_distance`` (cosine distance) becomes a cosine score."""
    raw = found[score_column].to_pylist()
    return hits(found, [1.0 - float(d) for d in raw] if score_column == "_distance" else raw)


def light_hits(found: pa.Table) -> list[ChunkHit]:
    """A layout-1 vector search's rows (LIGHT_COLUMNS and ``_distance``) as partial
    ChunkHits, best first: the passage's own columns stay empty until
    ``Store.complete_hits``."""
    empty = {c: pa.nulls(found.num_rows) for c in HIT_COLUMNS if c not in LIGHT_COLUMNS}
    full = found.select(LIGHT_COLUMNS)
    for name, column in empty.items():
        full = full.append_column(name, column)
    return [
        replace(h, partial=True)
        for h in search_hits(full.append_column("_distance", found["_distance"]), "_distance")
    ]
