"""The window following a running ``sr3desk watch`` instead of indexing by itself.

When a watcher runs for the window's data directory (the background service, or
one started by hand), the window must not start a second writer: it reads the
watcher's status file (:mod:`sr3desk.index.watchstatus`) a few times a second and
turns what changed into the same signals as :class:`~sr3desk.gui.indexproc.IndexProcess`,
so the status bar and the tray show the watcher's progress. Pause, resume, "look
for changes now" and stop go to the watcher as signals. Reading a small JSON file
is all this does in the GUI thread; searches run in their lanes as always.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from sr3desk.desktop.autostart import LOG_FILE, signal_watcher
from sr3desk.errors import Sr3Error
from sr3desk.index import watchstatus
from sr3desk.index.watchstatus import WatchStatus, live_status, process_alive, read_status

log = logging.getLogger(__name__)

POLL_MS = 300
SPAWN_TIMEOUT_S = 120.0  # a watcher the window started writes its status within this


class WatchFollower(QObject):
    """Follows one watcher process through its status file (GUI thread only).

    ``status``: the watcher found running; or ``proc``: one the window just
    started, followed once its status appears. Emits the signals of
    :class:`~sr3desk.gui.indexproc.IndexProcess`, and :attr:`waiting` while the
    watcher waits for another writer to release the index.
    """

    started = Signal()
    progress = Signal(object)  # Progress
    finished = Signal(object)  # Summary of the folder scan
    watching = Signal(bool)
    updated = Signal(object)  # Summary of a watched change
    failed = Signal(object)  # exception carrying the watcher's message
    ended = Signal()  # the watcher exited, or the window stopped following it
    waiting = Signal(str)  # why the watcher waits (another writer holds the index)

    def __init__(
        self,
        home: Path,
        status: WatchStatus | None = None,
        proc: subprocess.Popen[bytes] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        if status is None and proc is None:
            raise ValueError("WatchFollower needs the watcher's status or its process")
        self.home = Path(home)
        self.status = status
        self.proc = proc
        self.stopping = False
        self.failure: str | None = None  # why the watcher failed, once it did
        self._ended = False
        self._watching = False
        self._since = time.monotonic()
        self._seen: WatchStatus | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)

    # -- the IndexProcess interface ----------------------------------------------------

    @property
    def alive(self) -> bool:
        """True until the watcher ended or the window stopped following it."""
        return not self._ended

    @property
    def owned(self) -> bool:
        """True for the background service (the window may stop and restart it);
        False for a watcher someone started by hand."""
        return self.proc is not None or (self.status is not None and self.status.background)

    @property
    def pid(self) -> int | None:
        """The followed watcher's pid (None until a started one wrote its status)."""
        return self.status.pid if self.status is not None else None

    def start(self) -> None:
        """Begin following (reads the status at once, then every :data:`POLL_MS`)."""
        self._timer.start()
        self.poll()

    def pause(self) -> None:
        """Ask the watcher to pause at its next check point."""
        self._send(signal.SIGUSR1)

    def resume(self) -> None:
        """Ask the watcher to go on."""
        self._send(signal.SIGUSR2)

    def rescan(self) -> None:
        """Ask the watcher to look at its folders for changes now."""
        self._send(signal.SIGHUP)

    def stop(self) -> None:
        """Ask the watcher to commit and exit; :attr:`ended` follows once it has."""
        self.stopping = True
        if self.status is not None:
            self._send(signal.SIGTERM)
        elif self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # not started yet: its supervisor passes SIGTERM on

    def detach(self) -> None:
        """Stop following, leaving the watcher running (the window closes)."""
        self._timer.stop()
        self._ended = True

    def wait(self, timeout: float) -> bool:
        """Nothing of the window's runs here: returns True at once."""
        return True

    def _send(self, sig: signal.Signals) -> None:
        if self.status is not None and not self._ended:
            signal_watcher(self.status.pid, sig)

    # -- following ---------------------------------------------------------------------

    def poll(self) -> None:
        """Read the status file and emit what changed since the last look."""
        if self._ended:
            return
        current = read_status(self.home)
        if self.status is None and not self._adopt(current):
            return
        assert self.status is not None
        mine = current if current is not None and current.pid == self.status.pid else None
        if mine is not None:
            self._handle(mine)
        if self._ended:
            return
        if mine is None or mine.ended or not process_alive(self.status.pid, self.status.started):
            if (mine is None or not mine.ended) and not self.stopping:
                self._fail(
                    f"Background indexing (pid {self.status.pid}) ended unexpectedly; "
                    f"see {self.home / LOG_FILE}"
                )
            self._end()

    def _adopt(self, current: WatchStatus | None) -> bool:
        """For a watcher the window started: take its status once written. Returns
        False while there is none yet (or when it ended before writing one)."""
        assert self.proc is not None
        if (
            current is not None
            and not current.ended
            and process_alive(current.pid, current.started)
        ):
            self.status = current
            return True
        code = self.proc.poll()
        if code is not None:
            # It exited without a status: another watcher was up already (it said so
            # and left), or it failed at once.
            other = live_status(self.home)
            if other is not None:
                self.status, self.proc = other, None
                return True
            self._fail(
                f"Background indexing exited at once (code {code}); see {self.home / LOG_FILE}"
            )
            self._end()
            return False
        if time.monotonic() - self._since > SPAWN_TIMEOUT_S:
            self._fail(f"Background indexing did not start within {SPAWN_TIMEOUT_S:.0f} s")
            self._end()
        return False

    def _handle(self, st: WatchStatus) -> None:
        prev = self._seen
        if prev is not None and st.written == prev.written:
            return
        self._seen = st
        if st.state == watchstatus.WAITING and (
            prev is None or prev.state != st.state or prev.message != st.message
        ):
            self.waiting.emit(st.message)
        if st.state == watchstatus.INDEXING and (
            prev is None or prev.state in (watchstatus.STARTING, watchstatus.WAITING)
        ):
            self.started.emit()
        if st.progress is not None and (
            prev is None or st.progress != prev.progress or st.paused != prev.paused
        ):
            p = st.last_progress()
            assert p is not None
            self.progress.emit(replace(p, paused=p.paused or st.paused))
        if prev is not None and st.scans > prev.scans:
            summary = st.last_scan()
            if summary is not None:
                self.finished.emit(summary)
        if st.state == watchstatus.WATCHING and not self._watching:
            self._watching = True
            self.watching.emit(True)
        if prev is not None and st.updates > prev.updates:
            summary = st.last_update()
            if summary is not None:
                self.updated.emit(summary)
        if st.state == watchstatus.FAILED:
            self._fail(st.message or "Background indexing failed")

    def _fail(self, text: str) -> None:
        self.failure = text
        self.failed.emit(Sr3Error(text))

    def _end(self) -> None:
        self._timer.stop()
        self._ended = True
        if self._watching:
            self._watching = False
            self.watching.emit(False)
        self.ended.emit()
