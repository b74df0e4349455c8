"""Worker lanes, one-off jobs and the debouncer: results arrive in the GUI thread."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, QThread
from pytestqt.qtbot import QtBot

from sr3desk.gui.workers import Debouncer, Lane, start_job


def test_lane_delivers_in_gui_thread_and_keeps_latest_of_a_key(qtbot: QtBot) -> None:
    owner = QObject()
    lane = Lane("test", owner)
    gate = threading.Event()
    results: list[tuple[str, bool]] = []

    def record(tag: str) -> None:
        results.append((tag, QThread.currentThread() is owner.thread()))

    # The first job blocks the lane so that the next three wait in the queue.
    lane.submit(gate.wait, lambda _r: record("first"))
    stale = lane.submit(lambda: "old", record, key="q")
    lane.submit(lambda: "other", record, key="preview")
    lane.submit(lambda: "new", record, key="q")
    assert stale.cancelled
    with qtbot.waitSignal(lane.idle, timeout=5000):
        gate.set()
    assert results == [("first", True), ("other", True), ("new", True)]
    lane.stop()
    assert lane.join(5)


def test_lane_reports_failures_and_runs_cleanup_on_stop(qtbot: QtBot) -> None:
    cleaned = threading.Event()
    lane = Lane("test", None, on_exit=cleaned.set)
    errors: list[BaseException] = []
    with qtbot.waitSignal(lane.idle, timeout=5000):
        lane.submit(lambda: 1 / 0, failed=errors.append)
    assert isinstance(errors[0], ZeroDivisionError)
    lane.stop()
    assert lane.join(5)
    assert cleaned.is_set()
    late = lane.submit(lambda: 1)
    assert late.cancelled


def test_start_job_returns_result_and_error(qtbot: QtBot) -> None:
    owner = QObject()
    got: list[object] = []
    with qtbot.waitCallback(timeout=5000) as cb:
        start_job(owner, lambda: 41 + 1, cb)
    cb.assert_called_with(42)
    with qtbot.waitCallback(timeout=5000) as cb2:
        start_job(owner, lambda: int("x"), got.append, cb2)
    assert isinstance(cb2.args[0], ValueError)
    assert got == []


def test_debouncer_fires_once_after_a_burst(qtbot: QtBot) -> None:
    calls: list[int] = []
    owner = QObject()
    deb = Debouncer(30, lambda: calls.append(1), owner)
    for _ in range(20):
        deb.trigger()
    assert deb.pending
    qtbot.waitUntil(lambda: calls == [1], timeout=2000)
    assert not deb.pending
    deb.trigger()
    deb.flush()
    assert calls == [1, 1]
    deb.trigger()
    deb.cancel()
    assert not deb.pending
