"""Render the main window with real results to a PNG (the README's screenshot).

``python -m sr3desk.gui.screenshot --model GGUF --out assets/screenshot.png``
indexes a small folder of real documents (the Python docs' reST sources and R's
PDF manuals, from Debian packages) into a temporary data directory with the
real indexer, types a query into the real window, waits for its results and
preview, and grabs the window. ``--deep`` then presses Enter, waits for the
re-ranked list, shows the Think button's tooltip and grabs the whole screen
(the tooltip is a window of its own). Without a display it starts Xvfb when
there is one, else it renders offscreen.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sr3desk.gui.mainwindow import MainWindow
    from sr3desk.index.types import Progress
    from sr3desk.settings import Settings

log = logging.getLogger(__name__)

PY_DOCS = Path("/usr/share/doc/python3.11/html/_sources")
R_MANUALS = Path("/usr/share/R/doc/manual")
# Small on purpose (about 40k tokens with the PDF): embedding runs on the CPU.
DOC_PICKS = [
    "library/csv.rst.txt",
    "library/glob.rst.txt",
    "library/bisect.rst.txt",
    "library/shelve.rst.txt",
    "howto/sorting.rst.txt",
    "tutorial/inputoutput.rst.txt",
]
PDF_PICKS = ["R-data.pdf"]  # "R Data Import/Export": 41 pages
DEFAULT_QUERY = "read a spreadsheet of comma separated values"


def build_corpus(root: Path) -> Path:
    """Copy the sample documents into ``root/Documents``; returns that folder."""
    docs = root / "Documents"
    (docs / "Python notes").mkdir(parents=True)
    (docs / "R manuals").mkdir(parents=True)
    for rel in DOC_PICKS:
        src = PY_DOCS / rel
        if src.exists():
            shutil.copy(src, docs / "Python notes" / src.name.replace(".rst.txt", ".rst"))
    for name in PDF_PICKS:
        src = R_MANUALS / name
        if src.exists():
            shutil.copy(src, docs / "R manuals" / name)
    if not any(docs.rglob("*.*")):
        raise SystemExit("No sample documents found: install Debian's python3.11-doc and r-doc-pdf")
    return docs


def start_xvfb() -> subprocess.Popen[bytes] | None:
    """Start Xvfb on a free display and point DISPLAY at it; None when unavailable."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        return None
    read, write = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as fh:
        number = fh.readline().strip()
    if not number:
        proc.kill()
        return None
    os.environ["DISPLAY"] = f":{number}"
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    return proc


def shoot(
    model: Path | None,
    out: Path,
    query: str,
    width: int,
    height: int,
    threads: int | None,
    deep: bool = False,
) -> None:
    """Index the sample corpus, search for ``query`` and save the window to ``out``
    (``deep``: after a deep search, with the Think tooltip, as the whole screen)."""
    from sr3desk.gui.app import create_window, make_app

    work = Path(tempfile.mkdtemp(prefix="sr3desk-shot-"))
    try:
        home, settings, docs = _prepare_home(work, model, threads)
        app = make_app([sys.argv[0]])
        window = create_window(home, settings)
        window.resize(width, height)
        window.show()
        waiter = _Waiter()
        _index(window, docs, model is not None, waiter)
        _search(window, query, 2 if model is not None else 1, waiter)
        if deep:
            _deep_search(window, waiter)
        _grab(window, out, deep, waiter)
        window.close()
        window.engine.shutdown(5.0)
        app.processEvents()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _prepare_home(
    work: Path, model: Path | None, threads: int | None
) -> tuple[Path, Settings, Path]:
    """Make ``work`` the home directory, with the sample corpus and saved settings.

    Returns the data directory, the settings saved there and the corpus folder.
    """
    from sr3desk.search.rerank import default_reranker_dir
    from sr3desk.settings import Settings

    # The installed cross-encoder stays where it is when HOME moves below.
    os.environ.setdefault("SR3DESK_RERANKER", str(default_reranker_dir()))
    # Folders show relative to the home directory, as on a user's machine.
    os.environ["HOME"] = str(work)
    home = work / ".local" / "share" / "sr3desk"
    home.mkdir(parents=True, mode=0o700)
    docs = build_corpus(work)
    settings = Settings(
        model_path=str(model.resolve()) if model else None,
        folders=[str(docs)],
        first_run_done=True,
        threads=threads,
    )
    settings.save(home)
    return home, settings, docs


class _Waiter:
    """Runs a local event loop until a signal fires; a timeout ends the program."""

    def __init__(self) -> None:
        from PySide6.QtCore import QEventLoop

        self.loop = QEventLoop()

    def wait(self, signal: object, timeout_s: float) -> None:
        """Wait for ``signal``; SystemExit after ``timeout_s`` seconds without it."""
        from PySide6.QtCore import QTimer

        loop = self.loop
        timer = QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        signal.connect(loop.quit)  # type: ignore[attr-defined]
        timer.start(int(timeout_s * 1000))
        loop.exec()
        signal.disconnect(loop.quit)  # type: ignore[attr-defined]
        if not timer.isActive():
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {signal}")
        timer.stop()

    def settle(self, ms: int) -> None:
        """Run the event loop for ``ms`` milliseconds."""
        from PySide6.QtCore import QTimer

        QTimer.singleShot(ms, self.loop.quit)
        self.loop.exec()


def _index(window: MainWindow, docs: Path, with_model: bool, waiter: _Waiter) -> None:
    """Start the window, wait for the index of ``docs`` and (``with_model``) the model."""
    from sr3desk.gui.status import describe_progress

    last_note = [0.0]

    def note(p: Progress) -> None:
        now = time.monotonic()
        if now - last_note[0] >= 10:
            last_note[0] = now
            log.info("%s", describe_progress(p))

    window.engine.progress.connect(note)
    window.start()
    log.info("indexing %s", docs)
    waiter.wait(window.engine.indexing_finished, 1800)
    if with_model and not window.engine.model_loaded:
        waiter.wait(window.engine.model_ready, 300)


def _search(window: MainWindow, query: str, stage: int, waiter: _Waiter) -> None:
    """Type ``query``, wait for results of ``stage`` (1 keyword, 2 hybrid) and the preview."""
    from PySide6.QtTest import QTest

    # Twice: the first hybrid search also measures the model on this index
    # (once, then cached), which is not what a search normally costs.
    for _ in range(2):
        window.search.clear()
        QTest.keyClicks(window.search, query)
        while window.searching.stage < stage:
            waiter.wait(window.results_shown, 600)
    if window.model.rowCount() == 0:
        raise SystemExit(f"no results for {query!r}: nothing to show")
    if window.preview.result is None or not window.preview.hit_text:
        waiter.wait(window.preview_shown, 60)


def _deep_search(window: MainWindow, waiter: _Waiter) -> None:
    """Press Enter, wait for the re-ranked list and show the Think button's tooltip."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QToolTip

    before = [r.path for r in window.model.results()]
    QTest.keyClick(window.search, Qt.Key.Key_Return)
    waiter.wait(window.deep_search_done, 300)
    after = [r.path for r in window.model.results()]
    log.info("instant: %s", [Path(p).name for p in before[:5]])
    log.info("deep:    %s (%s)", [Path(p).name for p in after[:5]], window.summary.text())
    button = window.think_button
    QToolTip.showText(button.mapToGlobal(QPoint(0, button.height())), button.toolTip())


def _grab(window: MainWindow, out: Path, deep: bool, waiter: _Waiter) -> None:
    """Save the window (``deep``: the whole screen) to ``out`` once it has settled."""
    from PySide6.QtGui import QGuiApplication

    # Let the preview scroll and the status bar settle before grabbing.
    waiter.settle(600)
    window.info_label.clear()
    out.parent.mkdir(parents=True, exist_ok=True)
    screen = QGuiApplication.primaryScreen()
    picture = screen.grabWindow(0) if deep and screen is not None else window.grab()
    if not picture.save(str(out)):
        raise SystemExit(f"cannot write {out}")
    log.info("wrote %s", out)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--model GGUF --out PNG [--query TEXT] [--size WxH]``."""
    parser = argparse.ArgumentParser(prog="python -m sr3desk.gui.screenshot", description=__doc__)
    parser.add_argument("--model", type=Path, help="GGUF embedding model (default: none)")
    parser.add_argument("--out", type=Path, default=Path("assets/screenshot.png"))
    parser.add_argument("--query", default=DEFAULT_QUERY)
    parser.add_argument("--size", default="1280x800", help="window size, WxH")
    parser.add_argument(
        "--deep", action="store_true", help="press Enter (deep search) and grab the screen"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="llama.cpp threads (default 1: robust on a busy machine; 0: the app's default)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    width, height = (int(v) for v in args.size.lower().split("x"))
    xvfb = None
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") is None:
        xvfb = start_xvfb()
        if xvfb is None:
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
    try:
        shoot(
            args.model,
            args.out.resolve(),
            args.query,
            width,
            height,
            args.threads or None,
            args.deep,
        )
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
