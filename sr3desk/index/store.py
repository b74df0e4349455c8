"""The index on disk: embedded LanceDB tables in ``<home>/index`` (created 0700).

Generations. The index is a set of generations, one per embedding model (or one
without a model: keyword search only). A generation owns ``files_<key>`` (one row
per file: path, size, mtime, content hash, status, skip reason, time indexed,
number of chunks), ``chunks_<key>`` (one row per passage: text, file, page,
character span, heading, model id, plus copies of the file's path, folder, type
and mtime so that filters need no join) and ``vectors_<key>`` (one row per
embedded passage: chunk id, vector, the same filter copies). ``generations.json``
names the *active* generation, which every read uses, and at most one *building*
one: after a model change the new model's generation is filled beside the old,
which keeps serving until the new one is complete; then the pointer is swapped
(an atomic rename) and the old tables are dropped a minute later. Vectors of two
models are never in one table.

Keyword first. A file's chunks are committed with their text as soon as it is
read (keyword-searchable at once); vectors are appended to the vector table as
they are computed. Vectors live in their own table, not as a nullable column of
the chunk table, because filling a column rewrites the whole row in LanceDB and
every rewritten row falls out of the full-text index until the next optimize
(bench/store.py: keyword queries went from 5 ms to 150 ms with 1,000 such rows).

Atomic replacement. A batch of files is written with one ``merge_insert`` on the
chunk table: new chunks inserted, unchanged ones updated, old chunks of exactly
those files deleted, in one commit, so a reader sees a file's old chunks or its
new ones, never both or neither. A chunk's id is its file plus a hash of its
text: an unchanged passage keeps its vector across edits, and a vector computed
for an old text can never be attached to a new one.

Crash safety. Tables cannot be committed together, so writes are ordered so that
an interrupted one leaves a state the next writer repairs: chunks first, then
vectors, then the file rows that vouch for them. On open a writer drops chunks no
file row vouches for, file rows whose chunk count does not match (those files
are read again by the next scan) and vectors without a chunk.

Concurrency. One writer per data directory (:mod:`sr3desk.index.lock`); any
number of readers, which check for a newer table version on every query
(``read_consistency_interval=0``) and notice a swapped generation by the pointer
file's stat.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sr3desk.errors import IndexError_, ModelRequiredError
from sr3desk.index.lock import WriterLock
from sr3desk.index.tables import (
    FILTER_COLUMNS,
    HIT_COLUMNS,
    KEYWORD_MODEL,
    LIGHT_COLUMNS,
    FileWrite,
    Generation,
    KnownFiles,
    Meta,
    ModelLike,
    batched,
    chunk_rows,
    chunks_schema,
    files_schema,
    filters_sql,
    hits,
    light_hits,
    records,
    records_table,
    sql_in,
    sql_str,
    vectors_schema,
)
from sr3desk.index.types import (
    STATUS_INDEXED,
    STATUS_SKIPPED,
    ChunkHit,
    FileRecord,
    Filters,
    IndexStatus,
)

__all__ = ["FileWrite", "Store"]

log = logging.getLogger(__name__)

T = TypeVar("T")

INDEX_DIR = "index"
META_FILE = "generations.json"

# Maintenance policy; the figures behind each value are in bench/store.py's output.
OPTIMIZE_EVERY_COMMITS = 12  # small commits before indices are refreshed and files compacted
ANN_MIN_ROWS = 20_000  # vectors from which an ANN index beats a flat scan
SCALAR_MIN_ROWS = 10_000  # rows from which a BTREE on chunk_id beats scanning for id lookups
ANN_NPROBES = 24
ANN_REFINE = 4  # re-rank ANN candidates with exact distances (scores stay true cosines)
CLEANUP_OLDER_THAN = timedelta(seconds=60)  # versions a reader may still be reading
RETIRED_GRACE_S = 60.0  # a swapped-out generation is dropped after this long
SQL_IN_BATCH_INTS = 500  # sizes per "IN (...)" list


class Store:
    """The index in ``<home>/index``; open with :meth:`Store.open`, then ``close()``."""

    def __init__(self, home: Path, model: ModelLike | None, write: bool) -> None:
        self.home = Path(home)
        self.dir = self.home / INDEX_DIR
        self.model = model
        self.writable = write
        self._lock = WriterLock(self.home) if write else None
        self._db: Any = None
        self._tables: dict[str, Any] = {}
        self._meta = Meta()
        self._meta_sig: tuple[int, int, int] | None = None
        self._write_key: str | None = None
        self._commits = 0  # commits since the last optimize
        self._closed = False
        self.repaired: dict[str, int] = {}
        """What the writer's open-time repair fixed (all zeros after a clean stop)."""

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, home: Path, model: ModelLike | None = None, *, write: bool = False) -> Store:
        """Open (and with ``write`` create) the index in ``home``; returns the store.

        ``model``: the embedding model of this process, or None (keyword only).
        Readers (``write=False``) take no lock and never change the disk. A writer
        takes ``<home>/index.lock`` (IndexError_ naming the other process when one
        holds it), picks or creates the generation of ``model`` (None: the active
        one) and repairs whatever a killed writer left.
        """
        store = cls(Path(home), model, write)
        try:
            store._open()
        except BaseException:
            store.close()
            raise
        return store

    def _open(self) -> None:
        import lancedb

        if self._lock is not None:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock.acquire()
            self.dir.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.dir, 0o700)
        elif not self.dir.is_dir():
            return  # nothing indexed yet: every read returns empty
        try:
            self._db = lancedb.connect(str(self.dir), read_consistency_interval=timedelta(0))
        except (OSError, RuntimeError, ValueError) as exc:
            raise IndexError_(f"Cannot open the index in {self.dir}: {exc}") from exc
        self._load_meta(force=True)
        if self.writable:
            # A writer killed while saving the pointer leaves its temp file behind.
            self._meta_path.with_suffix(".tmp").unlink(missing_ok=True)
            self._prepare_write_generation()
            self._drop_retired()

    # -- generations -------------------------------------------------------------

    @property
    def _meta_path(self) -> Path:
        return self.dir / META_FILE

    def _load_meta(self, force: bool = False) -> None:
        try:
            st = os.stat(self._meta_path)
        except FileNotFoundError:
            if force or self._meta_sig is not None:
                self._meta, self._meta_sig = Meta(), None
            return
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if not force and sig == self._meta_sig:
            return
        try:
            meta = Meta.load(self._meta_path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexError_(
                f"The index pointer {self._meta_path} is damaged ({exc}): "
                "delete the index folder and index again"
            ) from exc
        self._meta, self._meta_sig = meta, sig
        self._tables.clear()  # a swap may have dropped tables we hold

    def _save_meta(self) -> None:
        self._meta.save(self._meta_path)
        st = os.stat(self._meta_path)
        self._meta_sig = (st.st_ino, st.st_mtime_ns, st.st_size)

    def _table(self, name: str) -> Any:
        table = self._tables.get(name)
        if table is None:
            table = self._db.open_table(name)
            self._tables[name] = table
        return table

    def _prepare_write_generation(self) -> None:
        """Choose the generation this writer fills, creating it when needed."""
        meta = self._meta
        key: str | None = None
        if self.model is None:
            key = meta.active or meta.building
        else:
            for gen in meta.gens.values():
                if gen.model_id == self.model.model_id and gen.key in (meta.active, meta.building):
                    key = gen.key
                    break
        if key is None:
            key = self._create_generation()
        elif self.model is not None and meta.gens[key].model_path != str(self.model.path):
            meta.gens[key].model_path = str(self.model.path)  # the file moved
            self._save_meta()
        self._write_key = key
        self._ensure_tables(meta.gens[key])
        self.repaired = self._reconcile()

    def _create_generation(self) -> str:
        meta = self._meta
        key = f"g{meta.next_key}"
        meta.next_key += 1
        if self.model is None:
            gen = Generation(key, KEYWORD_MODEL, created=time.time())
        else:
            gen = Generation(
                key,
                self.model.model_id,
                model_name=self.model.name,
                model_path=str(self.model.path),
                dim=int(self.model.dim),
                created=time.time(),
            )
        self._ensure_tables(gen)
        meta.gens[key] = gen
        if meta.active is None:
            meta.active = key
        else:
            # A model change: the old generation serves until this one is complete.
            if meta.building is not None:
                meta.retired[meta.building] = 0.0  # never served: drop at once
            meta.building = key
            log.info(
                "Building a new index for %s; the current one serves meanwhile",
                gen.model_name or gen.model_id,
            )
        self._save_meta()
        return key

    def _ensure_tables(self, gen: Generation) -> None:
        from lancedb.index import FTS

        existing = set(self._list_tables())
        if gen.files_table not in existing:
            self._db.create_table(gen.files_table, schema=files_schema(), exist_ok=True)
        if gen.chunks_table not in existing:
            table = self._db.create_table(gen.chunks_table, schema=chunks_schema(), exist_ok=True)
            # The full-text index exists from the start; rows written later are
            # searched by a scan until the next optimize folds them in.
            table.create_index("text", config=FTS(), replace=True)
        if gen.dim is not None and gen.vectors_table not in existing:
            self._db.create_table(gen.vectors_table, schema=vectors_schema(gen.dim), exist_ok=True)

    def _list_tables(self) -> list[str]:
        result = self._db.list_tables()
        return list(getattr(result, "tables", result))

    def _drop_retired(self) -> None:
        meta = self._meta
        now = time.time()
        dropped = False
        for key, when in list(meta.retired.items()):
            if when and now - when < RETIRED_GRACE_S:
                continue
            gen = meta.gens.pop(key, None)
            for name in gen.table_names() if gen is not None else []:
                self._tables.pop(name, None)
                with contextlib.suppress(ValueError, RuntimeError, OSError):
                    self._db.drop_table(name)  # may be gone already
            meta.retired.pop(key, None)
            dropped = True
            log.info("Dropped the retired index generation %s", key)
        if dropped:
            self._save_meta()

    @property
    def write_generation(self) -> Generation:
        """The generation this writer fills (IndexError_ for a reader)."""
        if self._write_key is None:
            raise IndexError_("This index was opened read-only")
        return self._meta.gens[self._write_key]

    @property
    def building(self) -> bool:
        """True when this writer fills a generation that does not serve yet."""
        return self._write_key is not None and self._write_key == self._meta.building

    def _read_generation(self) -> Generation | None:
        if self._db is None:
            if self._closed or self.writable or not self.dir.is_dir():
                return None
            self._open()
            if self._db is None:
                return None
        self._load_meta()
        key = self._meta.active
        return self._meta.gens.get(key) if key else None

    def _read(self, fn: Callable[[Generation], T], empty: T) -> T:
        """Run a read on the active generation, retrying once after a swap."""
        for attempt in (0, 1):
            gen = self._read_generation()
            if gen is None:
                return empty
            try:
                return fn(gen)
            except (OSError, RuntimeError, ValueError) as exc:
                if attempt:
                    raise IndexError_(f"Cannot read the index in {self.dir}: {exc}") from exc
                # The generation may have been swapped, or an old version cleaned
                # up, under this reader: reload the pointer and the tables.
                self._tables.clear()
                self._load_meta(force=True)
        return empty

    # -- reads -------------------------------------------------------------------

    @property
    def read_model_id(self) -> str | None:
        """Model id whose vectors are served (None: keyword only).

        After a model change the old generation serves until the new one is
        complete, so a searcher must embed queries with this model
        (``read_model_path`` says where its GGUF was).
        """
        gen = self._read_generation()
        return gen.model_id if gen is not None and gen.dim is not None else None

    @property
    def read_model_path(self) -> str | None:
        """GGUF path of the model whose vectors are served, as last indexed."""
        gen = self._read_generation()
        return gen.model_path if gen is not None and gen.dim is not None else None

    def vector_search(
        self,
        vector: np.ndarray,
        k: int,
        filters: Filters | None = None,
        with_text: bool = True,
    ) -> list[ChunkHit]:
        """Return the ``k`` embedded chunks nearest to ``vector``, best first.

        ``vector``: float32 (dim,) from the served model (``read_model_id``),
        L2-normalised; ``score`` is cosine similarity. Chunks still waiting for
        their vector do not take part. Empty list when nothing is embedded;
        ModelRequiredError when the index is keyword-only; IndexError_ when the
        vector's width is not the index's. ``with_text=False`` returns ``partial``
        hits (ids, file facts and scores only; no lookup of the passages) for a
        caller that ranks many and shows few: :meth:`complete_hits` fills those in.
        """
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)

        def run(gen: Generation) -> list[ChunkHit]:
            if gen.dim is None:
                raise ModelRequiredError(
                    "The index holds no vectors yet: index with a model (--model GGUF)"
                )
            if vec.shape[0] != gen.dim:
                raise IndexError_(
                    f"The query vector has {vec.shape[0]} dimensions but the index holds "
                    f"vectors of {gen.model_name or gen.model_id} ({gen.dim}): "
                    "search with that model or index again with yours"
                )
            table = self._table(gen.vectors_table)
            query = (
                table.search(vec, vector_column_name="vector", query_type="vector")
                .distance_type("cosine")
                .limit(k)
            )
            if _has_vector_index(table):
                query = query.nprobes(ANN_NPROBES).refine_factor(ANN_REFINE)
            where = filters_sql(filters)
            if where:
                query = query.where(where, prefilter=True)
            if not with_text:
                found = query.select([*LIGHT_COLUMNS, "_distance"]).to_arrow()
                scores = [1.0 - float(d) for d in found["_distance"].to_pylist()]
                return light_hits(found.select(LIGHT_COLUMNS).to_pylist(), scores)
            found = query.select(["chunk_id", "_distance"]).to_arrow()
            ids = found["chunk_id"].to_pylist()
            scores = [1.0 - float(d) for d in found["_distance"].to_pylist()]
            return self._hits_for(gen, ids, scores)

        return self._read(run, [])

    def keyword_search(self, text: str, k: int, filters: Filters | None = None) -> list[ChunkHit]:
        """Return the ``k`` best chunks for ``text`` by BM25, best first.

        Uses LanceDB's native full-text index (lower-cased, stemmed, English stop
        words removed); rows committed since its last refresh are found by a
        scan, so a file is findable as soon as it is committed. ``score`` is the
        BM25 score. Needs no model. Empty list for a blank query or empty index.
        """
        if not text.strip():
            return []

        def run(gen: Generation) -> list[ChunkHit]:
            table = self._table(gen.chunks_table)
            query = table.search(text, query_type="fts", fts_columns="text").limit(k)
            where = filters_sql(filters)
            if where:
                query = query.where(where, prefilter=True)
            found = query.select([*HIT_COLUMNS, "_score"]).to_arrow()
            return hits(found.to_pylist(), found["_score"].to_pylist())

        return self._read(run, [])

    def complete_hits(self, partial: Sequence[ChunkHit]) -> list[ChunkHit]:
        """Return ``partial`` with each partial hit's passage filled in (text, span,
        page, heading, size), keeping scores and ranks; hits whose chunk is gone
        (its file changed meanwhile) are dropped."""
        wanted = [h.chunk_id for h in partial if h.partial]
        if not wanted:
            return list(partial)

        def run(gen: Generation) -> list[ChunkHit]:
            rows = self._rows_by_id(self._table(gen.chunks_table), wanted, HIT_COLUMNS)
            by_id = {h.chunk_id: h for h in hits(rows.to_pylist())}
            out = []
            for h in partial:
                if not h.partial:
                    out.append(h)
                elif h.chunk_id in by_id:
                    out.append(replace(by_id[h.chunk_id], score=h.score, rank=h.rank))
            return out

        return self._read(run, [h for h in partial if not h.partial])

    def _hits_for(self, gen: Generation, ids: list[str], scores: list[float]) -> list[ChunkHit]:
        """Chunk rows for ``ids`` in the given order (ids without a chunk dropped)."""
        if not ids:
            return []
        rows = self._rows_by_id(self._table(gen.chunks_table), ids, HIT_COLUMNS)
        by_id = {row["chunk_id"]: row for row in rows.to_pylist()}
        kept = [(by_id[cid], s) for cid, s in zip(ids, scores, strict=True) if cid in by_id]
        return hits([r for r, _s in kept], [s for _r, s in kept])

    @staticmethod
    def _rows_by_id(table: Any, ids: Sequence[str], columns: list[str]) -> pa.Table:
        parts = [
            table.search().where(sql_in("chunk_id", part)).select(columns).limit(None).to_arrow()
            for part in batched(ids)
        ]
        return pa.concat_tables(parts) if parts else pa.table({c: [] for c in columns})

    def file_chunks(self, file_id: str) -> list[ChunkHit]:
        """Return all chunks of one file in text order (``score`` 0), for previews."""

        def run(gen: Generation) -> list[ChunkHit]:
            table = self._table(gen.chunks_table)
            found = (
                table.search()
                .where(f"file_id = {sql_str(file_id)}")
                .select(HIT_COLUMNS)
                .limit(None)
                .to_arrow()
                .sort_by("ordinal")
            )
            return hits(found.to_pylist())

        return self._read(run, [])

    def sample_chunks(self, n: int, seed: int = 0) -> list[ChunkHit]:
        """Return up to ``n`` embedded chunks drawn at random, reproducibly by ``seed``.

        Each hit carries its stored vector in ``vector`` (for calibrating the
        model on the user's own index). Empty list when nothing is embedded.
        """

        def run(gen: Generation) -> list[ChunkHit]:
            if gen.dim is None or n <= 0:
                return []
            vectors = self._table(gen.vectors_table)
            ids = vectors.search().select(["chunk_id"]).limit(None).to_arrow()["chunk_id"]
            pool = sorted(set(ids.to_pylist()))  # scan order depends on history
            if not pool:
                return []
            rng = np.random.default_rng(seed)
            picked = [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
            out = self._hits_for(gen, picked, [0.0] * len(picked))
            vecs = self._vectors_of(gen, [h.chunk_id for h in out])
            kept = [h for h in out if h.chunk_id in vecs]
            for rank, hit in enumerate(kept):
                hit.vector, hit.rank = vecs[hit.chunk_id], rank
            return kept

        return self._read(run, [])

    def chunk_vectors(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Return the stored vectors of ``chunk_ids`` (pending or unknown ones left out)."""

        def run(gen: Generation) -> dict[str, np.ndarray]:
            return self._vectors_of(gen, chunk_ids) if gen.dim is not None else {}

        return self._read(run, {})

    def _vectors_of(self, gen: Generation, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        rows = self._rows_by_id(self._table(gen.vectors_table), ids, ["chunk_id", "vector"])
        if not rows.num_rows or gen.dim is None:
            return {}
        flat = rows["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        matrix = np.asarray(flat, dtype=np.float32).reshape(rows.num_rows, gen.dim)
        return dict(zip(rows["chunk_id"].to_pylist(), matrix, strict=True))

    def file(self, path: str) -> FileRecord | None:
        """Return the record of the file at ``path`` in the served generation, or None."""

        def run(gen: Generation) -> FileRecord | None:
            table = self._table(gen.files_table)
            found = records(table.search().where(f"path = {sql_str(path)}").limit(None).to_arrow())
            return found[0] if found else None

        return self._read(run, None)

    def files(self, status: str | None = None) -> list[FileRecord]:
        """Return the served generation's file records (optionally of one status)."""

        def run(gen: Generation) -> list[FileRecord]:
            query = self._table(gen.files_table).search()
            if status is not None:
                query = query.where(f"status = {sql_str(status)}")
            return records(query.limit(None).to_arrow())

        return self._read(run, [])

    def status(self) -> IndexStatus:
        """Return counts, the served model and the skipped files (empty index: zeros)."""
        from sr3desk.settings import Settings

        def run(gen: Generation) -> IndexStatus:
            out = IndexStatus()
            files = self._table(gen.files_table)
            out.files = files.count_rows(f"status = {sql_str(STATUS_INDEXED)}")
            skipped = (
                files.search()
                .where(f"status = {sql_str(STATUS_SKIPPED)}")
                .select(["path", "reason"])
                .limit(None)
                .to_arrow()
            )
            out.skipped = sorted(
                zip(skipped["path"].to_pylist(), skipped["reason"].to_pylist(), strict=True)
            )
            out.chunks = self._table(gen.chunks_table).count_rows()
            if gen.dim is not None:
                out.embedded = min(out.chunks, self._table(gen.vectors_table).count_rows())
                out.pending = out.chunks - out.embedded
                out.model, out.model_name = gen.model_id, gen.model_name
                out.model_path, out.dim = gen.model_path, gen.dim
            if out.files:
                stamps = files.search().select(["indexed_at"]).limit(None).to_arrow()
                out.last_indexed = pc.max(stamps["indexed_at"]).as_py()
            building = self._meta.gens.get(self._meta.building or "")
            if building is not None:
                out.building = building.model_id
                out.building_chunks = self._table(building.chunks_table).count_rows()
                if building.dim is not None:
                    out.building_embedded = self._table(building.vectors_table).count_rows()
            return out

        status = self._read(run, IndexStatus())
        with contextlib.suppress(OSError, TypeError, ValueError):
            status.folders = list(Settings.load(self.home).folders)
        status.disk_bytes = _disk_usage(self.dir)
        return status

    def embedded_fraction(self) -> float:
        """Return embedded / all chunks of the served generation (1.0 when empty;
        0.0 for a keyword-only index that holds chunks)."""

        def run(gen: Generation) -> float:
            total = self._table(gen.chunks_table).count_rows()
            if not total:
                return 1.0
            if gen.dim is None:
                return 0.0
            return min(1.0, self._table(gen.vectors_table).count_rows() / total)

        return self._read(run, 1.0)

    # -- writes (the indexer) ----------------------------------------------------

    def _w(self) -> tuple[Generation, Any, Any, Any]:
        gen = self.write_generation
        vectors = self._table(gen.vectors_table) if gen.dim is not None else None
        return gen, self._table(gen.files_table), self._table(gen.chunks_table), vectors

    def load_files(self, under: Sequence[str] | None = None) -> KnownFiles:
        """Return the write generation's files: all of them, or those at or below
        the paths ``under`` (for the watcher's small updates)."""
        _gen, files, _c, _v = self._w()
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
        """Return the write generation's indexed files whose size is in ``sizes``
        (the watcher's rename detection: a new file may be a known one moved)."""
        _gen, files, _c, _v = self._w()
        wanted = sorted({int(s) for s in sizes})
        out: list[FileRecord] = []
        for i in range(0, len(wanted), SQL_IN_BATCH_INTS):
            part = ", ".join(str(s) for s in wanted[i : i + SQL_IN_BATCH_INTS])
            where = f"size IN ({part}) AND status = {sql_str(STATUS_INDEXED)}"
            out.extend(records(files.search().where(where).limit(None).to_arrow()))
        return out

    def pending_count(self) -> int:
        """Chunks of the write generation without a vector (from table metadata:
        no scan)."""
        _gen, _files, chunks, vectors = self._w()
        if vectors is None:
            return 0
        return max(0, chunks.count_rows() - vectors.count_rows())

    def write_files(self, batch: Sequence[FileWrite]) -> int:
        """Commit a batch of read (or skipped) files; returns the chunks written.

        Each file's chunks replace its old ones in one commit; unchanged passages
        keep their vectors, so an edit re-embeds only what it touched. Then the
        vectors of the files' vanished passages are dropped (and the kept ones
        re-dated), then the file rows are committed.
        """
        if not batch:
            return 0
        gen, files, chunks, vectors = self._w()
        known = self._existing_ids(files, [w.record.file_id for w in batch])
        table = chunk_rows(gen, batch)
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
            self._commits += 1
            if vectors is not None:
                self._refresh_vectors(vectors, known, table)
        elif table.num_rows:
            chunks.add(table)
            self._commits += 1
        self._upsert_files(files, [w.record for w in batch])
        return table.num_rows

    def _refresh_vectors(self, vectors: Any, file_ids: list[str], new: pa.Table) -> None:
        """After files changed: keep vectors of passages that survived (with the
        files' new facts), drop the rest, in one commit."""
        kept_ids = set(new["chunk_id"].to_pylist())
        old = pa.concat_tables(
            [
                vectors.search()
                .where(sql_in("file_id", part))
                .select(["chunk_id", "file_id", "model_id", "vector"])
                .limit(None)
                .to_arrow()
                for part in batched(file_ids)
            ]
        )
        if not old.num_rows:
            return
        keep = old.filter(pc.is_in(old["chunk_id"], pa.array(list(kept_ids), pa.string())))
        facts = {
            row["chunk_id"]: row for row in new.select(["chunk_id", *FILTER_COLUMNS]).to_pylist()
        }
        where = sql_in("file_id", file_ids)
        if not keep.num_rows:
            vectors.delete(where)
        else:
            ids = keep["chunk_id"].to_pylist()
            source = pa.table(
                {
                    "chunk_id": keep["chunk_id"],
                    "file_id": keep["file_id"],
                    **{c: pa.array([facts[i][c] for i in ids]) for c in FILTER_COLUMNS},
                    "model_id": keep["model_id"],
                    "vector": keep["vector"],
                },
                schema=vectors.schema,
            )
            (
                vectors.merge_insert("chunk_id")
                .when_matched_update_all()
                .when_not_matched_by_source_delete(where)
                .execute(source)
            )
        self._commits += 1

    @staticmethod
    def _existing_ids(files: Any, ids: Sequence[str]) -> list[str]:
        found: list[str] = []
        for part in batched(ids):
            query = files.search().where(sql_in("file_id", part)).select(["file_id"])
            found.extend(query.limit(None).to_arrow()["file_id"].to_pylist())
        return found

    def _upsert_files(self, files: Any, recs: Sequence[FileRecord]) -> None:
        (
            files.merge_insert("file_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(records_table(recs))
        )
        self._commits += 1

    def repath(self, moves: Sequence[tuple[FileRecord, FileRecord]]) -> None:
        """Give files new paths or dates without touching their text or vectors.

        ``moves``: (old record, new record) pairs with the same ``file_id``. The
        copies in chunk and vector rows are updated first, then the file rows.
        """
        if not moves:
            return
        _gen, files, chunks, vectors = self._w()
        for _old, new in moves:
            where = f"file_id = {sql_str(new.file_id)}"
            facts: dict[str, Any] = {
                "path": new.path,
                "folder": new.folder,
                "ext": new.ext,
                "mtime": new.mtime,
            }
            chunks.update(where=where, values={**facts, "size": new.size})
            if vectors is not None:
                vectors.update(where=where, values=facts)
            self._commits += 2
        self._upsert_files(files, [new for _old, new in moves])

    def remove_files(self, file_ids: Sequence[str]) -> None:
        """Drop files, their chunks and their vectors (in that reverse order, so an
        interrupted removal leaves nothing a file row vouches for)."""
        if not file_ids:
            return
        _gen, files, chunks, vectors = self._w()
        ids = list(file_ids)
        for table in (chunks, vectors, files):
            if table is None:
                continue
            for part in batched(ids):
                table.delete(sql_in("file_id", part))
                self._commits += 1

    def pending_chunks(self) -> pa.Table:
        """Chunks of the write generation still waiting for a vector, newest first.

        Columns: chunk_id, file_id, ordinal, mtime, n_tokens, path, _rowid (the
        row ids stay valid until the next optimize). Empty when keyword-only.
        """
        _gen, _files, chunks, vectors = self._w()
        columns = ["chunk_id", "file_id", "ordinal", "mtime", "n_tokens", "path"]
        if vectors is None:
            return pa.table({c: [] for c in [*columns, "_rowid"]})
        rows = chunks.search().select(columns).with_row_id(True).limit(None).to_arrow()
        done = vectors.search().select(["chunk_id"]).limit(None).to_arrow()["chunk_id"]
        if len(done):
            rows = rows.filter(pc.invert(pc.is_in(rows["chunk_id"], done)))
        order = [("mtime", "descending"), ("file_id", "ascending"), ("ordinal", "ascending")]
        return rows.sort_by(order)

    def chunk_texts(self, row_ids: Sequence[int]) -> list[str]:
        """Texts of the write generation's chunks at ``row_ids`` (from pending_chunks)."""
        if not row_ids:
            return []
        _gen, _files, chunks, _v = self._w()
        found = chunks.take_row_ids(list(row_ids)).select(["text"]).with_row_id().to_arrow()
        by_id = dict(zip(found["_rowid"].to_pylist(), found["text"].to_pylist(), strict=True))
        return [by_id[r] for r in row_ids]

    def write_vectors(self, chunk_ids: Sequence[str], vectors: np.ndarray) -> int:
        """Append vectors (float32 (n, dim), unit rows) for ``chunk_ids`` in one commit.

        Vectors of chunks that no longer exist (their file changed meanwhile) are
        dropped. Returns the number stored.
        """
        if not len(chunk_ids):
            return 0
        gen, _files, chunks, table = self._w()
        if table is None or gen.dim is None:
            raise IndexError_("This index generation is keyword-only: it stores no vectors")
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if vecs.shape != (len(chunk_ids), gen.dim):
            raise IndexError_(
                f"Expected {len(chunk_ids)} vectors of {gen.dim} dimensions, got {vecs.shape}"
            )
        facts = self._rows_by_id(chunks, chunk_ids, ["chunk_id", "file_id", *FILTER_COLUMNS])
        by_id = {row["chunk_id"]: row for row in facts.to_pylist()}
        keep = [i for i, cid in enumerate(chunk_ids) if cid in by_id]
        if not keep:
            return 0
        rows = [by_id[chunk_ids[i]] for i in keep]
        source = pa.table(
            {
                "chunk_id": [r["chunk_id"] for r in rows],
                "file_id": [r["file_id"] for r in rows],
                **{c: [r[c] for r in rows] for c in FILTER_COLUMNS},
                "model_id": [gen.model_id] * len(rows),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(vecs[keep].reshape(-1)), gen.dim
                ),
            },
            schema=vectors_schema(gen.dim),
        )
        table.add(source)
        self._commits += 1
        return len(rows)

    def remember_speed(self, tokens_per_s: float) -> None:
        """Keep the measured embedding speed with the generation, for the next
        run's first estimate of the time left."""
        gen = self.write_generation
        gen.tokens_per_s = round(float(tokens_per_s), 1)
        self._save_meta()

    # -- maintenance ---------------------------------------------------------------

    def maintenance_due(self) -> bool:
        """True when enough small commits piled up to make :meth:`optimize` worth it."""
        return self._commits >= OPTIMIZE_EVERY_COMMITS

    def optimize(self, force: bool = False) -> dict[str, float]:
        """Refresh the full-text and vector indices, compact small files and delete
        versions older than a minute; build the ANN index once the generation holds
        ``ANN_MIN_ROWS`` vectors. Returns timings in seconds.

        Without ``force`` does nothing unless :meth:`maintenance_due`.
        """
        timings: dict[str, float] = {}
        if self._write_key is None or (not force and not self.maintenance_due()):
            return timings
        _gen, files, chunks, vectors = self._w()
        t0 = time.perf_counter()
        for table in (files, chunks, vectors):
            if table is not None:
                # delete_unverified: this writer holds the lock, so files no version
                # knows are debris of a killed writer, not a transaction in flight.
                table.optimize(cleanup_older_than=CLEANUP_OLDER_THAN, delete_unverified=True)
        timings["optimize_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for table in (chunks, vectors):
            # Search results are looked up by chunk id; without an index each lookup
            # scans the table (measured 23 ms of a 40 ms vector search at 100k rows).
            if table is not None and _ensure_id_index(table):
                timings["id_index_s"] = time.perf_counter() - t0
        if (
            vectors is not None
            and not _has_vector_index(vectors)
            and vectors.count_rows() >= ANN_MIN_ROWS
        ):
            t0 = time.perf_counter()
            self.build_ann_index()
            timings["ann_s"] = time.perf_counter() - t0
        self._commits = 0
        return timings

    def build_ann_index(self) -> None:
        """Build (or rebuild) the IVF_PQ index on the write generation's vectors."""
        from lancedb.index import IvfPq

        gen, _files, _chunks, vectors = self._w()
        if vectors is None or gen.dim is None:
            return
        dim = gen.dim
        sub = next((s for s in (dim // 8, dim // 4, dim // 2) if s and dim % s == 0), 1)
        vectors.create_index(
            "vector", config=IvfPq(distance_type="cosine", num_sub_vectors=sub), replace=True
        )
        log.info("Built the vector index of %s", gen.vectors_table)

    def complete_generation(self) -> bool:
        """Make the generation being built the served one once every chunk has its
        vector; returns True when it swapped. The old generation's tables are
        dropped a minute later, when no reader can still be in a query on them."""
        if not self.building or self._write_key is None:
            return False
        if len(self.pending_chunks()):
            return False
        meta = self._meta
        old = meta.active
        meta.active, meta.building = self._write_key, None
        if old is not None:
            meta.retired[old] = time.time()
        self._save_meta()
        log.info("The index now serves %s", meta.gens[self._write_key].model_name)
        return True

    # -- repair ------------------------------------------------------------------

    def _reconcile(self) -> dict[str, int]:
        """Make the write generation self-consistent after an interrupted writer.

        Drops chunks whose file has no indexed row (a batch killed between its
        commits), file rows whose chunk count is wrong or that duplicate a path
        (their files are read again by the next scan), and vectors without a chunk
        or stored twice. Returns what was repaired. Costs a scan of the id columns.
        """
        _gen, files, chunks, vectors = self._w()
        frows = (
            files.search()
            .select(["file_id", "path", "status", "n_chunks", "indexed_at"])
            .limit(None)
            .to_arrow()
            .sort_by([("indexed_at", "descending")])
        )
        crows = chunks.search().select(["chunk_id", "file_id"]).limit(None).to_arrow()
        counts: dict[str, int] = {}
        if crows.num_rows:
            grouped = crows.group_by("file_id").aggregate([("chunk_id", "count")])
            counts = dict(
                zip(
                    grouped["file_id"].to_pylist(),
                    grouped["chunk_id_count"].to_pylist(),
                    strict=True,
                )
            )
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
                bad_rows.append(fid)  # newest row of a path wins (sorted above)
            else:
                valid.add(fid)
            paths.add(path)
        dead_chunks = sorted(fid for fid in counts if fid not in valid)
        for part in batched(dead_chunks):
            chunks.delete(sql_in("file_id", part))
        for part in batched(bad_rows):
            files.delete(sql_in("file_id", part))
        dead_vectors = 0
        if vectors is not None:
            vrows = vectors.search().select(["chunk_id"]).limit(None).to_arrow()["chunk_id"]
            alive = crows.filter(pc.is_in(crows["file_id"], pa.array(list(valid), pa.string())))
            live = set(alive["chunk_id"].to_pylist())
            seen: set[str] = set()
            doomed: set[str] = set()
            for cid in vrows.to_pylist():
                if cid not in live or cid in seen:
                    doomed.add(cid)
                seen.add(cid)
            for part in batched(sorted(doomed)):
                vectors.delete(sql_in("chunk_id", part))
            dead_vectors = len(doomed)
        report = {
            "chunk_files": len(dead_chunks),
            "file_rows": len(bad_rows),
            "vectors": dead_vectors,
        }
        if any(report.values()):
            log.info("Repaired the index after an interrupted run: %s", report)
        return report

    # -- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Release the tables and, for a writer, the lock (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._tables.clear()
        self._db = None
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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


def _has_vector_index(table: Any) -> bool:
    try:
        return any(ix.index_type != "FTS" and "vector" in ix.columns for ix in table.list_indices())
    except (RuntimeError, ValueError, OSError):
        return False


def _disk_usage(path: Path) -> int:
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
