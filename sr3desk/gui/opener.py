"""Open a result in the user's default application, show it in its folder, copy its path.

Opening at a page: there is no portable way to ask "the default PDF viewer" for
a page. On Linux the default PDF application is looked up with ``xdg-mime`` and,
when it is one whose command line takes a page (Evince, Okular, Zathura, ...),
started with it. Everywhere else (macOS Preview, Windows, unknown viewers) the
file opens at its start through ``QDesktopServices`` and the caller is told so,
so the status bar can say which page the passage is on.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QUrl
from PySide6.QtDBus import QDBusConnection, QDBusMessage, QDBusPendingCallWatcher
from PySide6.QtGui import QDesktopServices, QGuiApplication

log = logging.getLogger(__name__)

# Desktop-file id fragment -> how its executable takes a 1-based page number.
# "{n}" is the page, "{path}" the file; from each viewer's --help / man page.
PAGE_ARGS: dict[str, tuple[str, list[str]]] = {
    "evince": ("evince", ["--page-index={n}", "{path}"]),
    "papers": ("papers", ["--page-index={n}", "{path}"]),
    "atril": ("atril", ["--page-index={n}", "{path}"]),
    "xreader": ("xreader", ["--page-index={n}", "{path}"]),
    "okular": ("okular", ["--page", "{n}", "{path}"]),
    "zathura": ("zathura", ["--page={n}", "{path}"]),
    "qpdfview": ("qpdfview", ["{path}#{n}"]),
    "mupdf": ("mupdf", ["{path}", "{n}"]),
    "xpdf": ("xpdf", ["{path}", "{n}"]),
    # Browsers' PDF viewers (pdf.js, Chromium's) read the #page= fragment.
    "firefox": ("firefox", ["{url}#page={n}"]),
    "chromium": ("chromium", ["{url}#page={n}"]),
    "google-chrome": ("google-chrome", ["{url}#page={n}"]),
}


@dataclass(frozen=True)
class OpenPlan:
    """How to open a file: a command (program, args) or the default handler (None).

    ``at_page`` is true when the command jumps to the page asked for.
    """

    program: str | None
    args: list[str]
    at_page: bool


def default_pdf_app() -> str | None:
    """Return the desktop-file id of the default PDF application (Linux), or None.

    Runs ``xdg-mime`` (a short subprocess): call it from a worker thread.
    """
    if not sys.platform.startswith("linux") or shutil.which("xdg-mime") is None:
        return None
    try:
        out = subprocess.run(
            ["xdg-mime", "query", "default", "application/pdf"],
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("Cannot ask xdg-mime for the PDF viewer: %s", exc)
        return None
    return out.stdout.strip() or None


def plan_open(path: str, page: int | None, desktop_id: str | None) -> OpenPlan:
    """Decide how to open ``path`` at ``page`` given the default PDF app's desktop id.

    Pure (no I/O besides looking up the viewer's executable on PATH).
    """
    if page is None or not path.lower().endswith(".pdf") or not desktop_id:
        return OpenPlan(None, [], False)
    key = desktop_id.lower()
    for fragment, (exe, template) in PAGE_ARGS.items():
        if fragment in key:
            program = shutil.which(exe)
            if program is None:
                break
            url = QUrl.fromLocalFile(path).toString()
            args = [a.format(n=page, path=path, url=url) for a in template]
            return OpenPlan(program, args, True)
    return OpenPlan(None, [], False)


def execute(plan: OpenPlan, path: str) -> bool:
    """Start the viewer of ``plan`` (detached) or the default handler; returns success."""
    if plan.program is not None:
        ok, _pid = QProcess.startDetached(plan.program, plan.args)
        if ok:
            return True
        log.info("Cannot start %s; opening with the default application", plan.program)
    return QDesktopServices.openUrl(QUrl.fromLocalFile(path))


def show_in_folder(path: str, parent: QObject) -> None:
    """Reveal ``path`` in the file manager, selected where the platform allows.

    Linux: the freedesktop FileManager1 D-Bus call, sent asynchronously (the
    folder itself opens when no file manager answers); macOS: ``open -R``;
    Windows: ``explorer /select``. ``parent`` owns the pending D-Bus call.
    """
    if sys.platform == "darwin":
        QProcess.startDetached("open", ["-R", path])
        return
    if sys.platform == "win32":
        QProcess.startDetached("explorer", ["/select,", str(Path(path))])
        return
    folder_url = QUrl.fromLocalFile(str(Path(path).parent))
    bus = QDBusConnection.sessionBus()
    if not bus.isConnected():
        QDesktopServices.openUrl(folder_url)
        return
    msg = QDBusMessage.createMethodCall(
        "org.freedesktop.FileManager1",
        "/org/freedesktop/FileManager1",
        "org.freedesktop.FileManager1",
        "ShowItems",
    )
    msg.setArguments([[QUrl.fromLocalFile(path).toString()], ""])
    watcher = QDBusPendingCallWatcher(bus.asyncCall(msg, 3000), parent)

    def finished(w: QDBusPendingCallWatcher) -> None:
        if w.isError():
            log.info("No file manager answered ShowItems (%s)", w.error().message())
            QDesktopServices.openUrl(folder_url)
        w.deleteLater()

    watcher.finished.connect(finished)


def copy_path(path: str) -> None:
    """Put ``path`` on the clipboard (and the X11 selection where there is one)."""
    clipboard = QGuiApplication.clipboard()
    clipboard.setText(path)
    if clipboard.supportsSelection():
        clipboard.setText(path, clipboard.Mode.Selection)
