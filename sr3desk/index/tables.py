"""Table schemas, the generation pointer and row conversions for the store.

Kept apart from :mod:`sr3desk.index.store` so that the store reads as the
protocol it implements (what is committed in which order), not as field lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from sr3desk.index.types import STATUS_INDEXED, ChunkHit, FileRecord, Filters, normalize_ext

KEYWORD_MODEL = "keyword"  # model id of a generation without vectors
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
# What a vector row alone tells about a hit (``vector_search(..., with_text=False)``).
LIGHT_COLUMNS = ["chunk_id", "file_id", *FILTER_COLUMNS]


class ModelLike(Protocol):
    """What the store needs to know of a model (``ModelInfo`` has it)."""

    @property
    def model_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def path(self) -> Path: ...


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
    """One file of a write batch: its new record and, when indexed, its chunks."""

    record: FileRecord
    chunks: Sequence[ChunkLike] = ()


@dataclass
class Generation:
    """One model's set of tables (``dim`` None: keyword only, no vector table)."""

    key: str
    model_id: str
    model_name: str = ""
    model_path: str | None = None
    dim: int | None = None
    created: float = 0.0
    tokens_per_s: float | None = None  # embedding speed last measured on this machine

    @property
    def files_table(self) -> str:
        return f"files_{self.key}"

    @property
    def chunks_table(self) -> str:
        return f"chunks_{self.key}"

    @property
    def vectors_table(self) -> str:
        return f"vectors_{self.key}"

    def table_names(self) -> list[str]:
        names = [self.files_table, self.chunks_table]
        return [*names, self.vectors_table] if self.dim is not None else names

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "model_id": self.model_id,
            "model_name": self.model_name,
            "model_path": self.model_path,
            "dim": self.dim,
            "created": self.created,
            "tokens_per_s": self.tokens_per_s,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Generation:
        return cls(
            key=str(raw["key"]),
            model_id=str(raw["model_id"]),
            model_name=str(raw.get("model_name") or ""),
            model_path=raw.get("model_path"),
            dim=int(raw["dim"]) if raw.get("dim") else None,
            created=float(raw.get("created") or 0.0),
            tokens_per_s=float(raw["tokens_per_s"]) if raw.get("tokens_per_s") else None,
        )


@dataclass
class Meta:
    """Contents of ``generations.json``: which generation serves, which is built."""

    active: str | None = None
    building: str | None = None
    gens: dict[str, Generation] = field(default_factory=dict)
    retired: dict[str, float] = field(default_factory=dict)  # key -> time swapped out
    next_key: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "active": self.active,
            "building": self.building,
            "gens": {k: g.to_json() for k, g in self.gens.items()},
            "retired": self.retired,
            "next_key": self.next_key,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Meta:
        return cls(
            active=raw.get("active"),
            building=raw.get("building"),
            gens={k: Generation.from_json(v) for k, v in (raw.get("gens") or {}).items()},
            retired={k: float(v) for k, v in (raw.get("retired") or {}).items()},
            next_key=int(raw.get("next_key") or 1),
        )

    @classmethod
    def load(cls, path: Path) -> Meta:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        """Write atomically and durably (temp file, fsync, rename, fsync folder)."""
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


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


def vectors_schema(dim: int) -> pa.Schema:
    """Schema of a vector table: one row per embedded chunk."""
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


def chunk_rows(gen: Generation, batch: Sequence[FileWrite]) -> pa.Table:
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
            cols["model_id"].append(gen.model_id)
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


def hits(rows: Sequence[dict[str, Any]], scores: Sequence[float] | None = None) -> list[ChunkHit]:
    """Chunk rows (dicts with HIT_COLUMNS) as ChunkHits, ranked in the given order."""
    out = []
    for rank, row in enumerate(rows):
        out.append(
            ChunkHit(
                chunk_id=row["chunk_id"],
                file_id=row["file_id"],
                path=row["path"],
                ext=row["ext"] or "",
                mtime=float(row["mtime"] or 0.0),
                size=int(row["size"] or 0),
                page=row["page"],
                start=int(row["char_start"] or 0),
                end=int(row["char_end"] or 0),
                heading=row["heading"] or "",
                text=row["text"] or "",
                score=float(scores[rank]) if scores is not None else 0.0,
                rank=rank,
                ordinal=int(row["ordinal"] or 0),
                folder=row["folder"] or "",
            )
        )
    return out


def light_hits(rows: Sequence[dict[str, Any]], scores: Sequence[float]) -> list[ChunkHit]:
    """Rows with only LIGHT_COLUMNS (dicts) as partial ChunkHits, ranked in the given
    order: the passage's own columns are left empty until ``Store.complete_hits``."""
    empty = {c: None for c in HIT_COLUMNS if c not in LIGHT_COLUMNS}
    return [replace(h, partial=True) for h in hits([{**empty, **r} for r in rows], scores)]
