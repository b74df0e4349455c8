"""The tray icon, where the desktop has a tray: indexing state and progress,
Pause/Resume, open the window, quit.

While background indexing is on, closing the window hides it here instead of
ending the app (:meth:`sr3desk.gui.mainwindow.MainWindow.closeEvent`); the first
time, the icon says so in a notification.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from sr3desk.gui import theme
from sr3desk.gui.status import describe_progress, format_count
from sr3desk.index.types import PHASE_DONE, Progress

if TYPE_CHECKING:
    from sr3desk.gui.mainwindow import MainWindow


def tray_available() -> bool:
    """True when the desktop shows tray icons (a status notifier or an XEmbed tray)."""
    return QSystemTrayIcon.isSystemTrayAvailable()


class Tray(QObject):
    """The tray icon of ``window``: its menu and tooltip follow the window's engine."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.engine = window.engine
        self.icon = QSystemTrayIcon(theme.app_icon(), self)
        self.menu = QMenu(window)
        self.menu.setAccessibleName("sr3desk tray menu")
        self.state_action = QAction("sr3desk", self)
        self.state_action.setEnabled(False)
        self.pause_action = QAction("Pause indexing", self)
        self.pause_action.triggered.connect(self.toggle_pause)
        self.open_action = QAction("Open sr3desk", self)
        self.open_action.triggered.connect(window.bring_forward)
        self.quit_action = QAction("Quit", self)
        self.quit_action.triggered.connect(window.quit_app)
        self.menu.addAction(self.state_action)
        self.menu.addSeparator()
        self.menu.addAction(self.pause_action)
        self.menu.addAction(self.open_action)
        self.menu.addSeparator()
        self.menu.addAction(self.quit_action)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self._progress: Progress | None = None
        self._waiting = ""
        e = self.engine
        e.progress.connect(self._on_progress)
        e.waiting.connect(self._on_waiting)
        for sig in (e.watching, e.indexing_finished, e.status_changed, e.index_ended):
            sig.connect(lambda *_: self.refresh())
        self.refresh()

    def show(self) -> None:
        """Put the icon in the tray."""
        self.icon.show()

    def state_text(self) -> str:
        """The indexing state in one line: progress, paused, waiting, or at rest."""
        e = self.engine
        running = e.run is not None and e.run.alive
        p = self._progress
        if running and e.paused:
            return "Indexing paused"
        if running and self._waiting:
            return f"Waiting: {self._waiting}"
        if running and p is not None and p.phase != PHASE_DONE:
            return describe_progress(p)
        status = e.last_status
        files = f"{format_count(status.files)} files indexed" if status is not None else ""
        if e.following is not None:
            where = "kept current in the background"
            return f"{files}, {where}" if files else f"Index {where}"
        if running:
            return f"{files}, watching your folders" if files else "Watching your folders"
        return files or "Not indexing"

    def refresh(self) -> None:
        """Update the tooltip, the state line and the Pause/Resume item."""
        text = self.state_text()
        self.state_action.setText(text)
        self.icon.setToolTip(f"sr3desk: {text}")
        running = self.engine.run is not None and self.engine.run.alive
        self.pause_action.setEnabled(running)
        self.pause_action.setText("Resume indexing" if self.engine.paused else "Pause indexing")

    def toggle_pause(self) -> None:
        """Pause indexing, or resume it when paused."""
        self.window.set_paused(not self.engine.paused)
        self.refresh()

    def notify(self, text: str) -> None:
        """Show ``text`` as the tray icon's notification."""
        self.icon.showMessage("sr3desk", text, theme.app_icon(), 8000)

    def _on_progress(self, p: Progress) -> None:
        self._progress = p
        self._waiting = ""
        self.refresh()

    def _on_waiting(self, why: str) -> None:
        self._waiting = why
        self.refresh()

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.window.bring_forward()
