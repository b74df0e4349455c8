"""What a running ``sr3desk watch`` tells other processes: ``<home>/watch-status.json``.

The watcher (:mod:`sr3desk.cli.watch`) is the only writer of this file; the window
reads it (:mod:`sr3desk.gui.follow`) to show the watcher's progress instead of
indexing by itself. One JSON object, :class:`WatchStatus`, replaced atomically
(temporary file, then rename), so a reader sees a whole version or the one before.
Commands go the other way as signals to the watcher's pid: ``SIGUSR1`` pauses,
``SIGUSR2`` resumes, ``SIGHUP`` looks for changes now, ``SIGTERM`` stops.

Only the holder of ``<home>/watch.lock`` (:data:`WATCH_LOCK`, one watcher per data
directory) writes the file; the index itself stays under the one writer lock,
``index.lock``. A status is *live* while its process runs: the pid exists, is no
zombie, and started at the clock tick recorded (so a reused pid is not taken for
the watcher), and its state is not ``stopped`` or ``failed``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sr3desk.index.progress import Throttle
from sr3desk.index.types import Progress, Summary

log = logging.getLogger(__name__)

STATUS_FILE = "watch-status.json"
WATCH_LOCK = "watch.lock"
WRITE_INTERVAL_S = 0.25  # progress is written at most this often (phase changes at once)

STARTING = "starting"
WAITING = "waiting"  # for the index lock: another writer holds it
INDEXING = "indexing"  # the folder scan
WATCHING = "watching"
STOPPED = "stopped"
FAILED = "failed"

# state -> the states it may go to (see StatusWriter.transition)
TRANSITIONS: dict[str, tuple[str, ...]] = {
    STARTING: (WAITING, INDEXING, STOPPED, FAILED),
    WAITING: (WAITING, INDEXING, STOPPED, FAILED),
    INDEXING: (WATCHING, STOPPED, FAILED),
    WATCHING: (STOPPED, FAILED),
    STOPPED: (),
    FAILED: (),
}


@dataclass
class WatchStatus:
    """One version of the status file.

    ``pid`` and ``started`` (its start time in clock ticks since boot) name the
    watcher's process; ``background``: started as the background service (the
    window may stop and restart it) rather than by hand; ``state``: one of
    :data:`TRANSITIONS`; ``roots``: the watched folders; ``paused``: a pause is in
    effect; ``progress``: the last :class:`Progress` (as a dict); ``scans`` /
    ``scan``: folder scans finished and the last one's :class:`Summary`;
    ``updates`` / ``update``: watched changes brought in and the last one's
    Summary; ``message``: why it waits or failed; ``written``: Unix time.
    """

    pid: int
    started: int
    background: bool
    state: str = STARTING
    roots: list[str] = field(default_factory=list)
    paused: bool = False
    progress: dict[str, Any] | None = None
    scans: int = 0
    scan: dict[str, Any] | None = None
    updates: int = 0
    update: dict[str, Any] | None = None
    message: str = ""
    written: float = 0.0

    def last_progress(self) -> Progress | None:
        """Return :attr:`progress` as a :class:`Progress` (None before the first)."""
        from sr3desk.index.child import progress_from_json

        return progress_from_json(self.progress) if self.progress is not None else None

    def last_scan(self) -> Summary | None:
        """Return the last folder scan's :class:`Summary` (None before the first)."""
        from sr3desk.index.child import summary_from_json

        return summary_from_json(self.scan) if self.scan is not None else None

    def last_update(self) -> Summary | None:
        """Return the last watched change's :class:`Summary` (None before the first)."""
        from sr3desk.index.child import summary_from_json

        return summary_from_json(self.update) if self.update is not None else None

    @property
    def ended(self) -> bool:
        """True once the watcher said it stopped or failed."""
        return self.state in (STOPPED, FAILED)


def process_start(pid: int) -> int | None:
    """Return the start time (clock ticks since boot) of process ``pid``; None when
    there is no such process or it is a zombie (it has exited)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields follow the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_alive(pid: int, started: int) -> bool:
    """True while process ``pid`` runs and is the one that started at ``started``."""
    return process_start(pid) == started


def read_status(home: Path) -> WatchStatus | None:
    """Return the status in data directory ``home``; None when there is none or it
    cannot be read (a reader never fails because of it)."""
    try:
        raw = json.loads((Path(home) / STATUS_FILE).read_text(encoding="utf-8"))
        names = {f.name for f in dataclasses.fields(WatchStatus)}
        return WatchStatus(**{k: v for k, v in raw.items() if k in names})
    except (OSError, ValueError, TypeError) as exc:
        if not isinstance(exc, FileNotFoundError):
            log.debug("Cannot read %s: %s", Path(home) / STATUS_FILE, exc)
        return None


def live_status(home: Path) -> WatchStatus | None:
    """Return the status of the watcher running for ``home`` now, else None."""
    status = read_status(home)
    if status is None or status.ended or not process_alive(status.pid, status.started):
        return None
    return status


class StatusWriter:
    """The watcher's side: keeps ``<home>/watch-status.json`` current, from any thread."""

    def __init__(self, home: Path, roots: list[str], background: bool) -> None:
        self.path = Path(home) / STATUS_FILE
        pid = os.getpid()
        started = process_start(pid)
        assert started is not None, "a running process has a start time"
        self.status = WatchStatus(pid, started, background, roots=list(roots))
        self._lock = threading.Lock()
        self._throttle = Throttle(self._write_progress, WRITE_INTERVAL_S)
        self._write()

    @property
    def state(self) -> str:
        """The state last written."""
        return self.status.state

    def transition(self, state: str, message: str = "") -> None:
        """Move to ``state`` (with ``message``: why it waits or failed) and write it.

        The states and the moves allowed (anything else raises ValueError)::

            starting -> waiting | indexing | stopped | failed
            waiting  -> waiting | indexing | stopped | failed   (the index lock is held)
            indexing -> watching | stopped | failed             (the folder scan)
            watching -> stopped | failed
            stopped, failed: final
        """
        with self._lock:
            if state not in TRANSITIONS[self.status.state]:
                raise ValueError(f"watch status: {self.status.state} -> {state} is not a move")
            self.status.state = state
            self.status.message = message
            self._write()

    def progress(self, p: Progress) -> None:
        """Record a progress report (written at most every :data:`WRITE_INTERVAL_S`,
        at once when the phase or the pause changes)."""
        self._throttle(p)

    def _write_progress(self, p: Progress) -> None:
        with self._lock:
            self.status.progress = dataclasses.asdict(p)
            self._write()

    def set_paused(self, paused: bool) -> None:
        """Record that a pause is (or is no longer) in effect."""
        with self._lock:
            self.status.paused = paused
            self._write()

    def scanned(self, summary: Summary) -> None:
        """Record a finished folder scan."""
        with self._lock:
            self.status.scans += 1
            self.status.scan = dataclasses.asdict(summary)
            self._write()

    def updated(self, summary: Summary) -> None:
        """Record a watched change brought into the index."""
        with self._lock:
            self.status.updates += 1
            self.status.update = dataclasses.asdict(summary)
            self._write()

    def _write(self) -> None:
        self.status.written = time.time()
        data = json.dumps(dataclasses.asdict(self.status))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".watch-status-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.replace(tmp, self.path)
        except OSError as exc:  # the watcher goes on; only the window's view is late
            log.warning("Cannot write %s: %s", self.path, exc.strerror)
