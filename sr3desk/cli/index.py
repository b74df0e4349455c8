"""``sr3desk index PATH...``: index folders (or files) incrementally.

Unchanged files are not read again, renamed ones are re-pathed, deleted ones
dropped. A progress bar is drawn on stderr when it is a terminal; a summary is
printed at the end. Files that cannot be read are listed with the reason and do
not change the exit code (0). The first Ctrl-C stops after committing what is
done (run the command again to go on); a second one stops at once, which is
safe too. Indexed folders are remembered in the settings.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

from sr3desk.cli import add_db_argument, add_model_argument
from sr3desk.errors import Sr3Error

if TYPE_CHECKING:
    from sr3desk.index.indexer import Control
    from sr3desk.index.types import IndexOptions, Progress, Summary
    from sr3desk.model.base import Embedder
    from sr3desk.model.ggufinfo import ModelInfo

SHOW_SKIPPED = 20  # skipped files listed in the summary; the rest: `sr3desk status`


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``index`` subcommand."""
    p = sub.add_parser(
        "index",
        help="index folders or files (incrementally)",
        description="Index folders or files. Unchanged files are skipped; run it again "
        "to update the index or to resume an interrupted run.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="folders or files to index")
    add_db_argument(p)
    add_model_argument(p)
    add_index_options(p)
    p.set_defaults(func=run)


def add_index_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``index`` and ``watch``."""
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out files or folders matching GLOB, e.g. '*.log' or 'drafts/**' "
        "(repeatable; remembered with the folders' settings)",
    )
    p.add_argument(
        "--max-mb",
        type=float,
        metavar="MB",
        help="skip files larger than MB megabytes (default: the settings' value, 64)",
    )


def check_paths(paths: Sequence[str]) -> list[str]:
    """Absolute paths of ``paths``; Sr3Error naming the first that does not exist."""
    out = []
    for raw in paths:
        path = os.path.abspath(os.path.expanduser(raw))
        if not os.path.exists(path):
            raise Sr3Error(f"Cannot index {raw}: no such file or folder")
        out.append(path)
    return out


def remember(home: Path, paths: Sequence[str], exclude: Sequence[str]) -> IndexOptions:
    """Add folders and globs to the settings; returns the indexing options."""
    from sr3desk.index.types import IndexOptions
    from sr3desk.settings import Settings

    settings = Settings.load(home)
    changed = False
    for path in paths:
        if os.path.isdir(path) and path not in settings.folders:
            settings.folders.append(path)
            changed = True
    for glob in exclude:
        if glob not in settings.exclude:
            settings.exclude.append(glob)
            changed = True
    if changed:
        settings.save(home)
    return IndexOptions(
        exclude=tuple(settings.exclude),
        max_file_bytes=int(settings.max_file_mb * 1024 * 1024),
    )


def open_model(home: Path, explicit: str | None) -> ModelInfo | None:
    """The model to index with (``--model``, ``$SR3DESK_MODEL``, settings) or None."""
    from sr3desk.model.ggufinfo import inspect_gguf
    from sr3desk.settings import resolve_model_path

    path = resolve_model_path(explicit, home)
    return inspect_gguf(path) if path is not None else None


def open_embedder_for(home: Path, info: ModelInfo) -> Embedder:
    """Load ``info``'s model with the thread and GPU settings."""
    from sr3desk.model.runtime import open_embedder
    from sr3desk.settings import Settings

    settings = Settings.load(home)
    return open_embedder(info.path, threads=settings.threads, gpu_layers=settings.gpu_layers)


@contextlib.contextmanager
def graceful_interrupt(control: Control) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop ``control`` at its next check point; second: abort."""
    hits = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal hits
        hits += 1
        if hits > 1:
            raise KeyboardInterrupt
        sys.stderr.write("\nstopping after the current step (Ctrl-C again to abort)...\n")
        control.stop()

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def run(args: argparse.Namespace) -> int:
    """Index the paths and print a summary; returns the exit code."""
    from sr3desk.index.indexer import Control, Indexer
    from sr3desk.index.store import Store
    from sr3desk.settings import data_dir

    paths = check_paths(args.paths)
    home = data_dir(args.db)
    options = remember(home, paths, args.exclude)
    if args.max_mb is not None:
        if args.max_mb <= 0:
            raise Sr3Error("--max-mb must be positive")
        options = _with_max(options, args.max_mb)
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
        status = store.status()
        write_summary(summary, sys.stdout, pending=status.pending, keyword_only=info is None)
        if store.building:
            sys.stdout.write(
                "The index is being rebuilt for the new model; the previous one serves "
                "searches until it is complete (run the command again to continue).\n"
            )
    return 0


def _with_max(options: IndexOptions, max_mb: float) -> IndexOptions:
    from dataclasses import replace

    return replace(options, max_file_bytes=int(max_mb * 1024 * 1024))


def write_summary(
    summary: Summary, out: IO[str], pending: int = 0, keyword_only: bool = False
) -> None:
    """Write what a run did, and the files it skipped, in a few lines."""
    files = f"{summary.indexed} file{'s' if summary.indexed != 1 else ''}"
    out.write(
        f"Indexed {files} ({summary.chunks_added} chunks, {summary.chunks_embedded} embedded) "
        f"in {_duration(summary.seconds)}: {summary.unchanged} unchanged, "
        f"{summary.renamed} renamed, {summary.removed} removed, "
        f"{len(summary.skipped)} skipped.\n"
    )
    if summary.stopped:
        out.write("Stopped early; run the same command again to finish.\n")
    if pending:
        why = " (no model set: keyword search works now)" if keyword_only else ""
        out.write(f"{pending} chunks wait for their vectors{why}.\n")
    if summary.skipped:
        out.write("Skipped:\n")
        for path, reason in summary.skipped[:SHOW_SKIPPED]:
            out.write(f"  {path}: {reason}\n")
        if len(summary.skipped) > SHOW_SKIPPED:
            more = len(summary.skipped) - SHOW_SKIPPED
            out.write(f"  ... and {more} more (see `sr3desk status`)\n")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressBar:
    """Draws one self-updating line of progress on a terminal stream."""

    WIDTH = 24

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._last = 0.0
        self._shown = False

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and p.phase not in ("done",):
            return
        self._last = now
        line = self.render(p)
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            columns = 100
        self.stream.write("\r" + line[: columns - 1].ljust(columns - 1))
        self.stream.flush()
        self._shown = True

    @classmethod
    def render(cls, p: Progress) -> str:
        """The text of the line for ``p``."""
        if p.phase == "extract" and p.files_total:
            done, total, what = p.files_done, p.files_total, "files read"
        elif p.phase == "embed" and p.chunks_total:
            done, total, what = p.chunks_embedded, p.chunks_total, "chunks embedded"
        else:
            label = {"scan": "scanning", "optimize": "optimizing", "done": "done"}
            return f"{label.get(p.phase, p.phase)}..."
        frac = done / total if total else 1.0
        filled = int(frac * cls.WIDTH)
        bar = "#" * filled + "." * (cls.WIDTH - filled)
        parts = [f"[{bar}] {frac * 100:3.0f}% {done}/{total} {what}"]
        if p.tokens_per_s:
            parts.append(f"{p.tokens_per_s:.0f} tok/s")
        if p.eta_s is not None:
            parts.append(f"ETA {_duration(p.eta_s)}")
        if p.paused:
            parts.append("paused")
        if p.current:
            parts.append(os.path.basename(p.current))
        return "  ".join(parts)

    def clear(self) -> None:
        """Erase the line (before the summary is printed)."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
