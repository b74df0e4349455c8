"""Writes to the generation a writer fills: files, chunks and vectors.

Keyword first. A file's chunks are committed with their text as soon as it is
read (keyword-searchable at once); vectors are added to the vector table as
they are computed, each with a copy of its passage. Vectors live in their own
table, not as a nullable column of the chunk table, because filling a column
rewrites the whole row in LanceDB and every rewritten row falls out of the
full-text index until the next optimize (bench/store.py: keyword queries went
from 5 ms to 150 ms with 1,000 such rows).

Atomic replacement. A batch of files is written with one ``merge_insert`` on the
chunk table: new chunks inserted, unchanged ones updated, old chunks of exactly
those files deleted, in one commit, so a reader sees a file's old chunks or its
new ones, never both or neither. A chunk's id is its file plus a hash of its
text: an unchanged passage keeps its vector across edits, and a vector computed
for an old text can never be attached to a new one.

Crash safety. Tables cannot be committed together, so writes are ordered so that
an interrupted one leaves a state the next writer repairs
(:func:`sr3desk.index.maintenance.reconcile`): chunks first, then vectors, then
the file rows that vouch for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sr3desk.errors import IndexAccessError
from sr3desk.index.connection import Connection
from sr3desk.index.generations import Generation
from sr3desk.index.reads import rows_by_id
from sr3desk.index.tables import (
    HIT_COLUMNS,
    FileWrite,
    KnownFiles,
    batched,
    chunk_rows,
    embedded_rows,
    files_schema,
    records,
    records_table,
    sql_in,
    sql_str,
    vector_array,
)
from sr3desk.index.types import STATUS_INDEXED, FileRecord

SQL_IN_BATCH_INTS = 500  # sizes per "IN (...)" list
PENDING_COLUMNS = ["chunk_id", "file_id", "ordinal", "mtime", "n_tokens", "path"]


class GenerationWriter:
    """Writes one generation's tables; counts commits for the maintenance policy."""

    def __init__(self, conn: Connection, gen: Generation) -> None:
        self.conn = conn
        self.gen = gen
        self.commits = 0  # commits since the last optimize

    @property
    def files(self) -> Any:
        return self.conn.table(self.gen.files_table)

    @property
    def chunks(self) -> Any:
        return self.conn.table(self.gen.chunks_table)

    @property
    def vectors(self) -> Any | None:
        """The vector table (None for a keyword-only generation)."""
        return self.conn.table(self.gen.vectors_table) if self.gen.dim is not None else None

    def _current_vectors(self) -> Any | None:
        if self.gen.outdated:
            raise IndexAccessError(
                "This index is in an older layout: upgrade it (Store.upgrade_layout) "
                "before writing to it"
            )
        return self.vectors

    # -- what is there -------------------------------------------------------------

    def load_files(self, under: Sequence[str] | None = None) -> KnownFiles:
        """The generation's files: all, or those at or below the paths ``under``."""
        files = self.files
        if under is None:
            # Three columns decide whether a file changed; full rows are read
            # only if one did (KnownFiles.get).
            slim = files.search().select(["path", "size", "mtime"]).limit(None).to_arrow()
            return KnownFiles(slim, loader=lambda: files.to_arrow())
        parts = []
        for part in batched(list(under), 100):
            where = " OR ".join(
                f"path = {sql_str(p)} OR starts_with(path, {sql_str(p.rstrip('/') + '/')})"
                for p in part
            )
            parts.append(files.search().where(where).limit(None).to_arrow())
        table = pa.concat_tables(parts) if parts else files_schema().empty_table()
        return KnownFiles(table)

    def files_of_size(self, sizes: Sequence[int]) -> list[FileRecord]:
        """Indexed files whose size is in ``sizes``."""
        wanted = sorted({int(s) for s in sizes})
        out: list[FileRecord] = []
        for i in range(0, len(wanted), SQL_IN_BATCH_INTS):
            part = ", ".join(str(s) for s in wanted[i : i + SQL_IN_BATCH_INTS])
            where = f"size IN ({part}) AND status = {sql_str(STATUS_INDEXED)}"
            out.extend(records(self.files.search().where(where).limit(None).to_arrow()))
        return out

    def pending_count(self) -> int:
        """Chunks without a vector (from table metadata: no scan)."""
        vectors = self.vectors
        if vectors is None:
            return 0
        return max(0, self.chunks.count_rows() - vectors.count_rows())

    def pending_chunks(self) -> pa.Table:
        """Chunks still waiting for a vector, newest first (see Store.pending_chunks)."""
        vectors = self.vectors
        if vectors is None:
            return pa.table({c: [] for c in [*PENDING_COLUMNS, "_rowid"]})
        rows = self.chunks.search().select(PENDING_COLUMNS).with_row_id(True).limit(None).to_arrow()
        done = vectors.search().select(["chunk_id"]).limit(None).to_arrow()["chunk_id"]
        if len(done):
            rows = rows.filter(pc.invert(pc.is_in(rows["chunk_id"], done)))
        order = [("mtime", "descending"), ("file_id", "ascending"), ("ordinal", "ascending")]
        return rows.sort_by(order)

    def chunk_texts(self, row_ids: Sequence[int]) -> list[str]:
        """Texts of the chunks at ``row_ids`` (from :meth:`pending_chunks`)."""
        if not row_ids:
            return []
        found = self.chunks.take_row_ids(list(row_ids)).select(["text"]).with_row_id().to_arrow()
        by_id = dict(zip(found["_rowid"].to_pylist(), found["text"].to_pylist(), strict=True))
        return [by_id[r] for r in row_ids]

    # -- writes --------------------------------------------------------------------

    def write_files(self, batch: Sequence[FileWrite]) -> int:
        """Commit a batch of read (or skipped) files; returns the chunks written."""
        if not batch:
            return 0
        vectors = self._current_vectors()
        chunks = self.chunks
        known = self._existing_ids([w.record.file_id for w in batch])
        table = chunk_rows(self.gen.model_id, batch)
        if known:
            where = sql_in("file_id", known)
            if table.num_rows:
                (
                    chunks.merge_insert("chunk_id")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .when_not_matched_by_source_delete(where)
                    .execute(table)
                )
            else:
                chunks.delete(where)
            self.commits += 1
            if vectors is not None:
                self._refresh_vectors(vectors, known, table)
        elif table.num_rows:
            chunks.add(table)
            self.commits += 1
        self._upsert_files([w.record for w in batch])
        return table.num_rows

    def _refresh_vectors(self, vectors: Any, file_ids: list[str], new: pa.Table) -> None:
        """After files changed: keep the vectors of passages that survived (with
        their new rows), drop the rest, in one commit."""
        old = pa.concat_tables(
            [
                vectors.search()
                .where(sql_in("file_id", part))
                .select(["chunk_id", "vector"])
                .limit(None)
                .to_arrow()
                for part in batched(file_ids)
            ]
        )
        if not old.num_rows:
            return
        position = {cid: i for i, cid in enumerate(new["chunk_id"].to_pylist())}
        keep = [i for i, cid in enumerate(old["chunk_id"].to_pylist()) if cid in position]
        where = sql_in("file_id", file_ids)
        if not keep:
            vectors.delete(where)
        else:
            kept = old.take(pa.array(keep, pa.int64()))
            rows = new.take(pa.array([position[c] for c in kept["chunk_id"].to_pylist()]))
            dim = self.gen.dim or 0
            source = embedded_rows(rows, kept["vector"].combine_chunks(), self.gen.model_id, dim)
            (
                vectors.merge_insert("chunk_id")
                .when_matched_update_all()
                .when_not_matched_by_source_delete(where)
                .execute(source)
            )
        self.commits += 1

    def _existing_ids(self, ids: Sequence[str]) -> list[str]:
        found: list[str] = []
        for part in batched(ids):
            query = self.files.search().where(sql_in("file_id", part)).select(["file_id"])
            found.extend(query.limit(None).to_arrow()["file_id"].to_pylist())
        return found

    def _upsert_files(self, recs: Sequence[FileRecord]) -> None:
        (
            self.files.merge_insert("file_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(records_table(recs))
        )
        self.commits += 1

    def repath(self, moves: Sequence[tuple[FileRecord, FileRecord]]) -> None:
        """Give files new paths or dates without touching their text or vectors:
        chunk and vector rows first, then the file rows."""
        if not moves:
            return
        vectors = self._current_vectors()
        for _old, new in moves:
            where = f"file_id = {sql_str(new.file_id)}"
            facts: dict[str, Any] = {
                "path": new.path,
                "folder": new.folder,
                "ext": new.ext,
                "mtime": new.mtime,
                "size": new.size,
            }
            self.chunks.update(where=where, values=facts)
            if vectors is not None:
                vectors.update(where=where, values=facts)
            self.commits += 2
        self._upsert_files([new for _old, new in moves])

    def remove_files(self, file_ids: Sequence[str]) -> None:
        """Drop files, their chunks and their vectors (in that reverse order, so an
        interrupted removal leaves nothing a file row vouches for)."""
        ids = list(file_ids)
        for table in (self.chunks, self.vectors, self.files):
            if table is None:
                continue
            for part in batched(ids):
                table.delete(sql_in("file_id", part))
                self.commits += 1

    def write_vectors(self, chunk_ids: Sequence[str], vectors: np.ndarray) -> int:
        """Add vectors for ``chunk_ids`` in one commit; returns the number stored
        (vectors of chunks that no longer exist are dropped)."""
        gen = self.gen
        table = self._current_vectors()
        if table is None or gen.dim is None:
            raise IndexAccessError("This index generation is keyword-only: it stores no vectors")
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if vecs.shape != (len(chunk_ids), gen.dim):
            raise IndexAccessError(
                f"Expected {len(chunk_ids)} vectors of {gen.dim} dimensions, got {vecs.shape}"
            )
        rows = rows_by_id(self.chunks, chunk_ids, HIT_COLUMNS)
        position = {cid: i for i, cid in enumerate(chunk_ids)}
        order = [position[c] for c in rows["chunk_id"].to_pylist()]
        if not order:
            return 0
        table.add(embedded_rows(rows, vector_array(vecs[order], gen.dim), gen.model_id, gen.dim))
        self.commits += 1
        return len(order)
