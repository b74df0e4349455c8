"""Fixtures of the window tests: a Qt warning fails the test; real documents; the model.

Every test here runs offscreen (``QT_QPA_PLATFORM=offscreen``, set before Qt
loads). Unexpected Qt warnings (a broken connection, a painter misuse, a layout
set twice) fail the test that caused them: :func:`qt_warnings` records every
message at warning level or above through ``qInstallMessageHandler`` and fails
at teardown unless the test declared it with ``qt_warnings.expect(regex)``.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import (
    QMessageLogContext,
    QMimeData,
    QPoint,
    QPointF,
    Qt,
    QtMsgType,
    QUrl,
    qInstallMessageHandler,
)
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget

GUI_DIR = Path(__file__).resolve().parent

# Messages a platform plugin prints for what it cannot do, not a defect of ours.
PLATFORM_NOISE = [
    re.compile(r"This plugin does not support propagateSizeHints\(\)"),
    re.compile(r"This plugin does not support raise\(\)"),
    re.compile(r"This plugin does not support grabbing the keyboard"),
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Our own handler replaces pytest-qt's log capture in this directory."""
    for item in items:
        if GUI_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.no_qt_log)


class QtWarnings:
    """Qt messages at warning level and above seen during one test."""

    def __init__(self) -> None:
        self.records: list[str] = []
        self.expected: list[re.Pattern[str]] = []
        self._lock = threading.Lock()

    def expect(self, pattern: str) -> None:
        """Allow messages matching ``pattern`` in this test."""
        self.expected.append(re.compile(pattern))

    def handle(self, mode: QtMsgType, _ctx: QMessageLogContext, msg: str) -> None:
        if mode == QtMsgType.QtDebugMsg or mode == QtMsgType.QtInfoMsg:
            return
        with self._lock:
            self.records.append(msg)

    def unexpected(self) -> list[str]:
        allowed = PLATFORM_NOISE + self.expected
        return [m for m in self.records if not any(p.search(m) for p in allowed)]


@pytest.fixture(autouse=True)
def qt_warnings(qapp: object) -> Iterator[QtWarnings]:
    """Fail the test on any unexpected Qt warning (see the module docstring)."""
    seen = QtWarnings()
    previous = qInstallMessageHandler(seen.handle)
    try:
        yield seen
    finally:
        qInstallMessageHandler(previous)
    bad = seen.unexpected()
    if bad:
        pytest.fail("unexpected Qt warnings:\n" + "\n".join(bad), pytrace=False)


@pytest.fixture(scope="session")
def qapp_cls() -> type:
    """Use the app's own QApplication setup (style, names) for the tests."""
    from PySide6.QtWidgets import QApplication

    return QApplication


@pytest.fixture(scope="session")
def qapp(qapp_args: list[str], qapp_cls: type) -> object:
    """The QApplication, made as the app makes it."""
    from sr3desk.gui.app import make_app

    return make_app(qapp_args)


@pytest.fixture
def drop_folders() -> Callable[[QWidget, list[Path]], None]:
    """A function that drags paths onto a widget and drops them, as a file manager does."""
    return _drop_folders


def _drop_folders(widget: QWidget, folders: list[Path]) -> None:
    """Drag ``folders`` (as file URLs) onto ``widget`` and drop them: enter, then drop."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(f)) for f in folders])
    with warnings.catch_warnings():
        # PySide6 only offers the QPoint constructor, which Qt marks deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(
            QPoint(10, 10),
            Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(
        QPointF(QPoint(10, 10)),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, event)


@pytest.fixture(scope="session")
def docs_corpus(
    tmp_path_factory: pytest.TempPathFactory,
    python_docs_sources: Path,
    real_pdfs: list[Path],
) -> Path:
    """A small folder of real documents: Python docs (.rst.txt) and a real PDF.

    Copied once per session; tests that change it copy it again.
    """
    root = tmp_path_factory.mktemp("docs")
    picks = [
        "library/json.rst.txt",
        "library/csv.rst.txt",
        "library/sqlite3.rst.txt",
        "library/zipfile.rst.txt",
        "library/argparse.rst.txt",
        "library/datetime.rst.txt",
        "library/heapq.rst.txt",
        "tutorial/controlflow.rst.txt",
    ]
    (root / "python").mkdir()
    for rel in picks:
        src = python_docs_sources / rel
        shutil.copy(src, root / "python" / src.name)
    (root / "manuals").mkdir()
    shutil.copy(real_pdfs[0], root / "manuals" / real_pdfs[0].name)  # R-FAQ.pdf
    return root


@pytest.fixture
def corpus_copy(docs_corpus: Path, tmp_path: Path) -> Callable[[], Path]:
    """Factory: a fresh copy of :func:`docs_corpus` that a test may change."""

    def make() -> Path:
        dest = tmp_path / "docs"
        shutil.copytree(docs_corpus, dest)
        return dest

    return make
