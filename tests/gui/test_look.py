"""Accessible names, light and dark schemes, HiDPI-independent drawing."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QApplication,
    QComboBox,
    QLineEdit,
    QTextEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from sr3desk.gui import theme
from sr3desk.gui.app import create_window
from sr3desk.gui.mainwindow import MainWindow
from sr3desk.gui.settings_dialog import SettingsDialog
from sr3desk.settings import Settings

INTERACTIVE = (QAbstractButton, QLineEdit, QComboBox, QAbstractItemView, QTextEdit)


def unnamed(root: QWidget) -> list[str]:
    """Interactive widgets under ``root`` without an accessible name (or a label)."""
    out = []
    for w in root.findChildren(QWidget):
        if not isinstance(w, INTERACTIVE) or not w.isVisibleTo(root):
            continue
        # Qt's own sub-widgets (a spin box's line edit, a combo's popup list) are
        # described by their parent.
        if w.objectName().startswith("qt_") or isinstance(w.parent(), QComboBox):
            continue
        if not (w.accessibleName() or (isinstance(w, QAbstractButton) and w.text())):
            out.append(f"{type(w).__name__} {w.objectName()!r} in {type(w.parent()).__name__}")
    return out


def test_widgets_have_accessible_names(qtbot: QtBot, tmp_path: Path) -> None:
    window = create_window(tmp_path, Settings(first_run_done=True))
    qtbot.addWidget(window)
    window.show()
    assert unnamed(window) == []
    dialog = SettingsDialog(Settings(), tmp_path, window)
    dialog.show()
    assert unnamed(dialog) == []
    dialog.close()
    window.close()
    assert window.engine.shutdown(5)


def test_dark_scheme_follows_the_system(qtbot: QtBot, tmp_path: Path, qapp: QApplication) -> None:
    """A platform that switches to dark hands Fusion a dark palette: everything follows.

    Offscreen there is no system scheme to flip, so the test installs the palette
    the way the platform theme does (application-wide).
    """
    before = qapp.palette()
    window = create_window(tmp_path, Settings(first_run_done=True))
    qtbot.addWidget(window)
    window.show()
    try:
        assert not theme.is_dark(window.palette())
        light_banner = _banner_colour(window)
        qapp.setPalette(theme.dark_palette())
        qtbot.waitUntil(lambda: theme.is_dark(window.palette()), timeout=3000)
        assert theme.is_dark(window.preview.body.palette())
        assert _banner_colour(window) != light_banner
        dark_badge = theme.badge_icon("pdf", True).pixmap(40, 40).toImage()
        light_badge = theme.badge_icon("pdf", False).pixmap(40, 40).toImage()
        assert dark_badge != light_badge
        window.grab()  # paints every widget in the dark palette
    finally:
        qapp.setPalette(before)
        window.close()
        assert window.engine.shutdown(5)


def _banner_colour(window: MainWindow) -> str:
    from sr3desk.gui import message

    window.banner.show_message(message.Message(message.Level.WARNING, "test"))
    return window.banner.palette().color(QPalette.ColorRole.Window).name()


def test_badges_are_crisp_on_hidpi(qapp: object) -> None:
    icon = theme.badge_icon("md", False, 36)
    pix = icon.pixmap(QSize(36, 36), 2.0)
    assert pix.width() >= 72  # drawn at 3x: no upscaled blur at 200 %
