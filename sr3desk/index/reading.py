"""Reading files into passages: extraction (in a worker process) and chunking.

:class:`FileReader` turns the files a plan says to read into
:class:`~sr3desk.index.tables.FileWrite` batches ready to commit. The
extraction worker reads the next file while this thread chunks the current
one, so the two use different cores. A file that cannot be read becomes a
skipped row with the reason; nothing here raises for a bad file.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sr3desk.errors import ExtractError
from sr3desk.index.planner import ReadTask, file_record
from sr3desk.index.scan import content_hash
from sr3desk.index.tables import FileWrite
from sr3desk.index.types import STATUS_SKIPPED, IndexOptions, OcrNote

if TYPE_CHECKING:
    from sr3desk.extract import Document, Extractor
    from sr3desk.index.control import Control
    from sr3desk.model.tokenizer import TokenCounter

log = logging.getLogger(__name__)

VANISHED = "file vanished while it was read"
READ_AHEAD = 2  # files extracted ahead of the one being chunked
STOP_POLL_S = 0.2  # how often a wait for the worker looks for a stop


@dataclass
class Extracted:
    """A file as the read-ahead thread hands it over: its text or why not."""

    task: ReadTask
    doc: Document | None = None
    reason: str = ""


class FileReader:
    """Extracts and chunks files; owns the extraction worker unless given one.

    ``open_counter``: opens (on first need) the tokenizer that cuts chunks the
    way the model will see them.
    """

    def __init__(
        self,
        options: IndexOptions,
        open_counter: Callable[[], TokenCounter],
        extractor: Extractor | None = None,
    ) -> None:
        self.options = options
        self._open_counter = open_counter
        self._counter: TokenCounter | None = None
        self._extractor = extractor
        self._own_extractor = extractor is None

    def read(
        self, tasks: Iterable[ReadTask], control: Control | None = None
    ) -> Generator[FileWrite, None, None]:
        """The files of ``tasks`` as rows and chunks, in order, read ahead.

        ``control``: while it is paused no new file is started; once it is stopped
        the iterator ends at once, the file in the worker (a long scan being read by
        OCR) cancelled. Closing the iterator early cancels the files not started.
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sr3desk-read") as pool:
            ahead: deque[Future[Extracted]] = deque()
            queue = iter(tasks)
            try:
                while True:
                    while len(ahead) < READ_AHEAD and (task := next(queue, None)) is not None:
                        ahead.append(pool.submit(self._extract_running, task, control))
                    if not ahead:
                        return
                    got = _result(ahead[0], control)
                    if got is None:
                        return  # stopped
                    ahead.popleft()
                    yield self.chunk(got)
            finally:
                for future in ahead:
                    future.cancel()
                if any(not future.done() for future in ahead):
                    self.cancel()

    def _extract_running(self, task: ReadTask, control: Control | None) -> Extracted:
        """:meth:`extract`, once ``control`` is not paused (a stopped run reads nothing)."""
        if control is not None:
            while control.paused and not control.stopped:
                control.wait(0.5)
            if control.stopped:
                return Extracted(task, reason="stopped")
        return self.extract(task)

    def extract(self, task: ReadTask) -> Extracted:
        """Hash and extract one file (in the read-ahead thread); never raises."""
        out = Extracted(task)
        entry = task.entry
        try:
            if not task.digest:
                task.digest = content_hash(entry.path)
            doc = self._worker().extract(Path(entry.path))
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

    def chunk(self, got: Extracted) -> FileWrite:
        """Chunk an extracted file; a failure (here or before) becomes a skipped row."""
        from sr3desk.index.chunking import chunk_document

        entry, old, digest = got.task.entry, got.task.old, got.task.digest
        doc = got.doc
        if doc is None:
            reason = got.reason or "cannot read"
            return FileWrite(
                file_record(entry, old, status=STATUS_SKIPPED, reason=reason, digest=digest)
            )
        try:
            chunks = chunk_document(
                doc,
                self._tokens(),
                max_tokens=self.options.max_tokens,
                overlap_tokens=self.options.overlap_tokens,
            )
        except Exception as exc:  # a chunker bug on odd text must not stop the run
            log.warning("Cannot chunk %s", entry.path, exc_info=True)
            reason = f"chunking failed: {type(exc).__name__}"
            return FileWrite(
                file_record(entry, old, status=STATUS_SKIPPED, reason=reason, digest=digest)
            )
        rec = file_record(
            entry, old, digest=digest, kind=doc.kind, n_chunks=len(chunks), reason=ocr_note(doc)
        )
        return FileWrite(rec, chunks, doc.ocr_count, doc.ocr_seconds)

    def cancel(self) -> None:
        """End the extraction in progress at once (a stop during a long OCR)."""
        if self._extractor is not None:
            self._extractor.cancel()

    def _tokens(self) -> TokenCounter:
        if self._counter is None:
            self._counter = self._open_counter()
        return self._counter

    def _worker(self) -> Extractor:
        if self._extractor is None:
            from sr3desk.extract import Extractor, Limits, OcrOptions

            limits = Limits(
                max_file_bytes=self.options.max_file_bytes,
                max_seconds=self.options.extract_timeout_s,
            )
            ocr = OcrOptions(enabled=self.options.ocr, languages=self.options.ocr_languages)
            self._extractor = Extractor(limits, ocr=ocr)
        return self._extractor

    def close(self) -> None:
        """Stop the extraction worker this reader started (idempotent)."""
        if self._extractor is not None and self._own_extractor:
            self._extractor.close()
            self._extractor = None


def _result(future: Future[Extracted], control: Control | None) -> Extracted | None:
    """The future's result, or None as soon as ``control`` is stopped."""
    while True:
        try:
            return future.result(timeout=STOP_POLL_S)
        except FutureTimeout:
            if control is not None and control.stopped:
                return None


def ocr_note(doc: Document) -> str:
    """The note an indexed file's row keeps on its OCR'd text ("" when none)."""
    if not doc.ocr_pages:
        return ""
    pages = frozenset(doc.ocr_pages) if doc.pages else None
    return OcrNote(doc.ocr_languages, pages).text()
