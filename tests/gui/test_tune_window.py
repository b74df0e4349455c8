"""Index ▸ Tune the model to my documents: the dialog over a real ``training.tune`` run.

The runs are real (the tiny Qwen2 model, a few SFT steps, the app's runtime) on 8
Python tutorial pages indexed once for the session (the ``tune_indexed`` fixture);
the tests drive the window and the dialog like a user and wait on their signals.
"""

from __future__ import annotations

import doctest
import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from corpora import copy_tune_home
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from sr3desk.gui import tune as tune_module
from sr3desk.gui.app import create_window
from sr3desk.gui.mainwindow import MainWindow
from sr3desk.gui.tune import RunProgress, TuneDialog, estimate
from sr3desk.model.ggufinfo import inspect_gguf
from sr3desk.settings import Settings
from sr3desk.tuning import (
    EVENT_PLAN,
    EVENT_PROGRESS,
    EVENT_RESULT,
    EVENT_STAGE,
    HISTORY,
    STAGING,
    TuneEvent,
)

RUN_TIMEOUT_MS = 300_000  # a whole tiny run: about a minute on 2 busy cores


@pytest.fixture
def home(tune_indexed: Path, tmp_path: Path) -> Path:
    """A copy of the indexed data directory for one test, its folder remembered."""
    return copy_tune_home(tune_indexed, tmp_path / "copy")


@pytest.fixture
def window(qtbot: QtBot, home: Path) -> Iterator[MainWindow]:
    """The window over ``home``, shown, not started."""
    w = create_window(home, Settings.load(home))
    qtbot.addWidget(w)
    w.resize(1000, 650)
    w.show()
    yield w
    if w.tune is not None and w.tune.running:
        with qtbot.waitSignal(w.tune.run_ended, timeout=30000):
            w.tune.cancel()
    w.close()
    assert w.engine.shutdown(10)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def group_states(pgid: int) -> dict[int, str]:
    """State letter (R, S, T, Z…) of each process in process group ``pgid``, from /proc."""
    states = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid pgrp …: comm may hold spaces, so split after it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[2]) == pgid:
            states[int(stat.parent.name)] = fields[0]
    return states


def alive(pgid: int) -> dict[int, str]:
    return {pid: s for pid, s in group_states(pgid).items() if s != "Z"}


def in_training(p: RunProgress) -> bool:
    return p.stage == "sft" and p.step >= 1


def test_doctests() -> None:
    result = doctest.testmod(tune_module)
    assert result.attempted >= 4 and result.failed == 0


def test_progress_follows_the_runs_events() -> None:
    p = RunProgress(minutes=10)
    assert not p.read_event(TuneEvent(EVENT_STAGE, stage="data"), 1.0)  # the first stage
    assert p.read_event(TuneEvent(EVENT_STAGE, stage="probe"), 20.0)
    assert p.stage == "probe" and estimate(p, 20.0)[1] == 360 + 220.0  # the plan, nothing measured
    assert not p.read_event(TuneEvent(EVENT_PLAN, steps=240, s_per_step=1.5), 30.0)
    assert (p.steps, p.s_per_step) == (240, 1.5)
    assert p.read_event(TuneEvent(EVENT_STAGE, stage="sft"), 30.0)
    line = TuneEvent(EVENT_PROGRESS, "sft", step=10, steps=240, s_per_step=2.0).to_line()
    assert TuneEvent.from_line(line[:-5]) is None  # a line cut short is not an event
    assert TuneEvent.from_line('{"step": 10, "s_per_step": 2.0}') is None  # nor a log record
    event = TuneEvent.from_line(line)
    assert event is not None and not p.read_event(event, 45.0)
    done, left = estimate(p, 50.0)
    # 230 steps at the measured 2 s, and 240 - 30 s planned besides SFT.
    assert p.step == 10 and left == 230 * 2.0 + 210 and 0 < done < 0.1
    assert p.read_event(TuneEvent(EVENT_STAGE, stage="export"), 500.0)
    assert p.sft_end == 500.0 and estimate(p, 500.0)[1] == 240 - 30.0
    assert estimate(p, 800.0) == (tune_module.MAX_FRACTION, None)  # past the plan


def test_the_app_reads_no_training_log() -> None:
    """The window and the command line learn the run's progress from its events only."""
    package = Path(tune_module.__file__).resolve().parents[1]
    for path in package.rglob("*.py"):
        assert "log.jsonl" not in path.read_text(encoding="utf-8"), path


def test_without_the_train_extra_the_action_says_one_line(
    qtbot: QtBot, window: MainWindow, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    before = snapshot(home)
    window.act_tune.trigger()
    dialog = window.tune
    assert dialog is not None and dialog.isVisible()
    text = dialog.verdict.text()
    assert "\n" not in text and "pip install -e '.[train]'" in text and "torch" in text
    assert dialog.verdict.isVisible() and not dialog.start_button.isVisible()
    assert not dialog.minutes.isVisible() and not dialog.bar.isVisible()
    dialog.start()  # even asked directly, it starts nothing
    assert dialog.proc is None and not dialog.running
    assert snapshot(home) == before and not (home / STAGING).exists()


def test_a_model_without_its_checkpoint_is_said_in_one_line(
    qtbot: QtBot, home: Path, tiny_gguf: Path, tmp_path: Path
) -> None:
    lone = tmp_path / "lone" / tiny_gguf.name
    lone.parent.mkdir()
    lone.symlink_to(tiny_gguf)
    dialog = TuneDialog(home, str(lone))
    qtbot.addWidget(dialog)
    dialog.show()
    text = dialog.verdict.text()
    assert text.startswith(f"Cannot tune {lone.name}: its training checkpoint") and "\n" not in text
    assert not dialog.start_button.isVisible()


def test_a_winning_tune_becomes_the_default_and_undo_restores(
    qtbot: QtBot, window: MainWindow, home: Path, tiny_gguf: Path
) -> None:
    window.act_tune.trigger()
    dialog = window.tune
    assert dialog is not None and dialog.minutes.value() == 30
    # Any tuned model clears a margin of -1: the verdict's winning branch, for real.
    dialog.steps, dialog.margin, dialog.teacher = 2, -1.0, False
    stages: list[str] = []
    dialog.stage_changed.connect(stages.append)
    events: list[TuneEvent] = []
    dialog.event_read.connect(events.append)
    with qtbot.waitSignal(dialog.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
        assert dialog.running and dialog.bar.isVisible() and dialog.cancel_button.isVisible()
    result = ended.args[0]
    assert result is not None and result["wins"] is True, dialog.verdict.text()
    assert stages == ["sft", "export", "eval", "export"]  # --steps: no probe
    # The progress came from the run's events: its stages, its plan, SFT's steps.
    kinds = [e.event for e in events]
    assert kinds[0] == EVENT_STAGE and events[0].stage == "data" and kinds[-1] == EVENT_RESULT
    assert [e.stage for e in events if e.event == EVENT_STAGE] == ["data", *stages]
    assert [(e.steps, e.s_per_step) for e in events if e.event == EVENT_PLAN] == [(2, None)]
    steps = [e for e in events if e.event == EVENT_PROGRESS]
    assert steps and steps[-1].step == steps[-1].steps == 2 and steps[-1].s_per_step
    assert dialog.progress is not None and (dialog.progress.step, dialog.progress.steps) == (2, 2)
    assert events[-1].result == result
    assert dialog.bar.value() == 1000 and not dialog.pause_button.isVisible()
    rows = {
        dialog.table.item(i, 0).text().split(" (")[0]: float(dialog.table.item(i, 1).text())
        for i in range(dialog.table.rowCount())
    }
    figures = result["figures"]
    assert rows == {
        "Keyword search": round(figures["bm25"]["ndcg@10"], 3),
        "Current model": round(figures["current"]["ndcg@10"], 3),
        "Tuned model": round(figures["tuned"]["ndcg@10"], 3),
    }
    tuned = result["tuned"]
    assert f"{Path(tuned).name} is now the default model" in dialog.verdict.text()
    assert Settings.load(home).model_path == tuned
    assert window.engine.settings.model_path == tuned
    # The window builds the tuned model's vectors with its own indexer, then serves them.
    assert window.engine.indexing
    with qtbot.waitSignal(window.engine.indexing_finished, timeout=RUN_TIMEOUT_MS):
        pass
    with qtbot.waitSignal(window.engine.status_changed, timeout=30000) as status:
        window.engine.refresh_status()
    assert status.args[0].model == inspect_gguf(tuned).model_id

    assert dialog.undo_button.isVisible()
    qtbot.mouseClick(dialog.undo_button, Qt.MouseButton.LeftButton)
    assert Settings.load(home).model_path == str(tiny_gguf)
    assert window.engine.settings.model_path == str(tiny_gguf)
    assert json.loads((home / HISTORY).read_text()) == []
    assert f"Back to {tiny_gguf.name}" in dialog.verdict.text()
    assert not dialog.undo_button.isVisible()


def test_a_losing_tune_keeps_the_default_and_says_why(
    qtbot: QtBot, home: Path, tiny_gguf: Path
) -> None:
    index_before = snapshot(home / "index")
    dialog = TuneDialog(home, str(tiny_gguf), steps=2, margin=1.0, teacher=False)
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.waitSignal(dialog.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        dialog.start()
    result = ended.args[0]
    assert result is not None and result["wins"] is False
    text = dialog.verdict.text()
    assert text.startswith("Kept the current model: it scored nDCG@10") and "+1.000" in text
    assert f"kept in {Path(result['tuned']).parent}" in text
    assert not dialog.undo_button.isVisible() and dialog.table.rowCount() == 3
    assert Settings.load(home).model_path == str(tiny_gguf)
    assert snapshot(home / "index") == index_before


def test_cancel_mid_training_leaves_settings_and_index(
    qtbot: QtBot, home: Path, tiny_gguf: Path
) -> None:
    settings_before = (home / "settings.json").read_bytes()
    index_before = snapshot(home / "index")
    dialog = TuneDialog(
        home, str(tiny_gguf), steps=500, teacher=False, overrides=["train.log_every=1"]
    )
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.waitSignal(dialog.progressed, timeout=RUN_TIMEOUT_MS, check_params_cb=in_training):
        dialog.start()
    pid = dialog.pid
    assert pid is not None and len(alive(pid)) >= 2  # training.tune and training.sft
    with qtbot.waitSignal(dialog.run_ended, timeout=30000) as ended:
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert ended.args == [None] and dialog.cancelled
    qtbot.waitUntil(lambda: not alive(pid), timeout=5000)  # the stages it started too
    assert "Cancelled" in dialog.stage.text()
    assert (home / "settings.json").read_bytes() == settings_before
    assert snapshot(home / "index") == index_before
    assert not list((home / "models").glob("*")) and not (home / STAGING).exists()


def test_pause_stops_every_process_and_resume_continues(
    qtbot: QtBot, home: Path, tiny_gguf: Path
) -> None:
    dialog = TuneDialog(
        home, str(tiny_gguf), steps=500, teacher=False, overrides=["train.log_every=1"]
    )
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.waitSignal(dialog.progressed, timeout=RUN_TIMEOUT_MS, check_params_cb=in_training):
        dialog.start()
    pid = dialog.pid
    assert pid is not None
    log_file = home / STAGING / "sft" / "log.jsonl"
    try:
        qtbot.mouseClick(dialog.pause_button, Qt.MouseButton.LeftButton)
        assert dialog.pause_button.text() == "&Resume" and "paused" in dialog.stage.text()
        qtbot.waitUntil(lambda: set(alive(pid).values()) == {"T"}, timeout=5000)
        assert len(alive(pid)) >= 2
        size, elapsed = log_file.stat().st_size, dialog.elapsed()
        qtbot.wait(3000)  # SFT logs a step every second or so when it runs
        assert log_file.stat().st_size == size
        assert dialog.elapsed() == pytest.approx(elapsed, abs=0.05)  # pauses do not count
        assert set(alive(pid).values()) == {"T"}
        step = dialog.progress.step if dialog.progress else 0
        with qtbot.waitSignal(
            dialog.progressed, timeout=60000, check_params_cb=lambda p: p.step > step
        ):
            qtbot.mouseClick(dialog.pause_button, Qt.MouseButton.LeftButton)
        assert dialog.pause_button.text() == "&Pause" and "T" not in alive(pid).values()
    finally:
        with qtbot.waitSignal(dialog.run_ended, timeout=30000):
            dialog.cancel()
    assert not os.path.exists(home / STAGING)
