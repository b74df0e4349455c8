"""Worker threads, result delivery to the GUI thread, and debouncing.

The GUI thread never waits on the disk, the index or the model: that work runs
in a :class:`Lane` (one named thread, one job at a time) or a one-off
:func:`start_job`, and its result comes back through a queued Qt signal, so the
callback always runs in the GUI thread. Lanes use daemon threads rather than a
QThreadPool on purpose: a job stuck in native code (a long embedding batch) must
never hold up quitting; the index is safe to abandon at any instant.

:class:`Debouncer` turns a burst of calls (keystrokes, file events) into one.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QObject, QTimer, Signal, Slot

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Relay(QObject):
    """Lives in the GUI thread; runs callables sent from worker threads there."""

    deliver = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.deliver.connect(self._run)

    @Slot(object)
    def _run(self, fn: Callable[[], None]) -> None:
        fn()

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the GUI thread soon (safe to call from any thread)."""
        try:
            self.deliver.emit(fn)
        except RuntimeError:
            # The receiver was deleted (window closed): nobody wants the result.
            log.debug("dropped a result: its receiver is gone")


class Job(Generic[T]):
    """A unit of work for a lane: ``fn`` and what to call with its outcome."""

    def __init__(
        self,
        fn: Callable[[], T],
        done: Callable[[T], None] | None,
        failed: Callable[[BaseException], None] | None,
        name: str,
        key: str | None = None,
    ) -> None:
        self.fn = fn
        self.done = done
        self.failed = failed
        self.name = name
        self.key = key
        self.cancelled = False
        self.finished = threading.Event()

    def cancel(self) -> None:
        """Drop the job if it has not started; a running job finishes, its result unused."""
        self.cancelled = True


class Lane(QObject):
    """One worker thread that runs jobs in order, optionally keeping only the latest.

    ``submit(..., key="search")`` drops waiting jobs with the same key (a newer
    query makes an older one pointless); without a key jobs queue. Callbacks run
    in the GUI thread; a cancelled job's callbacks never run. ``on_exit`` runs in
    the lane's thread when it stops (to close what the lane's jobs opened there).
    """

    idle = Signal()

    def __init__(
        self,
        name: str,
        parent: QObject | None = None,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(parent)
        self.name = name
        self._on_exit = on_exit
        self._relay = _Relay(self)
        self._cond = threading.Condition()
        self._queue: list[Job[Any]] = []
        self._current: Job[Any] | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"sr3desk-{name}", daemon=True)
        self._thread.start()

    def submit(
        self,
        fn: Callable[[], T],
        done: Callable[[T], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
        *,
        key: str | None = None,
        name: str = "",
    ) -> Job[T]:
        """Queue ``fn``; returns its :class:`Job` (cancel it to drop the result).

        With ``key``, waiting jobs of the same key are dropped first.
        """
        job: Job[T] = Job(fn, done, failed, name or getattr(fn, "__name__", "job"), key)
        with self._cond:
            if self._stopping:
                job.cancelled = True
                job.finished.set()
                return job
            if key is not None:
                keep = []
                for old in self._queue:
                    if old.key == key:
                        old.cancel()
                        old.finished.set()
                    else:
                        keep.append(old)
                self._queue[:] = keep
            self._queue.append(job)
            self._cond.notify()
        return job

    @property
    def busy(self) -> bool:
        """True while a job runs or waits."""
        with self._cond:
            return self._current is not None or bool(self._queue)

    def stop(self) -> None:
        """Take no new jobs and drop waiting ones; the running one finishes, then
        ``on_exit`` runs and the thread ends."""
        with self._cond:
            self._stopping = True
            for job in self._queue:
                job.cancel()
                job.finished.set()
            self._queue.clear()
            if self._current is not None:
                self._current.cancel()
            self._cond.notify()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (after :meth:`stop`); returns True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._queue:
                    break
                job = self._queue.pop(0)
                self._current = job
            self._run_job(job)
            with self._cond:
                self._current = None
                empty = not self._queue
            if empty:
                self._relay.post(self._emit_idle)
        if self._on_exit is not None:
            try:
                self._on_exit()
            except Exception:
                log.exception("%s: cleanup failed", self.name)

    def _emit_idle(self) -> None:
        self.idle.emit()

    def _run_job(self, job: Job[Any]) -> None:
        try:
            if job.cancelled:
                return
            try:
                result = job.fn()
            except BaseException as exc:  # handed to the GUI thread
                if job.failed is not None and not job.cancelled:
                    failed, error = job.failed, exc  # ``exc`` is unbound after the block
                    self._relay.post(lambda: None if job.cancelled else failed(error))
                else:
                    log.error("%s: %s failed", self.name, job.name, exc_info=exc)
                return
            if job.done is not None and not job.cancelled:
                done = job.done
                self._relay.post(lambda: None if job.cancelled else done(result))
        finally:
            job.finished.set()


def start_job(
    parent: QObject,
    fn: Callable[[], T],
    done: Callable[[T], None] | None = None,
    failed: Callable[[BaseException], None] | None = None,
    name: str = "job",
) -> threading.Thread:
    """Run ``fn`` once in a new daemon thread; callbacks run in the GUI thread.

    ``parent`` owns the delivery: once it is deleted, results are dropped.
    Returns the thread (join it to wait).
    """
    relay = _Relay(parent)

    def deliver(call: Callable[[], None] | None) -> None:
        def run_then_drop() -> None:
            try:
                if call is not None:
                    call()
            finally:
                relay.deleteLater()

        relay.post(run_then_drop)

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the GUI thread
            if failed is None:
                log.error("%s failed", name, exc_info=exc)
                deliver(None)
            else:
                on_failed, error = failed, exc  # ``exc`` is unbound after the block
                deliver(lambda: on_failed(error))
            return
        deliver(None if done is None else (lambda: done(result)))

    thread = threading.Thread(target=run, name=f"sr3desk-{name}", daemon=True)
    thread.start()
    return thread


def settle_heap() -> None:
    """Exempt everything alive now (modules, Qt wrappers, Arrow, the model's
    metadata) from the cyclic GC; instantaneous.

    Call after start-up work. A full collection walks every tracked object and
    holds the interpreter meanwhile: with what the app loads that measured
    120-260 ms, a visible freeze of the window. Frozen objects are still freed by
    reference counting; only cycle detection skips them.
    """
    gc.freeze()


class Debouncer(QObject):
    """Calls ``fn`` once, ``delay_ms`` after the last of a burst of :meth:`trigger` calls."""

    def __init__(self, delay_ms: int, fn: Callable[[], None], parent: QObject | None = None):
        super().__init__(parent)
        self._fn = fn
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._fire)

    def trigger(self) -> None:
        """(Re)start the delay."""
        self._timer.start()

    def flush(self) -> None:
        """Call ``fn`` now if a call is pending."""
        if self._timer.isActive():
            self._timer.stop()
            self._fn()

    def cancel(self) -> None:
        """Forget a pending call."""
        self._timer.stop()

    @property
    def pending(self) -> bool:
        """True while a call waits for its delay."""
        return self._timer.isActive()

    @Slot()
    def _fire(self) -> None:
        self._fn()
