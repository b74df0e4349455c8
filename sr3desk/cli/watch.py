"""``sr3desk watch PATH...``: index, then keep the index current until Ctrl-C.

Changes are coalesced (a burst of saves to one file reads and embeds it once);
one line is printed per update. Ctrl-C (or SIGTERM) stops cleanly: the update in
progress commits what it finished, the watches are removed, exit code 0.

``--background`` is the background service (:mod:`sr3desk.desktop.autostart`):
the folders come from the settings, the process lowers its priority first, and
while another writer holds the index it waits instead of failing.

Every watcher writes its state to ``<home>/watch-status.json``
(:mod:`sr3desk.index.watchstatus`), where the window follows it, and takes
signals: ``SIGUSR1`` pauses, ``SIGUSR2`` resumes, ``SIGHUP`` looks for changes
now. One watcher per data directory (``<home>/watch.lock``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from sr3desk.cli import add_db_argument, add_model_argument
from sr3desk.cli.index import ProgressBar, add_index_options, check_paths, write_summary
from sr3desk.errors import IndexAccessError, Sr3Error
from sr3desk.index.types import Progress, Summary

if TYPE_CHECKING:
    from sr3desk.index.control import Control
    from sr3desk.index.session import IndexSession
    from sr3desk.index.watcher import Watcher
    from sr3desk.index.watchstatus import StatusWriter

log = logging.getLogger(__name__)

LOCK_RETRY_S = 2.0  # how often a background watcher asks again for a busy index lock
# Signals and the requests they stand for; the handler only queues the request.
REQUESTS = {
    signal.SIGINT: "stop",
    signal.SIGTERM: "stop",
    signal.SIGUSR1: "pause",
    signal.SIGUSR2: "resume",
    signal.SIGHUP: "rescan",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``watch`` subcommand."""
    p = sub.add_parser(
        "watch",
        help="index folders, then keep the index current until Ctrl-C",
        description="Index the folders, then watch them and update the index as files "
        "change. Stop with Ctrl-C.",
    )
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="folders to watch (--background: the settings')"
    )
    add_db_argument(p)
    add_model_argument(p)
    add_index_options(p)
    p.add_argument(
        "--debounce",
        type=float,
        default=0.5,
        metavar="S",
        help="wait until changes have settled for S seconds (default 0.5)",
    )
    p.add_argument(
        "--background",
        action="store_true",
        help="run as the background service: the settings' folders, low priority (nice, "
        "idle I/O), wait while another indexer writes, quiet when one already watches",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Index, then watch until interrupted; returns the exit code."""
    from sr3desk.index.lock import WriterLock
    from sr3desk.index.watchstatus import WATCH_LOCK
    from sr3desk.settings import Settings, data_dir

    if args.background:
        from sr3desk.desktop.priority import lower_priority

        lower_priority()  # first, so that every thread and child inherits it
    home = data_dir(args.db)
    if args.paths:
        paths = check_paths(args.paths)
    elif args.background:
        paths = [f for f in Settings.load(home).folders if os.path.isdir(f)]
        if not paths:
            sys.stdout.write(f"No folders to watch in the settings of {home}.\n")
            return 0
    else:
        raise Sr3Error("Name at least one folder to watch (or use --background)")
    guard = WriterLock(home, WATCH_LOCK, holder="sr3desk watch")
    try:
        guard.acquire()
    except IndexAccessError:
        if args.background:  # the service is up already: nothing to do
            sys.stdout.write(f"Background indexing already runs for {home}.\n")
            return 0
        raise
    try:
        return WatchRun(args, home, paths).run()
    finally:
        guard.release()


class WatchRun:
    """One watcher's life: the folder scan, then the watches, in a worker thread;
    the main thread applies the signals' requests and keeps the status file."""

    def __init__(self, args: argparse.Namespace, home: Path, paths: list[str]) -> None:
        from sr3desk.index.control import Control
        from sr3desk.index.watchstatus import StatusWriter

        self.args = args
        self.home = home
        self.paths = paths
        self.control: Control = Control()
        self.status: StatusWriter = StatusWriter(home, paths, background=args.background)
        self.requests: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.done = threading.Event()
        self.watcher: Watcher | None = None
        self.error: BaseException | None = None

    def run(self) -> int:
        """Run until stopped; returns the exit code (raises the worker's error)."""
        old = {sig: signal.signal(sig, self._on_signal) for sig in REQUESTS}
        worker = threading.Thread(target=self._work, name="sr3desk-watch-main", daemon=True)
        try:
            worker.start()
            stops = 0
            while worker.is_alive():
                try:
                    request = self.requests.get(timeout=0.5)
                except queue.Empty:
                    continue
                if request == "stop":
                    stops += 1
                    if stops > 1:
                        raise KeyboardInterrupt  # a second Ctrl-C: stop at once (safe)
                    if self.watcher is None:
                        sys.stderr.write(
                            "\nstopping after the current step (Ctrl-C again to abort)...\n"
                        )
                    self.stop()
                elif request in ("pause", "resume"):
                    self.pause(request == "pause")
                elif request == "rescan" and self.watcher is not None:
                    self.watcher.mark(self.watcher.roots)
            worker.join()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        if self.error is not None:
            raise self.error
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.requests.put(REQUESTS[signal.Signals(signum)])  # SimpleQueue.put is reentrant

    def stop(self) -> None:
        """Stop the scan at its next check point, or the watches."""
        self.control.stop()
        self.done.set()

    def pause(self, paused: bool) -> None:
        """Pause (or resume) the scan and the watcher's updates."""
        if paused:
            self.control.pause()
        else:
            self.control.resume()
        watcher = self.watcher
        if watcher is not None:
            watcher.pause(paused)
        self.status.set_paused(paused)
        log.info("Indexing %s", "paused" if paused else "resumed")

    def _work(self) -> None:
        from sr3desk.index import watchstatus

        try:
            self._index_and_watch()
        except BaseException as exc:
            if not isinstance(exc, Sr3Error):
                log.exception("Watching failed")
            self.error = exc
            self.status.transition(watchstatus.FAILED, str(exc))
        else:
            self.status.transition(watchstatus.STOPPED)

    def _index_and_watch(self) -> None:
        from sr3desk.index import watchstatus
        from sr3desk.index.watcher import Watcher

        with contextlib.ExitStack() as stack:
            session = self._open_session(stack)
            if session is None or self.done.is_set():
                return
            self.status.transition(watchstatus.INDEXING)
            bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None

            def progress(p: Progress) -> None:
                if bar is not None:
                    bar(p)
                self.status.progress(p)

            summary = session.indexer.run(self.paths, progress, self.control)
            if bar is not None:
                bar.clear()
            write_summary(summary, sys.stdout, pending=0, keyword_only=session.keyword_only)
            sys.stdout.flush()
            self.status.scanned(summary)
            if summary.stopped or self.done.is_set():
                return
            watcher = Watcher(
                session.indexer,
                self.paths,
                debounce_s=self.args.debounce,
                on_update=self._updated,
                progress=self.status.progress,
            )
            watcher.start()
            self.watcher = watcher
            if self.control.paused:  # paused during the scan: stay paused
                watcher.pause(True)
            self.status.transition(watchstatus.WATCHING)
            sys.stdout.write("Watching for changes; press Ctrl-C to stop.\n")
            sys.stdout.flush()
            self.done.wait()
            sys.stdout.write("Stopping...\n")
            sys.stdout.flush()
            watcher.stop()
            sys.stdout.write("Stopped watching.\n")
            sys.stdout.flush()

    def _open_session(self, stack: contextlib.ExitStack) -> IndexSession | None:
        """Open the index for writing; a background watcher waits while another
        writer holds it. Returns None when stopped while waiting."""
        from sr3desk.cli.index import open_index_session
        from sr3desk.index import watchstatus

        while True:
            try:
                return stack.enter_context(open_index_session(self.args, self.paths))
            except IndexAccessError as exc:
                if not self.args.background:
                    raise
                # Another writer (the window's indexer, `sr3desk index`): wait for it.
                if self.status.state != watchstatus.WAITING:
                    log.info("%s; waiting", exc)
                self.status.transition(watchstatus.WAITING, str(exc))
                if self.done.wait(LOCK_RETRY_S):
                    return None

    def _updated(self, s: Summary) -> None:
        report(s)
        self.status.updated(s)


def report(s: Summary) -> None:
    """Print one line for an update that changed something (and its skipped files)."""
    changed = s.indexed + s.removed + s.renamed + len(s.skipped)
    if not changed:
        return
    sys.stdout.write(
        f"Updated: {s.indexed} read, {s.renamed} renamed, {s.removed} removed, "
        f"{len(s.skipped)} skipped, {s.chunks_embedded} chunks embedded\n"
    )
    for path, reason in s.skipped:
        sys.stdout.write(f"  skipped {path}: {reason}\n")
    sys.stdout.flush()


__all__ = ["WatchRun", "register", "report", "run"]
