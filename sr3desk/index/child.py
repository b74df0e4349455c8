"""Indexing in a child process: ``Indexer.run`` and then a ``Watcher``.

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

Run as ``python -m sr3desk.index.child``; the window's side is
:class:`sr3desk.gui.indexproc.IndexProcess`. Nothing here imports Qt.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sr3desk.errors import Sr3Error
from sr3desk.index.control import Control
from sr3desk.index.progress import Throttle
from sr3desk.index.types import IndexOptions, Progress, Summary

log = logging.getLogger(__name__)


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

    @property
    def index_options(self) -> IndexOptions:
        """``options`` as the indexer takes them (JSON lists back to tuples)."""
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in self.options.items()
        }
        return IndexOptions(**fields)


def options_dict(options: IndexOptions) -> dict[str, Any]:
    """Return ``options`` as JSON-ready fields (tuples become lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()
    }


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


class Channel:
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


def _follow_commands(stdin: IO[str], control: Control, quit_: threading.Event) -> None:
    """Apply the parent's commands until ``stop`` or the end of input."""
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


def serve(stdin: IO[str], stdout: IO[str]) -> int:
    """Run one indexing session as told on ``stdin``; returns the exit code."""
    cfg = SessionConfig(**json.loads(stdin.readline()))
    logging.basicConfig(level=cfg.log_level, format="%(levelname)s %(name)s[index]: %(message)s")
    channel = Channel(stdout)
    control = Control()
    quit_ = threading.Event()
    threading.Thread(
        target=_follow_commands, args=(stdin, control, quit_), name="commands", daemon=True
    ).start()
    try:
        with ExitStack() as stack:
            return _index_and_watch(cfg, channel, control, quit_, stack)
    except Exception as exc:
        if not isinstance(exc, Sr3Error):
            log.exception("Indexing failed")
        channel.send("error", message=str(exc), user=isinstance(exc, Sr3Error))
        return 1


def _index_and_watch(
    cfg: SessionConfig,
    channel: Channel,
    control: Control,
    quit_: threading.Event,
    stack: ExitStack,
) -> int:
    from sr3desk.index.session import ModelChoice, open_session
    from sr3desk.index.watcher import Watcher

    model = ModelChoice(
        Path(cfg.model_path) if cfg.model_path else None, cfg.threads, cfg.gpu_layers
    )
    session = stack.enter_context(
        open_session(
            Path(cfg.home),
            model,
            cfg.index_options,
            rebuild_roots=cfg.roots,
            keyword_fallback=True,  # the window reports the model's problem itself
        )
    )
    if quit_.is_set():
        return 0
    log.info("Indexing %s", ", ".join(cfg.roots))
    channel.send("started")

    def progress(p: Progress) -> None:
        channel.send("progress", progress=dataclasses.asdict(p))

    summary = session.indexer.run(cfg.roots, progress=Throttle(progress), control=control)
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
    watcher = Watcher(
        session.indexer,
        cfg.roots,
        on_update=lambda s: channel.send("updated", summary=dataclasses.asdict(s)),
        progress=Throttle(progress),
    )
    watcher.start()
    stack.callback(watcher.stop)  # closed first: it calls the indexer
    channel.send("watching")
    quit_.wait()
    return 0


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
