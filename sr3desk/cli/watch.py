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
from contextlib import ExitStack
from types import FrameType
from typing import TYPE_CHECKING

from sr3desk.cli import add_db_argument, add_model_argument
from sr3desk.cli.index import (
    ProgressBar,
    add_index_options,
    check_paths,
    graceful_interrupt,
    open_embedder_for,
    open_model,
    remember,
    write_summary,
)
from sr3desk.index.types import Summary

if TYPE_CHECKING:
    from sr3desk.model.base import Embedder


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
    from sr3desk.index.indexer import Control, Indexer
    from sr3desk.index.store import Store
    from sr3desk.index.watcher import Watcher
    from sr3desk.settings import data_dir

    paths = check_paths(args.paths)
    home = data_dir(args.db)
    options = remember(home, paths, args.exclude)
    info = open_model(home, args.model)
    control = Control()
    with ExitStack() as stack:
        store = stack.enter_context(Store.open(home, info, write=True))
        embedder: Embedder | None = None
        if info is not None:
            embedder = open_embedder_for(home, info)
            stack.callback(embedder.close)
        indexer = stack.enter_context(Indexer(store, embedder, options))
        bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
        with graceful_interrupt(control):
            summary = indexer.run(paths, bar, control)
        if bar is not None:
            bar.clear()
        write_summary(summary, sys.stdout, pending=0, keyword_only=info is None)
        if summary.stopped:
            return 0

        def report(s: Summary) -> None:
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

        done = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            done.set()

        old_int = signal.signal(signal.SIGINT, on_signal)
        old_term = signal.signal(signal.SIGTERM, on_signal)
        watcher = Watcher(indexer, paths, debounce_s=args.debounce, on_update=report)
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
    return 0
