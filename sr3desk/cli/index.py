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
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

from sr3desk.cli import add_db_argument, add_model_argument
from sr3desk.errors import Sr3Error

if TYPE_CHECKING:
    from sr3desk.index.indexer import Control
    from sr3desk.index.session import IndexSession
    from sr3desk.index.types import Progress, Summary
    from sr3desk.settings import Settings

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


def remember(home: Path, paths: Sequence[str], exclude: Sequence[str]) -> Settings:
    """Add folders and globs to the settings in ``home``; returns the settings."""
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
    return settings


def open_index_session(
    args: argparse.Namespace, paths: Sequence[str]
) -> contextlib.AbstractContextManager[IndexSession]:
    """Open the index session ``index`` and ``watch`` run: the paths and globs
    remembered in the settings, the model of ``--model`` (else ``$SR3DESK_MODEL``,
    else the settings') with the settings' threads and GPU layers, the options
    of the settings with ``--max-mb`` on top."""
    from sr3desk.index.session import ModelChoice, open_session, options_for
    from sr3desk.settings import data_dir, resolve_model_path

    home = data_dir(args.db)
    settings = remember(home, paths, args.exclude)
    if args.max_mb is not None and args.max_mb <= 0:
        raise Sr3Error("--max-mb must be positive")
    options = options_for(settings, max_mb=args.max_mb)
    model = ModelChoice(resolve_model_path(args.model, home), settings.threads, settings.gpu_layers)
    return open_session(home, model, options, rebuild_roots=settings.folders)


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
    from sr3desk.index.indexer import Control

    paths = check_paths(args.paths)
    control = Control()
    with open_index_session(args, paths) as session:
        summary = index_with_progress(session, paths, control)
        status = session.store.status()
        write_summary(
            summary, sys.stdout, pending=status.pending, keyword_only=session.keyword_only
        )
        if session.store.building:
            sys.stdout.write(
                "The index is being rebuilt for the new model; the previous one serves "
                "searches until it is complete (run the command again to continue).\n"
            )
    return 0


def index_with_progress(session: IndexSession, paths: Sequence[str], control: Control) -> Summary:
    """Run the indexer over ``paths``, drawing a progress line on a terminal;
    the first Ctrl-C stops it at its next check point."""
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    with graceful_interrupt(control):
        summary = session.indexer.run(paths, bar, control)
    if bar is not None:
        bar.clear()
    return summary


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
    if summary.ocr_pages:
        rate = summary.ocr_pages / summary.ocr_seconds if summary.ocr_seconds > 0 else 0.0
        out.write(f"Read {summary.ocr_pages} scanned pages by OCR ({rate:.2f} pages/s).\n")
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
    """Draws the indexer's progress as one self-updating line on a terminal stream."""

    WIDTH = 24

    def __init__(self, stream: IO[str]) -> None:
        from sr3desk.cli.terminal import TerminalLine
        from sr3desk.index.progress import Throttle

        self.line = TerminalLine(stream)
        self._paced = Throttle(lambda p: self.line.draw(self.render(p)))

    def __call__(self, p: Progress) -> None:
        self._paced(p)

    @classmethod
    def render(cls, p: Progress) -> str:
        """The text of the line for ``p``."""
        if p.phase == "extract" and p.files_total:
            done, total, what = p.files_done, p.files_total, "files read"
        elif p.phase == "embed" and p.chunks_total:
            done, total, what = p.chunks_embedded, p.chunks_total, "chunks embedded"
        elif p.phase == "upgrade" and p.chunks_total:
            done, total, what = (
                p.chunks_embedded,
                p.chunks_total,
                "vectors carried into the new index layout",
            )
        else:
            label = {
                "upgrade": "upgrading the index layout",
                "scan": "scanning",
                "optimize": "optimizing",
                "done": "done",
            }
            return f"{label.get(p.phase, p.phase)}..."
        frac = done / total if total else 1.0
        filled = int(frac * cls.WIDTH)
        bar = "#" * filled + "." * (cls.WIDTH - filled)
        parts = [f"[{bar}] {frac * 100:3.0f}% {done}/{total} {what}"]
        if p.tokens_per_s:
            parts.append(f"{p.tokens_per_s:.0f} tok/s")
        if p.ocr_pages:
            parts.append(f"OCR {p.ocr_pages} pages, {p.ocr_pages_per_s:.2f} pages/s")
        if p.eta_s is not None:
            parts.append(f"ETA {_duration(p.eta_s)}")
        if p.paused:
            parts.append("paused")
        if p.current:
            parts.append(os.path.basename(p.current))
        return "  ".join(parts)

    def clear(self) -> None:
        """Erase the line (before the summary is printed)."""
        self.line.clear()
