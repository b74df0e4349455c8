"""``sr3desk desktop install|uninstall``: the applications menu entry and its icon.

``install`` writes the entry (``Exec``: this installation's ``sr3desk``, absolute)
and the icons into ``$XDG_DATA_HOME`` (:mod:`sr3desk.desktop.entry`); ``make run``
runs it. ``uninstall`` removes every file ``install`` wrote, and background
indexing's autostart entry too (turning that setting off and stopping the
background watcher of the data directory), listing what it removed.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from sr3desk.cli import add_db_argument


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``desktop`` subcommand."""
    p = sub.add_parser(
        "desktop",
        help="install or remove the applications menu entry and icon",
        description="Install sr3desk in the desktop's applications menu (for you alone, "
        "no root), or remove every file that put there, background indexing's too.",
    )
    p.add_argument("action", choices=("install", "uninstall"))
    add_db_argument(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Install or uninstall; returns the exit code."""
    from sr3desk.desktop import entry

    if args.action == "install":
        written = entry.install()
        if not args.quiet:
            sys.stdout.write(
                f"Installed {entry.entry_path()} (runs {entry.launcher()[0]}) and "
                f"{len(written) - 1} icon files under {entry.data_home() / 'icons/hicolor'}.\n"
            )
        return 0
    removed = entry.uninstall()
    removed += _background_off(args)
    if not args.quiet:
        for path in removed:
            sys.stdout.write(f"Removed {path}\n")
        if not removed:
            sys.stdout.write("Nothing to remove: sr3desk is not installed in the menu.\n")
    return 0


def _background_off(args: argparse.Namespace) -> list[Path]:
    """Remove the autostart entry, turn the setting off and stop the background
    watcher of the data directory; returns the files removed."""
    from sr3desk.desktop.autostart import remove_autostart, signal_watcher
    from sr3desk.index.watchstatus import live_status
    from sr3desk.settings import Settings, data_dir

    removed: list[Path] = []
    path = remove_autostart()
    if path is not None:
        removed.append(path)
    home = data_dir(args.db, create=False)
    if (home / "settings.json").exists():
        settings = Settings.load(home)
        if settings.background_indexing:
            settings.background_indexing = False
            settings.save(home)
    status = live_status(home)
    if status is not None and status.background:
        signal_watcher(status.pid, signal.SIGTERM)
        sys.stdout.write(f"Stopped background indexing (pid {status.pid}).\n")
    return removed
