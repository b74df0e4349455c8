"""The index on disk: embedded LanceDB tables in ``<home>/index`` (created 0700).

:class:`Store` is the one object callers hold. It opens the connection, keeps
the generation pointer current and hands each call to the module that does it:

- :mod:`~sr3desk.index.generations`: which generation serves, which is built,
  and their lifecycle (a model change builds a new generation while the old one
  serves; the pointer swap is one atomic rename);
- :mod:`~sr3desk.index.reads`: searches and lookups, one read per retriever;
- :mod:`~sr3desk.index.writes`: the writer's commits, ordered so that a kill at
  any moment leaves a state the next writer repairs;
- :mod:`~sr3desk.index.maintenance`: optimize, the id and ANN indices, repair,
  and the upgrade of an older table layout;
- :mod:`~sr3desk.index.tables`: schemas and row conversions.

Concurrency. One writer per data directory (:mod:`sr3desk.index.lock`); any
number of readers, which see every commit and notice a swapped generation by
the pointer file's stat.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import numpy as np
import pyarrow as pa

from sr3desk.errors import IndexAccessError
from sr3desk.index import maintenance, reads
from sr3desk.index.connection import Connection
from sr3desk.index.generations import Generation, ModelLike, Pointer
from sr3desk.index.lock import WriterLock
from sr3desk.index.tables import FileWrite, KnownFiles
from sr3desk.index.types import ChunkHit, FileRecord, Filters, IndexStatus, OcrNote
from sr3desk.index.writes import GenerationWriter

__all__ = ["FileWrite", "Store"]

log = logging.getLogger(__name__)

T = TypeVar("T")

INDEX_DIR = "index"


class Store:
    """The index in ``<home>/index``; open with :meth:`Store.open` (the constructor
    opens it too), then ``close()``."""

    def __init__(self, home: Path, model: ModelLike | None, write: bool) -> None:
        self.home = Path(home)
        self.dir = self.home / INDEX_DIR
        self.model = model
        self.writable = write
        self._lock = WriterLock(self.home) if write else None
        self._conn: Connection | None = None
        self._pointer = Pointer(self.dir)
        self._writer: GenerationWriter | None = None
        self._closed = False
        self.repaired: dict[str, int] = {}
        """What the writer's open-time repair fixed (all zeros after a clean stop)."""
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, home: Path, model: ModelLike | None = None, *, write: bool = False) -> Store:
        """Open (and with ``write`` create) the index in ``home``; returns the store.

        ``model``: the embedding model of this process, or None (keyword only).
        Readers (``write=False``) take no lock and never change the disk. A writer
        takes ``<home>/index.lock`` (IndexAccessError naming the other process when
        one holds it), picks or creates the generation of ``model`` (None: the
        active one) and repairs whatever a killed writer left. A generation in an
        older table layout stays readable; :meth:`upgrade_layout` brings it up.
        """
        return cls(Path(home), model, write)

    def _open(self) -> None:
        if self._lock is not None:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock.acquire()
            self.dir.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.dir, 0o700)
        elif not self.dir.is_dir():
            return  # nothing indexed yet: every read returns empty
        self._conn = Connection(self.dir)
        self._pointer.refresh(force=True)
        if self.writable:
            self._open_writer(self._conn)

    def _open_writer(self, conn: Connection) -> None:
        pointer = self._pointer
        gen = pointer.open_for_writer(self.model, lambda new: maintenance.ensure_tables(conn, new))
        maintenance.drop_retired(conn, pointer)
        maintenance.drop_debris(conn, pointer)
        maintenance.ensure_tables(conn, gen)
        self._writer = GenerationWriter(conn, gen)
        self.repaired = maintenance.reconcile(self._writer)

    @staticmethod
    def serve_previous(home: Path, model_path: str | Path) -> bool:
        """Make the index of ``home`` serve its kept previous generation again when
        that holds the vectors of the GGUF at ``model_path`` (a switch back to the
        model a swap replaced: :meth:`Pointer.serve_previous`), under the writer
        lock. Returns True when it did; False when another process holds the index
        (it does the same when it opens with that model) or no such generation is
        kept."""
        lock = WriterLock(Path(home))
        try:
            lock.acquire()
        except IndexAccessError:
            return False
        try:
            pointer = Pointer(Path(home) / INDEX_DIR)
            pointer.refresh(force=True)
            return pointer.serve_previous(model_path)
        finally:
            lock.release()

    # -- generations -------------------------------------------------------------

    def _w(self) -> GenerationWriter:
        if self._writer is None:
            raise IndexAccessError("This index was opened read-only")
        return self._writer

    @property
    def writer(self) -> GenerationWriter:
        """The write generation's tables and commits (IndexAccessError for a reader)."""
        return self._w()

    @property
    def write_generation(self) -> Generation:
        """The generation this writer fills (IndexAccessError for a reader)."""
        return self._w().gen

    @property
    def building(self) -> bool:
        """True when this writer fills a generation that does not serve yet."""
        return self._writer is not None and self._writer.gen.key == self._pointer.meta.building

    @property
    def upgrade_due(self) -> bool:
        """True when this writer's generation is in an older table layout."""
        return self._writer is not None and self._writer.gen.outdated

    def upgrade_layout(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Rewrite the write generation's vectors in the current layout (no
        re-embedding) and build its indices; ``progress(done, total)`` follows the
        vectors carried over. Readers keep reading the old layout until the switch."""
        writer = self._w()
        if writer.gen.outdated:
            assert self._conn is not None
            writer.gen = maintenance.upgrade_layout(self._conn, self._pointer, writer.gen, progress)
            self._conn.forget()
            maintenance.optimize(writer, self._pointer)  # the new table's indices

    def _read_generation(self) -> Generation | None:
        if self._conn is None:
            if self._closed or self.writable or not self.dir.is_dir():
                return None
            self._open()
            if self._conn is None:
                return None
        if self._pointer.refresh():
            self._conn.forget()  # a swap may have dropped tables we hold
        return self._pointer.active

    def _read(self, fn: Callable[[Connection, Generation], T], empty: T) -> T:
        """Run a read on the active generation, retrying once after a swap."""
        for attempt in (0, 1):
            gen = self._read_generation()
            if gen is None or self._conn is None:
                return empty
            try:
                return fn(self._conn, gen)
            except (OSError, RuntimeError, ValueError) as exc:
                if attempt:
                    raise IndexAccessError(f"Cannot read the index in {self.dir}: {exc}") from exc
                # The generation may have been swapped, its layout upgraded, or an
                # old version cleaned up under this reader: reload everything.
                self._conn.forget()
                self._pointer.refresh(force=True)
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
        ModelRequiredError when the index is keyword-only; IndexAccessError when
        the vector's width is not the index's. Hits come with their passages
        from the same read. ``with_text=False`` allows ``partial`` hits where
        passages would cost a second read (an index not yet upgraded from layout
        1): :meth:`complete_hits` fills those in.
        """
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        return self._read(lambda c, g: reads.vector_search(c, g, vec, k, filters, with_text), [])

    def keyword_search(self, text: str, k: int, filters: Filters | None = None) -> list[ChunkHit]:
        """Return the ``k`` best chunks for ``text`` by BM25, best first.

        Uses LanceDB's native full-text index (lower-cased, stemmed, English stop
        words removed); rows committed since its last refresh are found by a
        scan, so a file is findable as soon as it is committed. ``score`` is the
        BM25 score. Needs no model. Empty list for a blank query or empty index.
        """
        if not text.strip():
            return []
        return self._read(lambda c, g: reads.keyword_search(c, g, text, k, filters), [])

    def complete_hits(self, partial: Sequence[ChunkHit]) -> list[ChunkHit]:
        """Return ``partial`` with each partial hit's passage filled in (text, span,
        page, heading, size), keeping scores and ranks; hits whose chunk is gone
        (its file changed meanwhile) are dropped."""
        if not any(h.partial for h in partial):
            return list(partial)
        whole = [h for h in partial if not h.partial]
        return self._read(lambda c, g: reads.complete_hits(c, g, partial), whole)

    def file_chunks(self, file_id: str) -> list[ChunkHit]:
        """Return all chunks of one file in text order (``score`` 0), for previews."""
        return self._read(lambda c, g: reads.file_chunks(c, g, file_id), [])

    def sample_chunks(self, n: int, seed: int = 0) -> list[ChunkHit]:
        """Return up to ``n`` embedded chunks drawn at random, reproducibly by ``seed``.

        Each hit carries its stored vector in ``vector`` (for calibrating the
        model on the user's own index). Empty list when nothing is embedded.
        """
        return self._read(lambda c, g: reads.sample_chunks(c, g, n, seed), [])

    def chunk_vectors(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Return the stored vectors of ``chunk_ids`` (pending or unknown ones left out)."""
        return self._read(lambda c, g: reads.vectors_of(c, g, chunk_ids), {})

    def file(self, path: str) -> FileRecord | None:
        """Return the record of the file at ``path`` in the served generation, or None."""
        return self._read(lambda c, g: reads.file_at(c, g, path), None)

    def ocr_notes(self, file_ids: Sequence[str]) -> dict[str, OcrNote]:
        """Return, by file id, the OCR notes of those of ``file_ids`` whose text came
        (in part) from OCR, in the served generation (one read)."""
        if not file_ids:
            return {}
        return self._read(lambda c, g: reads.ocr_notes(c, g, file_ids), {})

    def files(self, status: str | None = None) -> list[FileRecord]:
        """Return the served generation's file records (optionally of one status)."""
        return self._read(lambda c, g: reads.file_records(c, g, status), [])

    def status(self) -> IndexStatus:
        """Return counts, the served model and the skipped files (empty index: zeros).

        ``folders`` is left empty: the index does not know which folders the
        user chose (the caller fills it in from its settings).
        """

        def run(conn: Connection, gen: Generation) -> IndexStatus:
            return reads.index_status(conn, gen, self._pointer.building)

        status = self._read(run, IndexStatus())
        status.disk_bytes = reads.disk_usage(self.dir)
        return status

    def embedded_fraction(self) -> float:
        """Return embedded / all chunks of the served generation (1.0 when empty;
        0.0 for a keyword-only index that holds chunks)."""
        return self._read(reads.embedded_fraction, 1.0)

    # -- writes (the indexer) ----------------------------------------------------

    def load_files(self, under: Sequence[str] | None = None) -> KnownFiles:
        """Return the write generation's files: all of them, or those at or below
        the paths ``under`` (for the watcher's small updates)."""
        return self._w().load_files(under)

    def files_of_size(self, sizes: Sequence[int]) -> list[FileRecord]:
        """Return the write generation's indexed files whose size is in ``sizes``
        (the watcher's rename detection: a new file may be a known one moved)."""
        return self._w().files_of_size(sizes)

    def pending_count(self) -> int:
        """Chunks of the write generation without a vector (no scan)."""
        return self._w().pending_count()

    def pending_chunks(self) -> pa.Table:
        """Chunks of the write generation still waiting for a vector, newest first.

        Columns: chunk_id, file_id, ordinal, mtime, n_tokens, path, _rowid (the
        row ids stay valid until the next optimize). Empty when keyword-only.
        """
        return self._w().pending_chunks()

    def chunk_texts(self, row_ids: Sequence[int]) -> list[str]:
        """Texts of the write generation's chunks at ``row_ids`` (from pending_chunks)."""
        return self._w().chunk_texts(row_ids)

    def write_files(self, batch: Sequence[FileWrite]) -> int:
        """Commit a batch of read (or skipped) files; returns the chunks written.

        Each file's chunks replace its old ones in one commit; unchanged passages
        keep their vectors, so an edit re-embeds only what it touched. Then the
        vectors of the files' vanished passages are dropped (and the kept ones
        given their new rows), then the file rows are committed.
        """
        return self._w().write_files(batch)

    def repath(self, moves: Sequence[tuple[FileRecord, FileRecord]]) -> None:
        """Give files new paths or dates without touching their text or vectors.

        ``moves``: (old record, new record) pairs with the same ``file_id``.
        """
        self._w().repath(moves)

    def remove_files(self, file_ids: Sequence[str]) -> None:
        """Drop files, their chunks and their vectors."""
        if file_ids:
            self._w().remove_files(file_ids)

    def write_vectors(self, chunk_ids: Sequence[str], vectors: np.ndarray) -> int:
        """Store vectors (float32 (n, dim), unit rows) for ``chunk_ids`` in one commit.

        Vectors of chunks that no longer exist (their file changed meanwhile) are
        dropped. Returns the number stored.
        """
        if not len(chunk_ids):
            return 0
        return self._w().write_vectors(chunk_ids, vectors)

    def remember_speed(self, tokens_per_s: float) -> None:
        """Keep the measured embedding speed with the generation, for the next
        run's first estimate of the time left."""
        self._w().gen.tokens_per_s = round(float(tokens_per_s), 1)
        self._pointer.save()

    # -- maintenance ---------------------------------------------------------------

    def maintenance_due(self) -> bool:
        """True when enough small commits piled up to make :meth:`optimize` worth it."""
        return self._writer is not None and (
            self._writer.commits >= maintenance.OPTIMIZE_EVERY_COMMITS
        )

    def optimize(self, force: bool = False) -> dict[str, float]:
        """Refresh the full-text and vector indices, compact small files and delete
        versions older than a minute; build the ANN index once the generation holds
        ``ANN_MIN_ROWS`` vectors. Returns timings in seconds.

        Without ``force`` does nothing unless :meth:`maintenance_due`.
        """
        if self._writer is None or (not force and not self.maintenance_due()):
            return {}
        return maintenance.optimize(self._writer, self._pointer)

    def build_ann_index(self) -> None:
        """Build (or rebuild) the ANN index on the write generation's vectors."""
        maintenance.build_ann_index(self._w(), self._pointer)

    def complete_generation(self) -> bool:
        """Make the generation being built the served one once every chunk has its
        vector; returns True when it swapped. The old generation's tables are
        dropped a minute later, when no reader can still be in a query on them."""
        if not self.building or self._writer is None or len(self.pending_chunks()):
            return False
        return self._pointer.complete(self._writer.gen.key)

    # -- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Release the tables and, for a writer, the lock (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._conn is not None:
            self._conn.forget()
        self._conn = None
        self._writer = None
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
