"""Keeping the index in step with the user's folders.

``Indexer.run(roots)`` brings the index up to date in two phases:

1. **Read.** The folders are scanned; files whose size and mtime match the index
   are skipped without being opened; the others are hashed (a changed mtime with
   the same content is only re-dated), a new file whose content matches a file
   that disappeared is re-pathed without being read again (a rename or move),
   vanished files are dropped, and the rest are extracted in a worker process,
   newest first, chunked with the model's tokenizer and committed in batches:
   from that moment their text is keyword-searchable.
2. **Embed.** Chunks still without a vector are embedded in batches, newest files
   first, and their vectors committed every few seconds.

Everything is committed in small atomic steps, so a run killed at any instant
resumes where it stopped: finished files are not read again and finished vectors
are not computed again. ``Control`` pauses, resumes or stops a run between two
files or two embedding batches, after committing what is done.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from sr3desk.errors import ExtractError, IndexError_
from sr3desk.index.scan import Entry, ScanResult, content_hash, is_within, scan, scan_paths
from sr3desk.index.store import Store
from sr3desk.index.tables import FileWrite, KnownFiles, new_file_id
from sr3desk.index.types import (
    PHASE_DONE,
    PHASE_EMBED,
    PHASE_EXTRACT,
    PHASE_OPTIMIZE,
    PHASE_SCAN,
    STATUS_INDEXED,
    STATUS_SKIPPED,
    FileRecord,
    IndexOptions,
    Progress,
    Summary,
)

if TYPE_CHECKING:
    from sr3desk.extract import Document, Extractor
    from sr3desk.model.base import Embedder
    from sr3desk.model.tokenizer import TokenCounter

log = logging.getLogger(__name__)

ProgressFn = Callable[[Progress], None]

PROGRESS_INTERVAL_S = 0.1  # progress callbacks at most this often (phase changes always)
WINDOW_CHUNKS = 512  # chunk texts fetched from the store at a time while embedding
MAX_BATCH_CHUNKS = 4096  # a read batch is committed at the latest at this many chunks
VANISHED = "file vanished while it was read"
READ_AHEAD = 2  # files extracted ahead of the one being chunked


@dataclass
class _Extracted:
    """A file as the read-ahead thread hands it over: its text or why not."""

    entry: Entry
    old: FileRecord | None
    digest: str
    doc: Document | None = None
    reason: str = ""


class Control:
    """Pause, resume or stop a running ``Indexer.run`` / ``update`` from any thread.

    The indexer checks it between files and between embedding batches; it commits
    what is done before it waits or stops.
    """

    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()

    def pause(self) -> None:
        """Hold the run at its next check point."""
        self._running.clear()

    def resume(self) -> None:
        """Let a paused run go on."""
        self._running.set()

    def stop(self) -> None:
        """End the run at its next check point (a paused run stops at once)."""
        self._stop.set()
        self._running.set()

    def reset(self) -> None:
        """Clear a stop or pause so the object can control another run."""
        self._stop.clear()
        self._running.set()

    @property
    def paused(self) -> bool:
        """True while a pause is requested."""
        return not self._running.is_set()

    @property
    def stopped(self) -> bool:
        """True once a stop is requested."""
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block while paused (at most ``timeout`` s); returns True when running."""
        return self._running.wait(timeout)


class _Reporter:
    """Builds Progress reports, measures speed and estimates the time left."""

    def __init__(self, callback: ProgressFn | None, prior_rate: float | None = None) -> None:
        self.callback = callback
        self.state = Progress(PHASE_SCAN)
        self._last = 0.0
        self.embed_started: float | None = None
        self.tokens_done = 0
        self.tokens_left = 0
        self.read_started: float | None = None
        self.bytes_read = 0
        self.bytes_left = 0
        self.tokens_read = 0  # tokens of the chunks read in this run (all to embed)
        # Embedding speed measured by an earlier run with this model (None: no
        # model, or never measured): lets the reading phase give a whole ETA.
        self.prior_rate = prior_rate

    def phase(self, phase: str, **fields: Any) -> None:
        self.state.phase = phase
        self.emit(force=True, **fields)

    def emit(self, force: bool = False, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(self.state, key, value)
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_INTERVAL_S:
            return
        self._last = now
        self.state.tokens_per_s = self.rate()
        self.state.eta_s = self.eta()
        self.callback(replace(self.state))

    def rate(self) -> float:
        """Tokens embedded per wall-clock second of the embedding phase so far."""
        if self.embed_started is None or self.tokens_done == 0:
            return 0.0
        elapsed = time.monotonic() - self.embed_started
        return self.tokens_done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left, from measurements only: the bytes still to read at the
        reading speed so far, plus the tokens still to embed (while reading:
        those read so far and the rest estimated from tokens per byte) at the
        embedding speed of this run or of the last one. None until measured."""
        total = 0.0
        tokens = self.tokens_left
        if self.state.phase == PHASE_EXTRACT:
            if self.read_started is None or self.bytes_read == 0:
                return None
            elapsed = time.monotonic() - self.read_started
            total += self.bytes_left * elapsed / self.bytes_read
            if self.prior_rate is None:
                return total  # nothing will be embedded (no model)
            tokens = self.tokens_read + int(self.bytes_left * self.tokens_read / self.bytes_read)
        if tokens:
            rate = self.rate() or self.prior_rate or 0.0
            if rate <= 0:
                return None
            total += tokens / rate
        return total


class Indexer:
    """Brings a writable :class:`Store` in step with folders on disk.

    ``embedder``: the model whose generation the store was opened for, or None
    (chunks are stored keyword-only and wait for a model). ``extractor``: the
    extraction worker (default: one with limits from ``options``). Thread-safe:
    ``run`` and ``update`` calls are serialised. Close it (or use ``with``) to
    stop the extraction worker.
    """

    def __init__(
        self,
        store: Store,
        embedder: Embedder | None = None,
        options: IndexOptions | None = None,
        *,
        extractor: Extractor | None = None,
    ) -> None:
        if not store.writable:
            raise IndexError_("The indexer needs a store opened for writing (write=True)")
        self.store = store
        self.embedder = embedder
        self.options = options or IndexOptions()
        gen = store.write_generation
        if embedder is not None and embedder.model_id != gen.model_id:
            raise IndexError_(
                f"The store was opened for model {gen.model_id} but the embedder is "
                f"{embedder.model_id}: open the store with the embedder's ModelInfo"
            )
        self._extractor = extractor
        self._own_extractor = extractor is None
        self._counter: TokenCounter | None = None
        self._lock = threading.RLock()
        self.roots: list[str] = []

    # -- public ----------------------------------------------------------------

    def run(
        self,
        roots: Iterable[str | os.PathLike[str]],
        progress: ProgressFn | None = None,
        control: Control | None = None,
    ) -> Summary:
        """Index ``roots`` (folders or files) incrementally; returns what was done.

        Files under the roots that vanished from disk are dropped from the index;
        files elsewhere in the index are left alone. Skipped files are recorded
        with their reason and the run goes on. When the store is building a new
        model's generation, the folders remembered in the settings are indexed
        too, and the new generation starts serving once it is complete.
        """
        with self._lock:
            started = time.monotonic()
            summary = Summary()
            report = self._reporter(progress)
            root_list = [os.path.abspath(os.path.expanduser(os.fspath(r))) for r in roots]
            if self.store.building:
                root_list = _union(root_list, self._remembered_folders())
            log.info("Indexing %s", ", ".join(root_list))
            report.phase(PHASE_SCAN)
            known = self.store.load_files()
            result = scan(root_list, self.options, known)
            self.roots = _union(self.roots, result.roots)
            if result.missing_roots:
                log.warning("Not found, left as indexed: %s", ", ".join(result.missing_roots))
            self._sync(result, result.roots, summary, report, control, known)
            if not summary.stopped:
                self._embed(summary, report, control)
            self._finish(summary, report, started)
            return summary

    def update(
        self,
        paths: Iterable[str | os.PathLike[str]],
        progress: ProgressFn | None = None,
        control: Control | None = None,
    ) -> Summary:
        """Bring single paths up to date (files or folders, existing or not).

        For the watcher: created, modified, deleted and moved paths all come
        here; folders are walked, vanished paths are dropped with everything
        below them, and a moved file is re-pathed without being read again (pass
        both the old and the new path). Paths outside the indexed roots are
        ignored. Returns what was done.
        """
        with self._lock:
            started = time.monotonic()
            summary = Summary()
            report = self._reporter(progress)
            wanted = sorted({os.path.abspath(os.fspath(p)) for p in paths})
            if not self.roots or not wanted:
                return summary
            wanted = [p for p in wanted if any(is_within(p, r) for r in self.roots)]
            result = scan_paths(wanted, self.roots, self.options)
            known = self.store.load_files(under=wanted)
            self._sync(result, wanted, summary, report, control, known, wide_renames=True)
            if not summary.stopped:
                self._embed(summary, report, control)
            self._finish(summary, report, started, force_optimize=False)
            return summary

    def embed_pending(
        self, progress: ProgressFn | None = None, control: Control | None = None
    ) -> Summary:
        """Embed every chunk still waiting for a vector; returns what was done."""
        with self._lock:
            started = time.monotonic()
            summary = Summary()
            report = self._reporter(progress)
            self._embed(summary, report, control)
            self._finish(summary, report, started)
            return summary

    def close(self) -> None:
        """Stop the extraction worker this indexer started (idempotent)."""
        if self._extractor is not None and self._own_extractor:
            self._extractor.close()
            self._extractor = None

    def __enter__(self) -> Indexer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------

    def _reporter(self, progress: ProgressFn | None) -> _Reporter:
        gen = self.store.write_generation
        prior = None
        if self.embedder is not None and gen.dim is not None:
            prior = gen.tokens_per_s or 0.0
        return _Reporter(progress, prior)

    def _remembered_folders(self) -> list[str]:
        from sr3desk.settings import Settings

        return list(Settings.load(self.store.home).folders)

    def _get_extractor(self) -> Extractor:
        if self._extractor is None:
            from sr3desk.extract import Extractor, Limits

            limits = Limits(
                max_file_bytes=self.options.max_file_bytes,
                max_seconds=self.options.extract_timeout_s,
            )
            self._extractor = Extractor(limits)
        return self._extractor

    def _get_counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = self._open_counter()
        return self._counter

    def _open_counter(self) -> TokenCounter:
        from sr3desk.index.chunking import ApproxCounter

        if self.embedder is not None:
            return self.embedder
        gen = self.store.write_generation
        if gen.model_path and os.path.exists(gen.model_path):
            # Without the model loaded, its vocabulary alone still cuts chunks the
            # way the model will see them when it embeds them later.
            from sr3desk.model.tokenizer import open_tokenizer

            return open_tokenizer(Path(gen.model_path))
        return ApproxCounter()

    def _checkpoint(
        self, control: Control | None, report: _Reporter, commit: Callable[[], None]
    ) -> bool:
        """Honour pause/stop; returns True when the run must stop."""
        if control is None:
            return False
        if control.paused and not control.stopped:
            commit()
            report.emit(force=True, paused=True)
            while not control.wait(0.5):
                pass
            report.emit(force=True, paused=False)
        if control.stopped:
            commit()
            return True
        return False

    # -- phase 1: scan results -> file rows and chunks ---------------------------

    def _sync(
        self,
        result: ScanResult,
        scopes: Sequence[str],
        summary: Summary,
        report: _Reporter,
        control: Control | None,
        known: KnownFiles,
        wide_renames: bool = False,
    ) -> None:
        store = self.store
        todo: list[tuple[Any, FileRecord | None]] = []  # (entry, old record)
        skips: list[FileWrite] = []
        touched: list[tuple[FileRecord, FileRecord]] = []
        summary.scanned = len(result.entries) + len(result.unchanged)
        summary.unchanged += len(result.unchanged)
        same = known.same
        for entry in result.entries:
            if entry.skip is None and same(entry.path, entry.size, entry.mtime):
                summary.unchanged += 1  # the common case of a re-scan: nothing to do
                continue
            old = known.get(entry.path)
            if entry.skip is not None:
                if (
                    old is not None
                    and old.status == STATUS_SKIPPED
                    and old.reason == entry.skip
                    and old.mtime == entry.mtime
                ):
                    summary.unchanged += 1
                    continue
                rec = self._record(entry, old, status=STATUS_SKIPPED, reason=entry.skip)
                skips.append(FileWrite(rec))
                summary.skipped.append((entry.path, entry.skip))
                continue
            todo.append((entry, old))
        todo.sort(key=lambda item: (-item[0].mtime, item[0].path))  # newest first
        # Files under the scanned scopes that were not seen are gone (unless their
        # folder could not be listed). When every known file was seen, none is.
        seen_known = len(result.unchanged) + sum(e.path in known for e in result.entries)
        everything_seen = seen_known == len(known)
        seen = set() if everything_seen else {*result.unchanged, *(e.path for e in result.entries)}
        gone = (
            []
            if everything_seen
            else [
                rec
                for rec in (
                    known.get(path)
                    for path in known.paths
                    if path not in seen
                    and any(is_within(path, s) for s in scopes)
                    and not any(is_within(path, u) for u in result.unreadable)
                )
                if rec is not None
            ]
        )
        gone_by_key: dict[tuple[int, str], list[FileRecord]] = {}
        for rec in gone:
            if rec.status == STATUS_INDEXED and rec.content_hash:
                gone_by_key.setdefault((rec.size, rec.content_hash), []).append(rec)
        if wide_renames:
            self._add_moved_away(todo, known, gone, gone_by_key)
        gone_sizes = {size for size, _h in gone_by_key}

        # Hash what changed; spot renames and touches before reading anything.
        to_read: list[tuple[Any, FileRecord | None, str]] = []
        moves: list[tuple[FileRecord, FileRecord]] = []
        for entry, old in todo:
            needs_hash = old is not None or entry.size in gone_sizes
            digest = ""
            if needs_hash:
                try:
                    digest = content_hash(entry.path)
                except OSError as exc:
                    self._unreadable(entry, old, exc, skips, summary)
                    continue
            if old is not None and old.status == STATUS_INDEXED and digest == old.content_hash:
                touched.append((old, self._record(entry, old, digest=digest, keep=old)))
                summary.unchanged += 1
                continue
            if old is None and (entry.size, digest) in gone_by_key:
                source = gone_by_key[(entry.size, digest)].pop()
                if not gone_by_key[(entry.size, digest)]:
                    del gone_by_key[(entry.size, digest)]
                moves.append((source, self._record(entry, source, digest=digest, keep=source)))
                if source in gone:  # else a file moved away outside this update's scope
                    gone.remove(source)
                summary.renamed += 1
                continue
            to_read.append((entry, old, digest))

        if skips:
            store.write_files(skips)
        if moves or touched:
            store.repath([*moves, *touched])
        if gone:
            store.remove_files([rec.file_id for rec in gone])
            summary.removed += len(gone)
        self._read_files(to_read, summary, report, control)

    def _add_moved_away(
        self,
        todo: Sequence[tuple[Any, FileRecord | None]],
        known: KnownFiles,
        gone: list[FileRecord],
        gone_by_key: dict[tuple[int, str], list[FileRecord]],
    ) -> None:
        """Offer indexed files elsewhere in the roots that no longer exist on disk
        as rename sources for the new files of an update.

        The watcher may see a move as a creation and, in a later batch, a deletion
        (a move into a folder created a moment before, whose watch did not exist
        yet): without this the moved file would be read and embedded again.
        """
        sizes = [entry.size for entry, old in todo if old is None]
        if not sizes:
            return
        taken = {rec.file_id for rec in gone}
        for rec in self.store.files_of_size(sizes):
            if (
                rec.file_id in taken
                or rec.path in known
                or not rec.content_hash
                or not any(is_within(rec.path, r) for r in self.roots)
                or os.path.lexists(rec.path)
            ):
                continue
            gone_by_key.setdefault((rec.size, rec.content_hash), []).append(rec)
            taken.add(rec.file_id)

    def _record(
        self,
        entry: Any,
        old: FileRecord | None,
        *,
        status: str = STATUS_INDEXED,
        reason: str = "",
        digest: str = "",
        keep: FileRecord | None = None,
        kind: str = "",
        n_chunks: int = 0,
    ) -> FileRecord:
        """A new file row for ``entry``; ``keep``: copy text facts from this row."""
        return FileRecord(
            file_id=old.file_id if old is not None else new_file_id(),
            path=entry.path,
            size=entry.size,
            mtime=entry.mtime,
            content_hash=digest or (keep.content_hash if keep else ""),
            status=keep.status if keep else status,
            reason=keep.reason if keep else reason,
            indexed_at=time.time(),
            n_chunks=keep.n_chunks if keep else n_chunks,
            kind=keep.kind if keep else kind,
            ino=entry.ino,
        )

    def _unreadable(
        self,
        entry: Any,
        old: FileRecord | None,
        exc: OSError,
        skips: list[FileWrite],
        summary: Summary,
    ) -> None:
        if exc.errno == errno.ENOENT:
            reason = "file vanished"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            reason = "permission denied"
        else:
            reason = f"cannot read: {exc.strerror or exc}"
        skips.append(FileWrite(self._record(entry, old, status=STATUS_SKIPPED, reason=reason)))
        summary.skipped.append((entry.path, reason))

    def _read_files(
        self,
        to_read: list[tuple[Any, FileRecord | None, str]],
        summary: Summary,
        report: _Reporter,
        control: Control | None,
    ) -> None:
        if not to_read:
            return
        report.bytes_left = sum(e.size for e, _o, _d in to_read)
        report.read_started = time.monotonic()
        report.phase(PHASE_EXTRACT, files_total=len(to_read), files_done=0)
        batch: list[FileWrite] = []
        batch_chunks = 0
        last_commit = time.monotonic()

        def commit() -> None:
            nonlocal batch, batch_chunks, last_commit
            if batch:
                summary.chunks_added += self.store.write_files(batch)
                self._maybe_optimize()
            batch, batch_chunks = [], 0
            last_commit = time.monotonic()

        # The extraction worker reads the next file while this thread chunks and
        # commits the current one: the two use different cores.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sr3desk-read") as pool:
            ahead: deque[Future[_Extracted]] = deque()
            queue = iter(to_read)

            def refill() -> None:
                while len(ahead) < READ_AHEAD:
                    item = next(queue, None)
                    if item is None:
                        return
                    ahead.append(pool.submit(self._extract_one, *item))

            refill()
            done = 0
            while ahead:
                if self._checkpoint(control, report, commit):
                    summary.stopped = True
                    for future in ahead:
                        future.cancel()
                    return
                extracted = ahead.popleft().result()
                refill()
                entry = extracted.entry
                report.emit(current=entry.path)
                write = self._chunk_one(extracted)
                batch.append(write)
                batch_chunks += len(write.chunks)
                report.tokens_read += sum(c.tokens for c in write.chunks)
                if write.record.status == STATUS_SKIPPED:
                    summary.skipped.append((entry.path, write.record.reason))
                else:
                    summary.indexed += 1
                done += 1
                report.bytes_read += entry.size
                report.bytes_left -= entry.size
                report.emit(
                    force=True,  # one report per file: cheap, and what a GUI shows
                    files_done=done,
                    files_skipped=len(summary.skipped),
                )
                if (
                    len(batch) >= self.options.commit_files
                    or batch_chunks >= MAX_BATCH_CHUNKS
                    or time.monotonic() - last_commit >= self.options.commit_interval_s
                ):
                    commit()
        commit()

    def _extract_one(self, entry: Entry, old: FileRecord | None, digest: str) -> _Extracted:
        """Hash and extract one file (in the read-ahead thread); never raises."""
        out = _Extracted(entry, old, digest)
        try:
            if not out.digest:
                out.digest = content_hash(entry.path)
            doc = self._get_extractor().extract(Path(entry.path))
            after = os.stat(entry.path, follow_symlinks=False)
        except ExtractError as err:
            out.reason = VANISHED if not os.path.lexists(entry.path) else err.reason
            return out
        except FileNotFoundError:
            out.reason = VANISHED
            return out
        except OSError as exc:
            out.reason = f"cannot read: {exc.strerror or exc}"
            return out
        if after.st_size != entry.size or after.st_mtime != entry.mtime:
            # Changed while it was read: what was read is stored under the old
            # stat, so the next scan sees the change and reads it again.
            log.info("%s changed while it was read; it will be read again", entry.path)
        out.doc = doc
        return out

    def _chunk_one(self, got: _Extracted) -> FileWrite:
        """Chunk an extracted file; a failure (here or before) becomes a skipped row."""
        from sr3desk.index.chunking import chunk_document

        entry, old, digest = got.entry, got.old, got.digest
        if got.doc is None:
            reason = got.reason or "cannot read"
            rec = self._record(entry, old, status=STATUS_SKIPPED, reason=reason, digest=digest)
            return FileWrite(rec)
        try:
            chunks = chunk_document(
                got.doc,
                self._get_counter(),
                max_tokens=self.options.max_tokens,
                overlap_tokens=self.options.overlap_tokens,
            )
        except Exception as exc:  # a chunker bug on odd text must not stop the run
            log.warning("Cannot chunk %s", entry.path, exc_info=True)
            reason = f"chunking failed: {type(exc).__name__}"
            rec = self._record(entry, old, status=STATUS_SKIPPED, reason=reason, digest=digest)
            return FileWrite(rec)
        rec = self._record(entry, old, digest=digest, kind=got.doc.kind, n_chunks=len(chunks))
        return FileWrite(rec, chunks)

    def _maybe_optimize(self, force: bool = False) -> None:
        timings = self.store.optimize(force=force)
        if timings:
            log.debug("Index maintenance: %s", timings)

    # -- phase 2: vectors --------------------------------------------------------

    def _embed(self, summary: Summary, report: _Reporter, control: Control | None) -> None:
        embedder = self.embedder
        gen = self.store.write_generation
        if embedder is None or gen.dim is None:
            return
        if not self.store.pending_count():
            return
        pending = self.store.pending_chunks()
        if not pending.num_rows:
            return
        tokens = pending["n_tokens"].to_numpy(zero_copy_only=False).astype(np.int64)
        report.tokens_left = int(tokens.sum())
        report.embed_started = time.monotonic()
        report.phase(PHASE_EMBED, chunks_total=pending.num_rows, chunks_embedded=0)
        acc_ids: list[str] = []
        acc_vecs: list[np.ndarray] = []
        last_commit = time.monotonic()
        embed_started = time.monotonic()

        def commit() -> None:
            nonlocal acc_ids, acc_vecs, last_commit
            if acc_ids:
                self.store.write_vectors(acc_ids, np.concatenate(acc_vecs))
            acc_ids, acc_vecs = [], []
            last_commit = time.monotonic()

        batch_size = self.options.embed_batch
        while pending.num_rows:
            ids = pending["chunk_id"].to_pylist()
            rowids = pending["_rowid"].to_pylist()
            ntok = pending["n_tokens"].to_pylist()
            paths = pending["path"].to_pylist()
            reload = False
            for w0 in range(0, len(ids), WINDOW_CHUNKS):
                texts = self.store.chunk_texts(rowids[w0 : w0 + WINDOW_CHUNKS])
                for b0 in range(0, len(texts), batch_size):
                    if self._checkpoint(control, report, commit):
                        summary.stopped = True
                        summary.embed_seconds += time.monotonic() - embed_started
                        return
                    i0 = w0 + b0
                    batch_ids = ids[i0 : i0 + batch_size]
                    report.emit(current=paths[i0])
                    vecs = embedder.embed_documents(texts[b0 : b0 + batch_size])
                    acc_ids.extend(batch_ids)
                    acc_vecs.append(np.asarray(vecs, dtype=np.float32))
                    done_tokens = int(sum(ntok[i0 : i0 + batch_size]))
                    summary.chunks_embedded += len(batch_ids)
                    summary.tokens_embedded += done_tokens
                    report.tokens_done += done_tokens
                    report.tokens_left = max(0, report.tokens_left - done_tokens)
                    report.emit(chunks_embedded=summary.chunks_embedded)
                    if time.monotonic() - last_commit >= self.options.commit_interval_s:
                        commit()
                        if self.store.maintenance_due():
                            # Compaction renumbers rows: fetch the pending list again.
                            self._maybe_optimize()
                            reload = True
                            break
                if reload:
                    break
            commit()
            if not reload:
                break
            pending = self.store.pending_chunks()
        summary.embed_seconds += time.monotonic() - embed_started
        if report.rate() > 0:
            self.store.remember_speed(report.rate())
        report.emit(force=True)

    def _finish(
        self, summary: Summary, report: _Reporter, started: float, force_optimize: bool = True
    ) -> None:
        changed = bool(
            summary.indexed
            or summary.removed
            or summary.renamed
            or summary.chunks_embedded
            or summary.skipped
        )
        if changed:
            report.phase(PHASE_OPTIMIZE)
            self._maybe_optimize(force=force_optimize)
        if not summary.stopped and self.store.building and self.embedder is not None:
            self.store.complete_generation()
        summary.seconds = time.monotonic() - started
        report.phase(PHASE_DONE, current="")


def _union(first: Sequence[str], second: Iterable[str]) -> list[str]:
    out = list(first)
    for item in second:
        if item not in out:
            out.append(item)
    return out
