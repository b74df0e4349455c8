"""``sr3desk watch PATH...``: index, then keep the index current until Ctrl-C.

Changes are coalesced (a burst of saves to one file reads and embeds it once);
one line is printed per update. Ctrl-C (or SIGTERM) stops cleanly: the update in
progress commits what it finished, the watches are removed, exit code 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

from sr3desk.cli import add_db_argument, add_model_argument
from sr3desk.cli.index import (
    add_index_options,
    check_paths,
    index_with_progress,
    open_index_session,
    write_summary,
)
from sr3desk.index.types import Summary

if TYPE_CHECKING:
    from sr3desk.index.indexer import Indexer


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``watch`` subcommand."""
    p = sub.add_parser(
        "watch",
        help="index folders, then keep the index current until Ctrl-C",
        description="Index the folders, then watch them and update the index as files "
        "change. Stop with Ctrl-C.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="folders to watch")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Index, then watch until interrupted; returns the exit code."""
    from sr3desk.index.indexer import Control

    paths = check_paths(args.paths)
    with open_index_session(args, paths) as session:
        summary = index_with_progress(session, paths, Control())
        write_summary(summary, sys.stdout, pending=0, keyword_only=session.keyword_only)
        if not summary.stopped:
            watch(session.indexer, paths, args.debounce)
    return 0


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


def watch(indexer: Indexer, paths: list[str], debounce_s: float) -> None:
    """Follow changes under ``paths`` until SIGINT or SIGTERM."""
    from sr3desk.index.watcher import Watcher

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    watcher = Watcher(indexer, paths, debounce_s=debounce_s, on_update=report)
    try:
        watcher.start()
        sys.stdout.write("Watching for changes; press Ctrl-C to stop.\n")
        sys.stdout.flush()
        while not done.wait(0.5):
            pass
    finally:
        sys.stdout.write("Stopping...\n")
        sys.stdout.flush()
        watcher.stop()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    sys.stdout.write("Stopped watching.\n")
