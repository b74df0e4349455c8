"""Keeping the index current while folders change (watchdog).

File-system events arrive in bursts: an editor saving a file may create, write,
rename and delete several files; a build may touch thousands. Events only mark
paths dirty; a worker thread waits until no new event has come for
``debounce_s`` (but never longer than ``max_delay_s`` after the first one) and
hands the dirty paths to ``Indexer.update`` in one call. A thousand saves to one
file in a burst therefore read and embed it once.

A watched root that is deleted takes its inotify watch with it. The worker
checks each root's identity (device and inode) every ``poll_s``: a root that
vanished is dropped from the index, and one that reappears (or was replaced) is
watched again and scanned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from watchdog.events import (
    FileClosedNoWriteEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from sr3desk.index.indexer import Control, Indexer
from sr3desk.index.scan import Rules, is_within
from sr3desk.index.types import Progress, Summary

log = logging.getLogger(__name__)

UpdateFn = Callable[[Summary], None]


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileOpenedEvent | FileClosedNoWriteEvent):
            return  # reading a file changes nothing
        paths = [event.src_path]
        dest = getattr(event, "dest_path", "")
        if dest:
            paths.append(dest)
        self.watcher.mark(os.fsdecode(p) for p in paths)


class Watcher:
    """Watches ``roots`` and feeds changes to ``indexer.update``, coalesced.

    ``on_update`` is called (in the watcher's thread) with the Summary of each
    update; ``progress`` is passed on to the indexer. ``start()`` begins
    watching, ``stop()`` ends it cleanly (an update in progress is stopped at its
    next check point, with its finished work committed).
    """

    def __init__(
        self,
        indexer: Indexer,
        roots: Iterable[str | os.PathLike[str]],
        debounce_s: float = 0.5,
        *,
        max_delay_s: float = 10.0,
        poll_s: float = 1.0,
        on_update: UpdateFn | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.indexer = indexer
        self.roots = [os.path.realpath(os.path.abspath(os.fspath(r))) for r in roots]
        self.debounce_s = debounce_s
        self.max_delay_s = max(max_delay_s, debounce_s)
        self.poll_s = poll_s
        self.on_update = on_update
        self.progress = progress
        self.rules = Rules(self.roots, indexer.options)
        self._ignore = os.path.realpath(indexer.store.home)
        self._dirty: set[str] = set()
        self._first_event: float | None = None
        self._last_event = 0.0
        self._cond = threading.Condition()
        self._control = Control()
        self._observer: Any = None
        self._watches: dict[str, tuple[Any, tuple[int, int] | None]] = {}
        self._thread: threading.Thread | None = None
        self._running = False
        self._busy = False
        self.updates = 0
        """Number of ``Indexer.update`` calls made (for tests and statistics)."""
        self.errors: list[str] = []
        """Messages of updates that failed (the watcher keeps going)."""

    # -- lifecycle ---------------------------------------------------------------

    def start(self, catch_up: bool = True) -> None:
        """Start watching (returns at once; the work happens in a thread).

        With ``catch_up`` the roots are re-scanned once right away, for changes
        made before the watches were in place.
        """
        if self._running:
            return
        for root in self.roots:
            if root not in self.indexer.roots:
                self.indexer.roots.append(root)
        self._observer = Observer()
        self._observer.daemon = True
        for root in self.roots:
            self._arm(root)
        self._observer.start()
        self._running = True
        self._control.reset()
        self._thread = threading.Thread(target=self._loop, name="sr3desk-watch", daemon=True)
        self._thread.start()
        if catch_up:
            # Changes made before the watches existed (during a long first run,
            # say) produced no events: one look at the roots picks them up.
            self.mark(r for r in self.roots if os.path.isdir(r))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop watching; waits for the worker to finish its current step."""
        if not self._running:
            return
        self._running = False
        self._control.stop()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        self._observer = None
        self._watches.clear()

    def pause(self, paused: bool = True) -> None:
        """Hold updates at their next check point (``paused``), or let them go on.

        Changes seen meanwhile are kept and brought in after the pause.
        """
        if paused:
            self._control.pause()
        else:
            self._control.resume()

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- events ------------------------------------------------------------------

    def mark(self, paths: Iterable[str]) -> None:
        """Mark paths as changed (what the event handler calls)."""
        added = False
        now = time.monotonic()
        with self._cond:
            for path in paths:
                if is_within(path, self._ignore):
                    continue
                if self.rules.root_of(path) is None or self.rules.path_excluded(path):
                    continue
                name = os.path.basename(path)
                if self.rules.file_excluded(path, name) and not os.path.isdir(path):
                    continue
                self._dirty.add(path)
                added = True
            if added:
                if self._first_event is None:
                    self._first_event = now
                self._last_event = now
                self._cond.notify_all()

    def idle(self) -> bool:
        """True when no change is waiting and no update is running."""
        with self._cond:
            return not self._dirty and not self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Wait until :meth:`idle`; returns False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._dirty or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # -- worker ------------------------------------------------------------------

    def _arm(self, root: str) -> None:
        """Schedule a recursive watch on ``root`` if it exists now."""
        old = self._watches.pop(root, None)
        if old is not None and old[0] is not None and self._observer is not None:
            # Its emitter may have died with the folder.
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._observer.unschedule(old[0])
        identity = _identity(root)
        if identity is None or not os.path.isdir(root):
            self._watches[root] = (None, None)
            return
        try:
            watch = self._observer.schedule(_Handler(self), root, recursive=True)
        except OSError as exc:
            log.warning("Cannot watch %s: %s", root, exc.strerror)
            self._watches[root] = (None, None)
            return
        self._watches[root] = (watch, identity)
        log.info("Watching %s", root)

    def _check_roots(self) -> None:
        """Re-arm roots that were deleted, re-created or replaced."""
        for root in self.roots:
            watch, identity = self._watches.get(root, (None, None))
            now = _identity(root)
            if now == identity and (watch is not None or now is None):
                continue
            if now is None:
                if watch is not None:
                    log.info("%s was deleted; waiting for it to come back", root)
                    self._arm(root)  # records it as unarmed
                    self.mark([root])
                continue
            log.info("%s appeared or was replaced; watching it again", root)
            self._arm(root)
            self.mark([root])

    def _take(self) -> list[str] | None:
        """Wait for a settled batch of dirty paths; None when stopping."""
        next_poll = time.monotonic() + self.poll_s
        with self._cond:
            while self._running:
                now = time.monotonic()
                if self._dirty and self._first_event is not None:
                    quiet = now - self._last_event >= self.debounce_s
                    overdue = now - self._first_event >= self.max_delay_s
                    if quiet or overdue:
                        batch = sorted(self._dirty)
                        self._dirty.clear()
                        self._first_event = None
                        self._busy = True
                        return batch
                    wait = min(
                        self.debounce_s - (now - self._last_event),
                        self.max_delay_s - (now - self._first_event),
                    )
                else:
                    wait = self.poll_s
                if now >= next_poll:
                    self._cond.release()
                    try:
                        self._check_roots()
                    finally:
                        self._cond.acquire()
                    next_poll = time.monotonic() + self.poll_s
                    continue
                self._cond.wait(max(0.01, min(wait, next_poll - now)))
        return None

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                summary = self.indexer.update(batch, self.progress, self._control)
                self.updates += 1
                if self.on_update is not None:
                    self.on_update(summary)
            except Exception as exc:  # keep watching: the next change may succeed
                log.error("Updating the index failed: %s", exc, exc_info=True)
                self.errors.append(str(exc))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
