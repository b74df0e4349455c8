"""Extraction in a separate process that can be killed.

Parsers are libraries written for well-formed input: on a hostile or broken file they
may loop, recurse or allocate without end. :class:`Extractor` keeps one worker process
(started with ``spawn``, so it shares no threads or locks with the app) and sends it
paths, never file contents; the worker reads the file itself under an address-space
limit and sends back the :class:`~sr3desk.extract.types.Document`. A worker that runs
past the time limit is killed and replaced before the next file; one that dies is
replaced the same way, and the file is reported with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import resource
import signal
import threading
import time
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Any

from sr3desk.errors import ExtractError
from sr3desk.extract.types import Document, Limits, OcrOptions

log = logging.getLogger(__name__)

_STARTUP_SECONDS = 120.0  # spawn and import; generous for a loaded machine


class _StartupError(Exception):
    pass


# Loggers of parsing libraries that report every oddity of a damaged file.
_NOISY_LOGGERS = ("pypdf", "charset_normalizer", "ebooklib", "docutils", "bs4")


def _serve(
    conn: Connection,
    limits: Limits,
    init: Callable[[], None] | None,
    ocr: OcrOptions | None = None,
) -> None:
    """The worker's main loop: receive a path, send ("ok", Document) or ("err", reason)."""
    import os

    from sr3desk.extract.registry import extract

    # One OCR thread: the indexer chunks on the other core meanwhile, and Tesseract's
    # OpenMP threads were slower than one on 2 cores.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")

    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = limits.max_memory_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    # Ctrl-C in a terminal reaches the whole process group: the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if init is not None:
        init()
    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if request is None:
            return
        try:
            reply: tuple[str, object] = ("ok", extract(Path(request), limits, ocr))
        except ExtractError as err:
            reply = ("err", err.reason)
        except MemoryError:
            reply = ("err", "out of memory")
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("err", "out of memory"))


class Extractor:
    """Extracts files in a worker process with a hard time and memory limit.

    ``extract(path)`` returns a Document or raises :class:`ExtractError`; after a
    timeout or a crash the next call starts a fresh worker. Thread-safe (calls are
    serialised). ``worker_init``, a picklable function, runs in each new worker
    before its first file (tests use it to register a deliberately slow format).
    ``ocr``: whether and how scanned pages and images are read (default: OCR on,
    English). :meth:`cancel` ends the file in progress from another thread. Close
    it, or use it as a context manager.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        ocr: OcrOptions | None = None,
        worker_init: Callable[[], None] | None = None,
        start_method: str = "spawn",
    ) -> None:
        self.limits = limits or Limits()
        self.ocr = ocr or OcrOptions()
        self._init = worker_init
        self._busy = threading.Event()  # a file is in the worker
        self._cancelled = False
        # Any: typeshed's BaseContext lacks Process, which every concrete context has.
        self._context: Any = multiprocessing.get_context(start_method)
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self.restarts = 0
        """Workers replaced after a timeout or a crash (for tests and statistics)."""

    def __enter__(self) -> Extractor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def worker_pid(self) -> int | None:
        """Process id of the current worker, None before the first file."""
        return self._process.pid if self._process is not None else None

    def _start(self) -> Connection:
        if self._conn is not None and self._process is not None and self._process.is_alive():
            return self._conn
        if self._conn is not None:  # died between files (killed from outside): replace it
            self._discard()
            self.restarts += 1
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_serve,
            args=(child, self.limits, self._init, self.ocr),
            name="sr3desk-extract",
            daemon=True,
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        # Wait for the worker to be up, so that its start-up never eats into the first
        # file's time limit.
        try:
            ready = parent.poll(_STARTUP_SECONDS) and parent.recv() == ("ready", None)
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._discard()
            raise _StartupError("the extraction worker did not start")
        log.debug("extraction worker %s started", process.pid)
        return parent

    def _discard(self) -> int | None:
        """Kill and reap the worker; returns its exit code."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        if process.is_alive():
            process.kill()
        process.join(5)
        code = process.exitcode
        if code is not None:
            process.close()
        return code

    def extract(self, path: Path) -> Document:
        """Extract ``path`` in the worker; returns its Document.

        Raises ExtractError: the worker's reason, "timed out after N s" (the worker is
        killed), or "extraction crashed (...)" when the worker died.
        """
        limit = self.limits.max_seconds + self.limits.grace_seconds
        with self._lock:
            try:
                conn = self._start()
            except _StartupError as err:
                raise ExtractError(str(path), str(err)) from None
            started = time.monotonic()
            self._cancelled = False
            self._busy.set()
            try:
                conn.send(str(path))
                ready = conn.poll(limit)
                reply = conn.recv() if ready else None
            except (EOFError, OSError, BrokenPipeError):
                code = self._discard()
                self.restarts += 1
                if self._cancelled:
                    raise ExtractError(str(path), "cancelled") from None
                raise ExtractError(str(path), _crash_reason(code)) from None
            finally:
                self._busy.clear()
            if reply is None:
                self._discard()
                self.restarts += 1
                log.info("extraction of %s timed out; worker restarted", path)
                raise ExtractError(str(path), f"timed out after {time.monotonic() - started:.0f} s")
        status, payload = reply
        if status == "ok":
            assert isinstance(payload, Document)
            return payload
        raise ExtractError(str(path), str(payload))

    def cancel(self) -> bool:
        """End the file in progress now (from any thread): the worker is killed, and
        that file's :meth:`extract` raises ExtractError("cancelled"); the next call
        starts a fresh worker. Returns True when a file was in progress.

        For a stop while a long scan is being read by OCR: the indexer does not
        wait for it to finish.
        """
        process = self._process
        if not self._busy.is_set() or process is None:
            return False
        self._cancelled = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.kill()
        return True

    def close(self) -> None:
        """Stop the worker (politely, then by force); idempotent."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send(None)
            if self._process is not None:
                self._process.join(2)
            self._discard()


def _crash_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGKILL:
            return "extraction crashed (killed: out of memory?)"
        return f"extraction crashed ({name})"
    return f"extraction crashed (exit code {code})"
