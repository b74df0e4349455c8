"""Background indexing: ``sr3desk watch --background`` started at login.

The service is an XDG autostart entry, ``$XDG_CONFIG_HOME/autostart/sr3desk-watch.desktop``
(default ``~/.config``), whose ``Exec`` runs this installation's ``sr3desk watch
--background --db HOME``. The watcher reads its folders, model and threads from the
settings of that data directory, lowers its own priority (:mod:`.priority`), and
writes its state to ``HOME/watch-status.json`` for the window
(:mod:`sr3desk.index.watchstatus`).

Why autostart rather than a systemd --user unit: the entry works on every desktop
that follows the freedesktop.org autostart spec, with or without a systemd user
session (GNOME and KDE on systemd turn it into a transient user unit themselves),
it starts with the graphical login where the user's folders are mounted, and it is
the same kind of file as the application entry, checked by the same
``desktop-file-validate``. The window starts the watcher at once when the setting
is turned on, so nobody has to log in again.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path

from sr3desk.desktop.entry import ICON_NAME, config_home, exec_line, launcher
from sr3desk.errors import Sr3Error

log = logging.getLogger(__name__)

AUTOSTART_ID = "sr3desk-watch"
LOG_FILE = "watch.log"  # in the data directory: what a watcher the window started printed


def autostart_path(config: Path | None = None) -> Path:
    """Return where the autostart entry goes under ``config`` (default: :func:`config_home`)."""
    return (config or config_home()) / "autostart" / f"{AUTOSTART_ID}.desktop"


def watcher_command(home: Path, command: list[str] | None = None) -> list[str]:
    """Return the command line of the background watcher for data directory ``home``;
    ``command`` (default: :func:`~sr3desk.desktop.entry.launcher`) runs sr3desk."""
    argv = command if command is not None else launcher()
    return [*argv, "watch", "--background", "--db", str(Path(home).resolve())]


def autostart_text(home: Path, command: list[str] | None = None) -> str:
    """Return the autostart entry's text for data directory ``home``."""
    argv = watcher_command(home, command)
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        "Name=sr3desk background indexing",
        "Comment=Keeps the folders sr3desk searches indexed while its window is closed",
        f"Exec={exec_line(argv)}",
        f"Icon={ICON_NAME}",
        "Terminal=false",
        "NoDisplay=true",
        "X-GNOME-Autostart-enabled=true",
    ]
    return "\n".join(lines) + "\n"


def install_autostart(home: Path, config: Path | None = None) -> Path:
    """Install (or bring up to date) the autostart entry for ``home``; returns its
    path. Raises Sr3Error naming the file when it cannot be written."""
    path = autostart_path(config)
    text = autostart_text(home)
    try:
        if path.exists() and path.read_text(encoding="utf-8") == text:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise Sr3Error(f"Cannot write {path}: {exc.strerror}") from exc
    log.info("Background indexing starts at login: %s", path)
    return path


def remove_autostart(config: Path | None = None) -> Path | None:
    """Remove the autostart entry; returns its path when there was one, else None."""
    path = autostart_path(config)
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Sr3Error(f"Cannot remove {path}: {exc.strerror}") from exc
    log.info("Background indexing no longer starts at login (removed %s)", path)
    return path


def spawn_watcher(home: Path) -> subprocess.Popen[bytes]:
    """Start the background watcher for ``home`` now, in a session of its own (it
    outlives the window); its output is appended to ``home/watch.log``. Returns
    the process."""
    argv = watcher_command(home)
    logfile = Path(home) / LOG_FILE
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    log.info("Started the background watcher (pid %d): %s", proc.pid, " ".join(argv))
    return proc


def signal_watcher(pid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to the watcher ``pid``; returns False when it is gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True
