"""Indexing in a child process: the core's ``Indexer.run`` and then a ``Watcher``.

Why a process and not a thread: indexing runs Python code (chunking, writes)
for minutes, and every thread of a process shares one interpreter lock. On a
busy machine the window then waits for that lock; measured in the same process,
the event loop stalled 200-500 ms while indexing. In a child process the
window only reads the index (LanceDB readers see every commit), and closing
the app can end the child at any instant, which the index survives by design.

Protocol, one JSON object per line. The parent writes the session's
:class:`SessionConfig` first, then commands: ``pause``, ``resume``, ``stop``
(end of input also means stop: the parent is gone). The child answers with
events: ``started``, ``progress`` (a :class:`Progress`), ``finished`` (a
:class:`Summary`), ``watching``, ``updated`` (a Summary), ``error`` (a message).

Run as ``python -m sr3desk.gui.indexproc``; :class:`IndexProcess` starts it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from PySide6.QtCore import QObject, QProcess, Signal, Slot

from sr3desk.errors import Sr3Error
from sr3desk.index.types import PHASE_DONE, IndexOptions, Progress, Summary

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.1  # at most ten progress events a second


@dataclass
class SessionConfig:
    """What the child needs: data directory, model, folders, indexer options."""

    home: str
    model_path: str | None
    threads: int | None
    gpu_layers: int
    roots: list[str]
    options: dict[str, Any]
    log_level: int = logging.WARNING


def summary_from_json(raw: dict[str, Any]) -> Summary:
    """Rebuild a :class:`Summary` sent by the child."""
    fields = {f.name for f in dataclasses.fields(Summary)}
    data = {k: v for k, v in raw.items() if k in fields}
    data["skipped"] = [tuple(s) for s in data.get("skipped", [])]
    return Summary(**data)


def progress_from_json(raw: dict[str, Any]) -> Progress:
    """Rebuild a :class:`Progress` sent by the child."""
    fields = {f.name for f in dataclasses.fields(Progress)}
    return Progress(**{k: v for k, v in raw.items() if k in fields})


class Throttle:
    """Passes on at most one progress report per interval, plus every phase change."""

    def __init__(self, emit: Callable[[Progress], None], interval: float) -> None:
        self._emit = emit
        self._interval = interval
        self._last = 0.0
        self._key: tuple[str, bool] | None = None

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        key = (p.phase, p.paused)
        if key != self._key:
            log.debug("Index phase %s%s", p.phase, " (paused)" if p.paused else "")
        if key != self._key or now - self._last >= self._interval or p.phase == PHASE_DONE:
            self._key, self._last = key, now
            self._emit(p)


# -- the child -------------------------------------------------------------------------


class _Channel:
    """Writes events to the parent, one JSON line each, from any thread."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, event: str, **data: Any) -> None:
        line = json.dumps({"event": event, **data})
        with self._lock:
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (BrokenPipeError, ValueError):
                pass  # the parent is gone; the stop follows from stdin's end


def serve(stdin: IO[str], stdout: IO[str]) -> int:
    """Run one indexing session as told on ``stdin``; returns the exit code."""
    from sr3desk.index.indexer import Control, Indexer
    from sr3desk.index.store import Store

    cfg = SessionConfig(**json.loads(stdin.readline()))
    logging.basicConfig(level=cfg.log_level, format="%(levelname)s %(name)s[index]: %(message)s")
    channel = _Channel(stdout)
    control = Control()
    quit_ = threading.Event()

    def commands() -> None:
        for line in stdin:
            cmd = line.strip()
            if cmd == "pause":
                control.pause()
            elif cmd == "resume":
                control.resume()
            elif cmd == "stop":
                break
        control.stop()
        quit_.set()

    threading.Thread(target=commands, name="commands", daemon=True).start()
    store = embedder = watcher = indexer = None
    try:
        info = None
        if cfg.model_path:
            from sr3desk.model.ggufinfo import inspect_gguf
            from sr3desk.model.runtime import open_embedder

            try:
                info = inspect_gguf(Path(cfg.model_path))
                embedder = open_embedder(
                    Path(cfg.model_path), threads=cfg.threads, gpu_layers=cfg.gpu_layers
                )
            except Exception as exc:
                # The window reports the model's problem; index the words meanwhile.
                log.info("Indexing without a model: %s", exc)
                info, embedder = None, None
        if quit_.is_set():
            return 0
        store = Store.open(Path(cfg.home), info, write=True)
        options: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in cfg.options.items()
        }
        indexer = Indexer(store, embedder, IndexOptions(**options))
        log.info("Indexing %s", ", ".join(cfg.roots))
        channel.send("started")

        def progress(p: Progress) -> None:
            channel.send("progress", progress=dataclasses.asdict(p))

        summary = indexer.run(
            cfg.roots, progress=Throttle(progress, PROGRESS_INTERVAL_S), control=control
        )
        log.info(
            "Indexing %s: %d read, %d unchanged, %d skipped in %.1f s",
            "stopped" if summary.stopped else "done",
            summary.indexed,
            summary.unchanged,
            len(summary.skipped),
            summary.seconds,
        )
        channel.send("finished", summary=dataclasses.asdict(summary))
        if quit_.is_set() or summary.stopped:
            return 0
        from sr3desk.index.watcher import Watcher

        watcher = Watcher(
            indexer,
            cfg.roots,
            on_update=lambda s: channel.send("updated", summary=dataclasses.asdict(s)),
            progress=Throttle(progress, PROGRESS_INTERVAL_S),
        )
        watcher.start()
        channel.send("watching")
        quit_.wait()
        return 0
    except Exception as exc:
        if not isinstance(exc, Sr3Error):
            log.exception("Indexing failed")
        channel.send("error", message=str(exc), user=isinstance(exc, Sr3Error))
        return 1
    finally:
        # Watcher first (it calls the indexer), then what the indexer used.
        for close in (
            watcher.stop if watcher else None,
            indexer.close if indexer else None,
            embedder.close if embedder else None,
            store.close if store else None,
        ):
            if close is None:
                continue
            try:
                close()
            except Exception:
                log.exception("Closing the index session failed")


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
        self.proc.setArguments(["-m", "sr3desk.gui.indexproc"])
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
            self.failed.emit(RuntimeError(f"the indexer stopped unexpectedly (exit code {code})"))
        self.watching.emit(False)
        self.ended.emit()

    @Slot(QProcess.ProcessError)
    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.failed.emit(RuntimeError(f"cannot start the indexer ({self.proc.errorString()})"))
            self.ended.emit()


def options_dict(options: IndexOptions) -> dict[str, Any]:
    """Return ``options`` as JSON-ready fields (tuples become lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()
    }


def main() -> int:
    """Entry point of the child process; exits without interpreter teardown."""
    code = serve(sys.stdin, sys.stdout)
    # Everything is committed and closed; skipping the teardown of LanceDB and
    # llama.cpp objects lets the window's close finish sooner.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
