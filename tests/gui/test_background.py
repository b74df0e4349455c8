"""The window beside the background watcher: it shows the watcher's progress instead
of indexing, never writes at the same time (the index lock), hands over when the
setting is turned on or off, and hides to the tray on close while the watcher runs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from pytestqt.qtbot import QtBot

from sr3desk.desktop.autostart import autostart_path, watcher_command
from sr3desk.errors import IndexAccessError
from sr3desk.gui.app import create_window
from sr3desk.gui.indexproc import IndexProcess
from sr3desk.gui.mainwindow import MainWindow
from sr3desk.gui.tray import Tray
from sr3desk.index import watchstatus
from sr3desk.index.store import Store
from sr3desk.settings import Settings

WAIT_MS = 300_000


@pytest.fixture(autouse=True)
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary HOME and XDG folders: the autostart entry lands there."""
    for var, name in (("HOME", "u"), ("XDG_DATA_HOME", "d"), ("XDG_CONFIG_HOME", "c")):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(var, str(tmp_path / name))
    return tmp_path / "c"


@pytest.fixture
def lock_holders(tmp_path: Path) -> Iterator[Callable[[Path], set[str]]]:
    """Samples who holds ``<home>/index.lock`` every 20 ms while the test runs."""
    seen: set[str] = set()
    timer = QTimer()
    homes: list[Path] = []

    def sample() -> None:
        for home in homes:
            with contextlib.suppress(FileNotFoundError):
                seen.add((home / "index.lock").read_text().strip())

    timer.timeout.connect(sample)
    timer.start(20)

    def watch(home: Path) -> set[str]:
        homes.append(home)
        return seen

    yield watch
    timer.stop()


def status_is(home: Path, ok: Callable[[watchstatus.WatchStatus], bool]) -> Callable[[], bool]:
    """A waitUntil condition: the watcher's live status satisfies ``ok``."""

    def check() -> bool:
        status = watchstatus.live_status(home)
        return status is not None and ok(status)

    return check


def open_window(qtbot: QtBot, home: Path, settings: Settings) -> MainWindow:
    w = create_window(home, settings)
    qtbot.addWidget(w)
    w.resize(1000, 650)
    w.show()
    return w


def close_window(w: MainWindow) -> None:
    w.quit_app()
    assert w.engine.shutdown(10)


def test_window_shows_the_watchers_progress_and_never_writes_beside_it(
    qtbot: QtBot,
    corpus_copy: Callable[[], Path],
    tiny_gguf: Path,
    tmp_path: Path,
    lock_holders: Callable[[Path], set[str]],
) -> None:
    folder = corpus_copy()
    home = tmp_path / "data"
    home.mkdir()
    settings = Settings(
        folders=[str(folder)],
        threads=1,
        model_path=str(tiny_gguf),
        first_run_done=True,
        background_indexing=True,
    )
    settings.save(home)
    holders = lock_holders(home)
    proc = subprocess.Popen(watcher_command(home), stdout=subprocess.PIPE, text=True)
    try:
        qtbot.waitUntil(status_is(home, lambda s: s.state == watchstatus.INDEXING), timeout=WAIT_MS)
        status = watchstatus.live_status(home)
        assert status is not None
        os.kill(status.pid, signal.SIGUSR1)  # hold it mid-scan, so the window sees it working
        qtbot.waitUntil(status_is(home, lambda s: s.paused), timeout=WAIT_MS)
        w = open_window(qtbot, home, settings)
        with qtbot.waitSignal(
            w.engine.progress, timeout=WAIT_MS, check_params_cb=lambda p: p.paused
        ):
            w.start()
        follower = w.engine.following
        assert follower is not None and follower.pid == status.pid
        assert w.engine.indexing and not w.engine.findChildren(IndexProcess)
        assert w.index_status.label.text().startswith("Indexing paused")
        # The watcher holds the one writer lock: a second writer is refused.
        with pytest.raises(IndexAccessError, match=f"pid {status.pid}"):
            Store.open(home, None, write=True)
        # Resume from the window: the watcher goes on, the status bar follows it.
        with qtbot.waitSignal(
            w.engine.progress, timeout=WAIT_MS, check_params_cb=lambda p: not p.paused
        ):
            qtbot.mouseClick(w.index_status.pause_button, Qt.MouseButton.LeftButton)
        assert not w.index_status.label.text().startswith("Indexing paused")
        with qtbot.waitSignal(w.engine.indexing_finished, timeout=WAIT_MS) as done:
            pass
        assert done.args[0].indexed >= 8
        # A file saved now is brought in by the watcher; the window hears of it.
        with qtbot.waitSignal(
            w.engine.updated, timeout=WAIT_MS, check_params_cb=lambda s: s.indexed >= 1
        ):
            (folder / "otters.md").write_text("Sea otters hold hands while they sleep.\n")
        with qtbot.waitSignal(w.results_shown, timeout=60000):
            qtbot.keyClicks(w.search, "otters hold hands")
        assert w.model.result(0) is not None and w.model.result(0).path.endswith("otters.md")  # type: ignore[union-attr]
        close_window(w)
        assert watchstatus.live_status(home) is not None  # closing leaves it running
        assert not w.engine.findChildren(IndexProcess)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert holders <= {"", str(status.pid)}, holders
    assert str(status.pid) in holders


def test_turning_background_on_and_off_hands_over_with_one_writer(
    qtbot: QtBot, tiny_gguf: Path, tmp_path: Path, lock_holders: Callable[[Path], set[str]]
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(3):
        (folder / f"note{i}.md").write_text(f"Note {i} about walruses and their tusks.\n")
    home = tmp_path / "data"
    home.mkdir()
    settings = Settings(
        folders=[str(folder)], threads=1, model_path=str(tiny_gguf), first_run_done=True
    )
    holders = lock_holders(home)
    w = open_window(qtbot, home, settings)
    with qtbot.waitSignal(w.engine.watching, timeout=WAIT_MS):
        w.start()
    assert isinstance(w.engine.run, IndexProcess)
    waits: list[str] = []
    w.engine.waiting.connect(waits.append)
    # On: the autostart entry is written, the window's indexer stops, the watcher
    # starts after it (so it never waits for the lock) and the window follows it.
    w.apply_settings(replace(w.engine.settings, background_indexing=True))
    assert autostart_path().exists()
    qtbot.waitUntil(status_is(home, lambda s: s.state == watchstatus.WATCHING), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.engine.following is not None, timeout=WAIT_MS)
    running = watchstatus.live_status(home)
    assert running is not None and running.background and waits == []
    # The tray shows it and pauses it; closing the window hides it there, said once.
    tray = Tray(w)
    w.tray = tray
    assert "background" in tray.state_text()
    tray.pause_action.trigger()
    qtbot.waitUntil(status_is(home, lambda s: s.paused), timeout=60000)
    assert tray.pause_action.text() == "Resume indexing"
    tray.pause_action.trigger()
    qtbot.waitUntil(status_is(home, lambda s: not s.paused), timeout=60000)
    w.close()
    assert not w.isVisible() and w.engine.following is not None
    assert Settings.load(home).background_noted
    tray.open_action.trigger()
    assert w.isVisible()
    # Off: the entry goes, the watcher stops, the window indexes by itself again.
    w.apply_settings(replace(w.engine.settings, background_indexing=False))
    assert not autostart_path().exists()
    qtbot.waitUntil(lambda: isinstance(w.engine.run, IndexProcess), timeout=WAIT_MS)
    # Recorded from now on: the window's indexer may be watching before the watcher
    # process is gone (it needs only the lock, which the watcher closes first).
    watching: list[bool] = []
    w.engine.watching.connect(watching.append)
    # It said "stopped" once its session (and the lock) was closed; it exits after.
    qtbot.waitUntil(
        lambda: not watchstatus.process_alive(running.pid, running.started), timeout=60000
    )
    qtbot.waitUntil(lambda: True in watching, timeout=WAIT_MS)
    close_window(w)
    assert holders - {""} >= {str(running.pid)}
    assert len(holders - {""}) == 3, holders  # the window's child, the watcher, the child
