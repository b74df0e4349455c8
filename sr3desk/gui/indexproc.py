"""The window's side of the index child process (:mod:`sr3desk.index.child`).

The child runs the indexer and then the watcher; this module starts it with a
QProcess, sends it the session's config and commands, and turns its events
into Qt signals. The protocol is described in :mod:`sr3desk.index.child`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import tempfile
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal, Slot

from sr3desk.errors import Sr3Error
from sr3desk.index.child import (
    SessionConfig,
    options_dict,
    progress_from_json,
    summary_from_json,
)
from sr3desk.model.crash import NOTE_ENV, crash_message, read_note

__all__ = ["IndexProcess", "SessionConfig", "options_dict"]

log = logging.getLogger(__name__)

CHILD_MODULE = "sr3desk.index.child"


# -- the parent ------------------------------------------------------------------------


class IndexProcess(QObject):
    """The window's side: starts the child, sends commands, turns events into signals.

    Everything here runs in the GUI thread and never blocks: QProcess delivers
    the child's lines through the event loop.
    """

    started = Signal()
    progress = Signal(object)  # Progress
    finished = Signal(object)  # Summary of the folder scan
    watching = Signal(bool)
    updated = Signal(object)  # Summary of a watched change
    failed = Signal(object)  # exception carrying the child's message
    ended = Signal()  # the child exited

    def __init__(self, config: SessionConfig, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.config = config
        self.stopping = False
        self._closed = False
        self.proc = QProcess(self)
        self.proc.setProgram(sys.executable)
        self.proc.setArguments(["-m", CHILD_MODULE])
        # The child notes each model it loads here, so that a crash inside llama.cpp
        # can be reported with the model's name (sr3desk.model.crash).
        fd, self._crash_note = tempfile.mkstemp(prefix="sr3desk-indexer-", suffix=".txt")
        os.close(fd)
        env = QProcessEnvironment.systemEnvironment()
        env.insert(NOTE_ENV, self._crash_note)
        self.proc.setProcessEnvironment(env)
        # The child's log lines go where ours go (the terminal).
        self.proc.setProcessChannelMode(QProcess.ProcessChannelMode.ForwardedErrorChannel)
        self.proc.readyReadStandardOutput.connect(self._read)
        self.proc.finished.connect(self._exited)
        self.proc.errorOccurred.connect(self._error)

    def start(self) -> None:
        """Start the child and hand it the session's config."""
        self.proc.start()
        self._send(json.dumps(dataclasses.asdict(self.config)))

    @property
    def alive(self) -> bool:
        """True while the child runs."""
        return self.proc.state() != QProcess.ProcessState.NotRunning

    def pause(self) -> None:
        """Pause between files and between embedding batches."""
        self._send("pause")

    def resume(self) -> None:
        """Continue after :meth:`pause`."""
        self._send("resume")

    def stop(self) -> None:
        """Ask the child to commit what it has and exit (returns at once)."""
        self.stopping = True
        self._send("stop")
        if not self._closed and self.alive:
            self.proc.closeWriteChannel()
        self._closed = True

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the child to exit, then end it; True if it
        exited by itself. Blocks: only for shutting down."""
        if not self.alive:
            return True
        if self.proc.waitForFinished(max(1, int(timeout * 1000))):
            return True
        log.info("The indexer is inside a long step; ending it (its work is committed)")
        self.proc.kill()
        self.proc.waitForFinished(2000)
        return False

    def _send(self, line: str) -> None:
        if self.proc.state() == QProcess.ProcessState.NotRunning or self._closed:
            return
        self.proc.write((line + "\n").encode())

    @Slot()
    def _read(self) -> None:
        while self.proc.canReadLine():
            raw = bytes(self.proc.readLine().data()).decode("utf-8", "replace").strip()
            if not raw:
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                log.info("indexer: %s", raw)  # a stray print in a library
                continue
            self._dispatch(event)

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.progress.emit(progress_from_json(event["progress"]))
        elif kind == "started":
            self.started.emit()
        elif kind == "finished":
            self.finished.emit(summary_from_json(event["summary"]))
        elif kind == "watching":
            self.watching.emit(True)
        elif kind == "updated":
            self.updated.emit(summary_from_json(event["summary"]))
        elif kind == "error":
            text = str(event.get("message", "indexing failed"))
            exc: Exception = Sr3Error(text) if event.get("user") else RuntimeError(text)
            self.failed.emit(exc)

    @Slot(int, QProcess.ExitStatus)
    def _exited(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read()
        if status == QProcess.ExitStatus.CrashExit and not self.stopping:
            # On a crash Qt's exit code is the signal that ended the child.
            model = read_note(self._crash_note)
            self.failed.emit(Sr3Error(crash_message(code, model, "Indexing")))
        with contextlib.suppress(OSError):
            os.unlink(self._crash_note)
        self.watching.emit(False)
        self.ended.emit()

    @Slot(QProcess.ProcessError)
    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.failed.emit(RuntimeError(f"cannot start the indexer ({self.proc.errorString()})"))
            self.ended.emit()
