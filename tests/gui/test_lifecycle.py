"""First run, pause and resume, folders added by drop, closing while indexing."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton, QWidget
from pytestqt.qtbot import QtBot

from sr3desk.gui.app import create_window
from sr3desk.gui.mainwindow import MainWindow
from sr3desk.gui.tray import Tray
from sr3desk.gui.welcome import CHOICE_DOWNLOAD, CHOICE_FILE
from sr3desk.index.store import Store
from sr3desk.settings import Settings

CLOSE_LIMIT_S = 2.0  # the issue: closing during indexing exits within 2 s


@pytest.fixture
def open_window(qtbot: QtBot, tmp_path: Path) -> Iterator[Callable[[Settings], MainWindow]]:
    """Factory: a shown (not started) window over a fresh data directory."""
    windows: list[MainWindow] = []

    def make(settings: Settings) -> MainWindow:
        home = tmp_path / f"home{len(windows)}"
        home.mkdir()
        w = create_window(home, settings)
        qtbot.addWidget(w)
        w.resize(1000, 650)
        w.show()
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.close()
        assert w.engine.shutdown(10)


def test_pause_resume_and_search_while_indexing(
    qtbot: QtBot, open_window: Callable[[Settings], MainWindow], corpus_copy: Callable[[], Path]
) -> None:
    folder = corpus_copy()
    n_files = sum(1 for p in folder.rglob("*") if p.is_file())
    w = open_window(Settings(folders=[str(folder)], first_run_done=True, threads=1))
    with qtbot.waitSignal(w.engine.progress, timeout=60000):
        w.start()
    button = w.index_status.pause_button
    qtbot.waitUntil(button.isVisible, timeout=10000)
    # Pause from the status bar, as a user does; the indexer confirms at its next file.
    with qtbot.waitSignal(
        w.engine.progress, timeout=60000, check_params_cb=lambda p: p.paused
    ) as paused:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert button.text() == "Resume"
    assert "paused" in w.index_status.label.text().lower()
    done_at_pause = paused.args[0].files_done
    assert done_at_pause < n_files
    # Nothing moves while paused...
    with qtbot.assertNotEmitted(w.engine.indexing_finished, wait=1500):
        pass
    assert w.index_status.last is not None
    assert w.index_status.last.files_done == done_at_pause
    # ... and what is indexed so far is searchable meanwhile.
    with qtbot.waitSignal(w.results_shown, timeout=30000):
        qtbot.keyClicks(w.search, "the")
    assert w.model.rowCount() <= max(done_at_pause, 1)
    with qtbot.waitSignal(w.engine.indexing_finished, timeout=240000) as finished:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    summary = finished.args[0]
    assert not summary.stopped
    assert summary.indexed + len(summary.skipped) == n_files
    assert not button.isVisible()


def test_a_pause_holds_until_resumed_or_the_session_ends(
    qtbot: QtBot, open_window: Callable[[Settings], MainWindow], tmp_path: Path
) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "plans.md").write_text("# Garden\n\nPlant the tomatoes in late spring.\n")
    w = open_window(Settings(folders=[str(folder)], first_run_done=True, threads=1))
    with qtbot.waitSignal(w.engine.indexing_finished, timeout=120000) as first:
        w.start()
    qtbot.waitUntil(lambda: w.engine.run is not None and w.engine.run.alive, timeout=10000)
    tray = Tray(w)
    w.tray = tray
    # Paused from the tray while the session watches its folders.
    tray.pause_action.trigger()
    assert w.engine.paused and tray.pause_action.text() == "Resume indexing"
    # A scan's end reported after the pause (a followed watcher's poll can come late)
    # leaves the session paused, and the window says so.
    w.engine.indexing_finished.emit(first.args[0])
    assert w.engine.paused and tray.pause_action.text() == "Resume indexing"
    assert w.act_pause.text() == "&Resume indexing"
    tray.pause_action.trigger()
    assert not w.engine.paused and tray.pause_action.text() == "Pause indexing"
    # A pause ends with its session.
    tray.pause_action.trigger()
    run = w.engine.run
    assert run is not None
    with qtbot.waitSignal(w.engine.index_ended, timeout=60000):
        run.stop()
    assert not w.engine.paused and tray.pause_action.text() == "Pause indexing"


def test_first_run_picks_folders_and_a_model(
    qtbot: QtBot,
    open_window: Callable[[Settings], MainWindow],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_gguf: Path,
) -> None:
    user_home = tmp_path / "user"
    (user_home / "Documents").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user_home / ".config"))
    w = open_window(Settings(threads=1))
    w.start()
    dialog = w.show_welcome()
    assert dialog.isVisible()
    # The user's Documents folder is suggested; no model is installed yet.
    assert dialog.folders.list.folders() == [str((user_home / "Documents").resolve())]
    assert not dialog.installed.isEnabled()

    # Offline (the tests set HF_HUB_OFFLINE), the download says so at once.
    dialog.fetch.setChecked(True)
    assert dialog.choice_id() == CHOICE_DOWNLOAD
    with qtbot.waitSignal(w.download.failed, timeout=30000):
        dialog.fetch_button.click()
    assert "HF_HUB_OFFLINE" in dialog.fetch_status.text()
    assert "choose a model file" in dialog.fetch_status.text()
    assert not dialog.cancel_button.isVisible()

    dialog.from_file.setChecked(True)
    assert dialog.choice_id() == CHOICE_FILE
    dialog.file_chooser.set_path(str(tiny_gguf))
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=10000)
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "recipe.md").write_text("# Bread\n\nKnead the dough for ten minutes.\n")
    dialog.folders.list.add_folder(str(folder))
    # Enter, wherever the focus is in the dialog, means "Start searching".
    (add,) = [b for b in dialog.findChildren(QPushButton) if b.text() == "Add folder…"]
    with qtbot.waitSignal(w.engine.indexing_finished, timeout=120000):
        qtbot.keyClick(add, Qt.Key.Key_Return)
    saved = Settings.load(w.home)
    assert saved.first_run_done
    assert saved.model_path == str(tiny_gguf)
    assert saved.folders == [str((user_home / "Documents").resolve()), str(folder.resolve())]
    assert w.engine.model_loaded or qtbot.waitSignal(w.engine.model_ready, timeout=60000)
    with qtbot.waitSignal(w.results_shown, timeout=30000):
        qtbot.keyClicks(w.search, "dough")
    assert [Path(r.path).name for r in w.model.results()] == ["recipe.md"]


def test_installed_model_is_offered_first(
    qtbot: QtBot, open_window: Callable[[Settings], MainWindow], tiny_gguf: Path
) -> None:
    w = open_window(Settings(model_path=str(tiny_gguf), threads=1))
    dialog = w.show_welcome()
    assert dialog.installed.isChecked()
    qtbot.waitUntil(lambda: "tiny-qwen2" in dialog.installed_details.text(), timeout=10000)
    assert "64-d vectors" in dialog.installed_details.text()
    assert dialog.start_button.isEnabled()
    dialog.reject()


def test_folder_dropped_on_the_window_is_indexed(
    qtbot: QtBot,
    open_window: Callable[[Settings], MainWindow],
    tmp_path: Path,
    drop_folders: Callable[[QWidget, list[Path]], None],
) -> None:
    w = open_window(Settings(first_run_done=True, threads=1))
    w.start()
    assert "No folders" in w.results.placeholder
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "plans.md").write_text("# Garden\n\nPlant the tomatoes in late spring.\n")
    with qtbot.waitSignal(w.engine.indexing_finished, timeout=120000):
        drop_folders(w, [folder])
    assert Settings.load(w.home).folders == [str(folder.resolve())]
    assert w.filters.folder.findData(str(folder.resolve())) >= 0
    with qtbot.waitSignal(w.results_shown, timeout=30000):
        qtbot.keyClicks(w.search, "tomatoes")
    assert [Path(r.path).name for r in w.model.results()] == ["plans.md"]


def _read_lines(stream: object, sink: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sink.put(line)


def test_close_during_indexing_exits_within_two_seconds(
    tmp_path: Path, corpus_copy: Callable[[], Path], tiny_gguf: Path
) -> None:
    """The real app in its own process: closed (SIGTERM, as at logout) while it embeds."""
    home = tmp_path / "home"
    home.mkdir()
    folder = corpus_copy()
    Settings(folders=[str(folder)], model_path=str(tiny_gguf), first_run_done=True, threads=1).save(
        home
    )
    env = dict(os.environ, SR3DESK_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sr3desk", "-vv", "gui"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, "the app exited early:\n" + "".join(seen[-30:])
                continue
            seen.append(line)
            if "Index phase embed" in line:
                break
        else:
            pytest.fail("the app never started embedding:\n" + "".join(seen[-30:]))
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        took = time.monotonic() - t0
        print(f"closed in {took:.2f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0
    assert took < CLOSE_LIMIT_S, f"closing took {took:.2f} s"
    # State is saved: settings intact, the window's geometry written, and the index
    # opens for writing again (lock released, nothing to repair that fails).
    assert Settings.load(home).folders == [str(folder)]
    assert (home / "window.ini").exists()
    with Store.open(home, None, write=True) as store:
        assert store.status().files >= 0


def test_settings_move_the_data_directory_for_the_next_launch(
    qtbot: QtBot,
    open_window: Callable[[Settings], MainWindow],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("Renew the passport before the trip.\n")
    w = open_window(Settings(folders=[str(notes)], first_run_done=True, threads=1))
    w.start()
    dialog = w.open_settings()
    new_home = tmp_path / "elsewhere" / "sr3"
    dialog.data_dir.setText(str(new_home))
    dialog.exclude.setPlainText("*.bak")
    # The first session may still be running: it stops, and the new one indexes.
    with qtbot.waitSignal(
        w.engine.indexing_finished, timeout=120000, check_params_cb=lambda s: not s.stopped
    ):
        dialog.accept()
    assert w.engine.home == new_home.resolve() == w.home
    assert Settings.load(new_home).exclude == ["*.bak"]
    assert (new_home / "index").is_dir()
    # The next launch without --db or $SR3DESK_HOME (and the CLI) finds it.
    from sr3desk.settings import data_dir

    monkeypatch.delenv("SR3DESK_HOME")
    assert data_dir() == new_home.resolve()
    with qtbot.waitSignal(w.results_shown, timeout=30000):
        qtbot.keyClicks(w.search, "passport")
    assert [Path(r.path).name for r in w.model.results()] == ["todo.txt"]
