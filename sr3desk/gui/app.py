"""Starting and stopping the desktop app.

``run`` makes the QApplication (Fusion style, light/dark from the system,
HiDPI), hands over to an already running window for the same data directory
(single instance), shows the main window (and the welcome dialog on first
run), and on exit stops the engine within a bounded time: a worker still
inside a native call is abandoned, as the index survives that by design.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSocketNotifier, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from sr3desk.desktop.entry import APP_ID, APP_NAME
from sr3desk.gui import theme
from sr3desk.gui.mainwindow import MainWindow
from sr3desk.gui.single import SingleInstance, notify_running
from sr3desk.gui.tray import Tray, tray_available
from sr3desk.settings import Settings

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 0.8  # for the indexer to commit and exit before it is ended


def make_app(argv: list[str] | None = None) -> QApplication:
    """Return the QApplication, creating and styling it on first call."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    # argv[0] names the X11 WM_CLASS instance and the application name its class;
    # the desktop file name is the Wayland app id: all three are the menu entry's
    # (sr3desk.desktop, StartupWMClass), so the window groups with its launcher.
    app = QApplication(argv if argv is not None else [APP_ID])
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setDesktopFileName(APP_ID)
    theme.apply_style(app)
    app.setWindowIcon(theme.app_icon())
    return app


def preload() -> None:
    """Import the core's heavy modules (LanceDB, Arrow, llama.cpp) now.

    Imported later from a worker thread they would hold the interpreter for a
    second or more while the window is already on screen; imported before it
    appears they only delay its first paint.
    """
    import sr3desk.index.indexer
    import sr3desk.index.store
    import sr3desk.search

    try:
        import sr3desk.model.runtime  # noqa: F401
    except ImportError as exc:  # llama.cpp missing: keyword search still works
        log.warning("The model runtime cannot be loaded: %s", exc)


def create_window(home: Path, settings: Settings) -> MainWindow:
    """Build the main window over ``home`` with ``settings`` (not yet shown or started)."""
    return MainWindow(home, settings)


class SignalWaker:
    """Lets SIGINT/SIGTERM close ``window``: Python signal handlers only run when
    the interpreter gets control, so the signal also wakes the Qt event loop.

    The close is queued for the event loop, so a signal that comes while the window
    is still starting (before ``exec``) closes it once the loop runs, instead of
    closing a window not yet shown or quitting a loop not yet running, and being lost.
    :meth:`restore` puts the previous handlers back.
    """

    def __init__(self, window: MainWindow) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._write.fileno())
        self._notifier = QSocketNotifier(self._read.fileno(), QSocketNotifier.Type.Read, window)
        self._notifier.activated.connect(self._drain)
        self._window = window
        self._old = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }

    def _handle(self, signum: int, _frame: object) -> None:
        log.info("Signal %d: closing", signum)
        QTimer.singleShot(0, self._quit)

    def _quit(self) -> None:
        self._window.quit_app()
        # Ends the loop whatever else happens meanwhile; the last window's closing
        # alone would not, were a window shown again before its quit event came.
        QCoreApplication.quit()

    def _drain(self) -> None:
        # The byte only woke the loop; the handler has run already.
        with contextlib.suppress(OSError):
            self._read.recv(64)

    def restore(self) -> None:
        """Put back the signal handlers and wakeup fd found at construction."""
        for sig, old in self._old.items():
            signal.signal(sig, old)
        signal.set_wakeup_fd(self._old_fd)
        self._notifier.setEnabled(False)
        self._read.close()
        self._write.close()


def run(home: Path, model: str | None = None) -> int:
    """Run the app over data directory ``home``; ends the process when it closes.

    Returns (0) only when an instance for ``home`` already runs and was asked to
    come forward. ``model``: a GGUF to use in this session instead of the
    configured one.
    """
    app = make_app()
    if notify_running(home):
        log.info("sr3desk already runs for %s: raised its window", home)
        return 0
    single = SingleInstance(home)
    single.listen()
    preload()
    settings = Settings.load(home)
    if model:
        settings.model_path = str(Path(model).expanduser().resolve())
    window = create_window(home, settings)
    single.activated.connect(window.bring_forward)
    if tray_available():
        window.tray = Tray(window)
        window.tray.show()
    waker = SignalWaker(window)
    window.show()
    window.start()
    if not settings.first_run_done:
        window.show_welcome()
    code = app.exec()
    log.debug("Event loop ended; stopping the engine")
    waker.restore()
    single.close()
    clean = window.engine.shutdown(SHUTDOWN_TIMEOUT_S)
    log.debug("Engine stopped (%s)", "clean" if clean else "abandoning a worker")
    # Everything worth keeping is on disk now (settings, window state, the index's
    # commits). Tearing down the interpreter would only destroy Qt, LanceDB and
    # llama.cpp objects one by one (half a second and more), or wait for a worker
    # inside a long native call; neither may delay closing.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
