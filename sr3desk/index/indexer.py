"""Keeping the index in step with the user's folders.

``Indexer.run(roots)`` brings the index up to date in two phases:

1. **Read.** The folders are scanned (:mod:`~sr3desk.index.scan`) and the scan
   compared with the index (:mod:`~sr3desk.index.planner`): unchanged files are
   not opened, touched ones re-dated, renamed ones re-pathed, vanished ones
   dropped, and the rest extracted and chunked (:mod:`~sr3desk.index.reading`),
   newest first, and committed in batches: from that moment their text is
   keyword-searchable.
2. **Embed.** Chunks still without a vector are embedded in batches, newest files
   first (:mod:`~sr3desk.index.embedding`).

Everything is committed in small atomic steps, so a run killed at any instant
resumes where it stopped. :class:`Control` pauses, resumes or stops a run between
two files or two embedding batches, after committing what is done. An index in
an older table layout is upgraded first, with progress (phase ``upgrade``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from sr3desk.errors import IndexAccessError
from sr3desk.index import ocrstate
from sr3desk.index.control import Control, checkpoint
from sr3desk.index.embedding import EmbeddingPhase
from sr3desk.index.planner import ChangePlan, plan_changes
from sr3desk.index.progress import ProgressFn, Tracker
from sr3desk.index.reading import FileReader
from sr3desk.index.scan import Entry, ScanResult, is_within, scan, scan_paths
from sr3desk.index.store import Store
from sr3desk.index.tables import FileWrite, KnownFiles
from sr3desk.index.types import (
    PHASE_DONE,
    PHASE_OPTIMIZE,
    PHASE_SCAN,
    PHASE_UPGRADE,
    STATUS_SKIPPED,
    FileRecord,
    IndexOptions,
    Summary,
)

if TYPE_CHECKING:
    from sr3desk.extract import Extractor
    from sr3desk.model.base import Embedder
    from sr3desk.model.tokenizer import TokenCounter

__all__ = ["Control", "Indexer"]

log = logging.getLogger(__name__)

MAX_BATCH_CHUNKS = 4096  # a read batch is committed at the latest at this many chunks


class Indexer:
    """Brings a writable :class:`Store` in step with folders on disk.

    ``embedder``: the model whose generation the store was opened for, or None
    (chunks are stored keyword-only and wait for a model). ``extractor``: the
    extraction worker (default: one with limits from ``options``).
    ``rebuild_roots``: the folders the user indexes, read too when the store is
    building a new model's generation (which must hold them all before it
    serves). Thread-safe: ``run`` and ``update`` calls are serialised. Close it
    (or use ``with``) to stop the extraction worker.
    """

    def __init__(
        self,
        store: Store,
        embedder: Embedder | None = None,
        options: IndexOptions | None = None,
        *,
        extractor: Extractor | None = None,
        rebuild_roots: Sequence[str] = (),
    ) -> None:
        if not store.writable:
            raise IndexAccessError("The indexer needs a store opened for writing (write=True)")
        gen = store.write_generation
        if embedder is not None and embedder.model_id != gen.model_id:
            raise IndexAccessError(
                f"The store was opened for model {gen.model_id} but the embedder is "
                f"{embedder.model_id}: open the store with the embedder's ModelInfo"
            )
        self.store = store
        self.embedder = embedder
        self.options = options or IndexOptions()
        self.rebuild_roots = list(rebuild_roots)
        self.reader = FileReader(self.options, self._open_counter, extractor)
        self._lock = threading.RLock()
        self.roots: list[str] = []

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
        model's generation, ``rebuild_roots`` are indexed too, and the new
        generation starts serving once it is complete.
        """
        with self._lock:
            started, summary, tracker = time.monotonic(), Summary(), self._tracker(progress)
            root_list = [os.path.abspath(os.path.expanduser(os.fspath(r))) for r in roots]
            if self.store.building:
                root_list = _union(root_list, self.rebuild_roots)
            log.info("Indexing %s", ", ".join(root_list))
            self._upgrade(tracker)
            tracker.phase(PHASE_SCAN)
            known = self.store.load_files()
            result = scan(root_list, self.options, known)
            self.roots = _union(self.roots, result.roots)
            if result.missing_roots:
                log.warning("Not found, left as indexed: %s", ", ".join(result.missing_roots))
            force = self._ocr_rereads(known, result)
            plan = plan_changes(result, known, result.roots, force=force)
            self._apply(plan, summary, tracker, control)
            if not summary.stopped:
                ocrstate.remember_key(
                    self.store.dir, self.store.write_generation.key, self.options.ocr_key
                )
            self._embed(summary, tracker, control)
            self._finish(summary, tracker, started)
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
            started, summary, tracker = time.monotonic(), Summary(), self._tracker(progress)
            wanted = sorted({os.path.abspath(os.fspath(p)) for p in paths})
            if not self.roots or not wanted:
                return summary
            wanted = [p for p in wanted if any(is_within(p, r) for r in self.roots)]
            result: ScanResult = scan_paths(wanted, self.roots, self.options)
            known = self.store.load_files(under=wanted)
            plan = plan_changes(
                result, known, wanted, moved_away=lambda sizes: self._moved_away(sizes, known)
            )
            self._apply(plan, summary, tracker, control)
            self._embed(summary, tracker, control)
            self._finish(summary, tracker, started, force_optimize=False)
            return summary

    def close(self) -> None:
        """Stop the extraction worker this indexer started (idempotent)."""
        self.reader.close()

    def __enter__(self) -> Indexer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the steps -----------------------------------------------------------------

    def _tracker(self, progress: ProgressFn | None) -> Tracker:
        gen = self.store.write_generation
        prior = None
        if self.embedder is not None and gen.dim is not None:
            prior = gen.tokens_per_s or 0.0
        return Tracker(progress, prior)

    def _upgrade(self, tracker: Tracker) -> None:
        """Bring an index written by an older release to the current layout."""
        if not self.store.upgrade_due:
            return
        tracker.phase(PHASE_UPGRADE)
        self.store.upgrade_layout(
            lambda done, total: tracker.emit(chunks_embedded=done, chunks_total=total)
        )

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

    def _ocr_rereads(self, known: KnownFiles, result: ScanResult) -> frozenset[str]:
        """Files to read again because the OCR setting changed since the last run
        (:mod:`~sr3desk.index.ocrstate`); moves them from the scan's unchanged list
        to its entries. Costs nothing when the setting did not change."""
        key = self.options.ocr_key
        generation = self.store.write_generation.key
        if not len(known) or ocrstate.last_key(self.store.dir, generation) == key:
            return frozenset()
        paths = ocrstate.rereads(known.records(), key)
        if not paths:
            return frozenset()
        still = []
        for path in result.unchanged:
            if path not in paths:
                still.append(path)
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue  # vanished: the plan drops it
            result.entries.append(Entry(path, st.st_size, st.st_mtime, st.st_ino))
        result.unchanged = still
        return frozenset(paths)

    def _moved_away(self, sizes: list[int], known: KnownFiles) -> list[FileRecord]:
        """Indexed files elsewhere in the roots that no longer exist on disk: rename
        sources for the new files of an update.

        The watcher may see a move as a creation and, in a later batch, a deletion
        (a move into a folder created a moment before, whose watch did not exist
        yet): without this the moved file would be read and embedded again.
        """
        if not sizes:
            return []
        return [
            rec
            for rec in self.store.files_of_size(sizes)
            if rec.path not in known
            and any(is_within(rec.path, r) for r in self.roots)
            and not os.path.lexists(rec.path)
        ]

    def _apply(
        self, plan: ChangePlan, summary: Summary, tracker: Tracker, control: Control | None
    ) -> None:
        """Write the plan: skips, re-paths, removals, then the files to read."""
        summary.scanned, summary.unchanged = plan.scanned, plan.unchanged
        summary.skipped.extend(plan.skipped)
        summary.renamed, summary.removed = len(plan.moves), len(plan.gone)
        if plan.skips:
            self.store.write_files([FileWrite(rec) for rec in plan.skips])
        if plan.moves or plan.touched:
            self.store.repath([*plan.moves, *plan.touched])
        if plan.gone:
            self.store.remove_files([rec.file_id for rec in plan.gone])
        if plan.to_read:
            self._read(plan, summary, tracker, control)

    def _read(
        self, plan: ChangePlan, summary: Summary, tracker: Tracker, control: Control | None
    ) -> None:
        """Extract, chunk and commit the plan's files in batches."""
        tracker.start_reading(len(plan.to_read), sum(t.entry.size for t in plan.to_read))
        batch: list[FileWrite] = []
        last_commit = time.monotonic()

        def commit() -> None:
            nonlocal batch, last_commit
            if batch:
                summary.chunks_added += self.store.write_files(batch)
                self._optimize()
            batch, last_commit = [], time.monotonic()

        files = self.reader.read(plan.to_read, control)
        try:
            for done, write in enumerate(_paced(files, control, tracker, commit), 1):
                if write is None:
                    summary.stopped = True
                    return
                tracker.emit(current=write.record.path)
                batch.append(write)
                if write.record.status == STATUS_SKIPPED:
                    summary.skipped.append((write.record.path, write.record.reason))
                else:
                    summary.indexed += 1
                tracker.file_read(write.record.size, sum(c.tokens for c in write.chunks))
                if write.ocr_pages:
                    summary.ocr_pages += write.ocr_pages
                    summary.ocr_seconds += write.ocr_seconds
                    tracker.ocr_read(write.ocr_pages, write.ocr_seconds)
                tracker.emit(files_done=done, files_skipped=len(summary.skipped))
                if (
                    len(batch) >= self.options.commit_files
                    or sum(len(w.chunks) for w in batch) >= MAX_BATCH_CHUNKS
                    or time.monotonic() - last_commit >= self.options.commit_interval_s
                ):
                    commit()
        finally:
            files.close()
        commit()

    def _embed(self, summary: Summary, tracker: Tracker, control: Control | None) -> None:
        if summary.stopped or self.embedder is None or self.store.write_generation.dim is None:
            return
        EmbeddingPhase(self.store, self.embedder, self.options).run(summary, tracker, control)

    def _optimize(self, force: bool = False) -> None:
        timings = self.store.optimize(force=force)
        if timings:
            log.debug("Index maintenance: %s", timings)

    def _finish(
        self, summary: Summary, tracker: Tracker, started: float, force_optimize: bool = True
    ) -> None:
        changed = bool(
            summary.indexed
            or summary.removed
            or summary.renamed
            or summary.chunks_embedded
            or summary.skipped
        )
        if changed:
            tracker.phase(PHASE_OPTIMIZE)
            self._optimize(force=force_optimize)
        if not summary.stopped and self.store.building and self.embedder is not None:
            self.store.complete_generation()
        summary.seconds = time.monotonic() - started
        tracker.phase(PHASE_DONE, current="")


def _paced(
    files: Iterable[FileWrite],
    control: Control | None,
    tracker: Tracker,
    commit: Callable[[], None],
) -> Iterable[FileWrite | None]:
    """``files``, honouring ``control`` before each one; None when told to stop."""
    it = iter(files)
    while True:
        if checkpoint(control, tracker, commit):
            yield None
            return
        write = next(it, None)
        if write is None:
            if control is not None and control.stopped:  # the reader ended on the stop
                checkpoint(control, tracker, commit)
                yield None
            return
        yield write


def _union(first: Sequence[str], second: Iterable[str]) -> list[str]:
    out = list(first)
    for item in second:
        if item not in out:
            out.append(item)
    return out
