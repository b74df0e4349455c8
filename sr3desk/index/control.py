"""Pausing and stopping a running indexer from another thread."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sr3desk.index.progress import Tracker


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


def checkpoint(control: Control | None, tracker: Tracker, commit: Callable[[], None]) -> bool:
    """Honour a pause or stop of ``control``, committing first; returns True when
    the run must stop."""
    if control is None:
        return False
    if control.paused and not control.stopped:
        commit()
        tracker.emit(paused=True)
        while not control.wait(0.5):
            pass
        tracker.emit(paused=False)
    if control.stopped:
        commit()
        return True
    return False
