"""Enter in the window: instant results, then the cross-encoder's re-ranking; Think only
for a model whose reasoning is measured to help.

Each window indexes a few real documents with a tiny model and searches them with
the real cross-encoder (installed by `make setup`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot
from waiting import wait_for

from sr3desk.gui.app import create_window
from sr3desk.gui.mainwindow import MainWindow
from sr3desk.gui.searchflow import STAGE_DEEP, STAGE_HYBRID, STAGE_REASONED
from sr3desk.search.deep import DeepRanker
from sr3desk.search.rerank import default_reranker_dir, open_reranker
from sr3desk.settings import Settings

# What a model's sr3.eval says when its reasoning helps (figures of a test model).
REASONING_HELPS = {
    "ndcg@10": 0.50,
    "bm25_ndcg@10": 0.52,
    "reason_ndcg@10": 0.58,
    "reason_tokens_p90": 12.0,
    "dataset": "test",
}


@pytest.fixture(scope="module")
def reasoning_gguf(tiny_qwen2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test model with figures that say its reasoning helps."""
    from training.export import convert

    out = tmp_path_factory.mktemp("reason-model") / "tiny-reasons.F32.gguf"
    convert(tiny_qwen2_dir, out, "f32", name="tiny-reasons", eval_metrics=REASONING_HELPS)
    return out


def open_window(root: Path, docs: Path, model: Path) -> MainWindow:
    if not default_reranker_dir().is_dir():
        pytest.fail(
            f"no cross-encoder in {default_reranker_dir()}: run `make setup`", pytrace=False
        )
    home = root / "home"
    home.mkdir()
    settings = Settings(folders=[str(docs)], model_path=str(model), first_run_done=True, threads=1)
    window = create_window(home, settings)
    window.resize(1000, 640)
    window.show()
    return window


@pytest.fixture(scope="module")
def plain_window(
    qapp: object, tmp_path_factory: pytest.TempPathFactory, docs_corpus: Path, tiny_gguf: Path
) -> Iterator[MainWindow]:
    """A window whose model has no reasoned figures (as the shipped one: it does not help)."""
    window = open_window(tmp_path_factory.mktemp("deep-plain"), docs_corpus, tiny_gguf)
    yield from _run(window)


@pytest.fixture(scope="module")
def reasoning_window(
    qapp: object,
    tmp_path_factory: pytest.TempPathFactory,
    docs_corpus: Path,
    reasoning_gguf: Path,
) -> Iterator[MainWindow]:
    window = open_window(tmp_path_factory.mktemp("deep-reason"), docs_corpus, reasoning_gguf)
    yield from _run(window)


def _run(window: MainWindow) -> Iterator[MainWindow]:
    window.start()
    wait_for(window.engine.indexing_finished, 240)
    if not window.engine.model_loaded:
        wait_for(window.engine.model_ready, 60)
    yield window
    window.close()
    assert window.engine.shutdown(10)


def type_query(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.search.clear()
    window.search.setFocus()
    with qtbot.waitSignal(
        window.results_shown, timeout=60000, check_params_cb=lambda s: s >= STAGE_HYBRID
    ):
        qtbot.keyClicks(window.search, text)


def press_enter(qtbot: QtBot, window: MainWindow) -> list[int]:
    """Press Enter in the search field; returns the stages shown until deep search ended."""
    stages: list[int] = []
    window.results_shown.connect(stages.append)
    try:
        with qtbot.waitSignal(window.deep_search_done, timeout=60000):
            qtbot.keyClick(window.search, "\r")
    finally:
        window.results_shown.disconnect(stages.append)
    return stages


def test_enter_shows_instant_results_then_the_reranked_list(
    qtbot: QtBot, plain_window: MainWindow
) -> None:
    w = plain_window
    type_query(qtbot, w, "save python objects as text for another program")
    instant = w.searching.last_response
    assert instant is not None and not instant.deep
    stages = press_enter(qtbot, w)
    assert stages[0] < STAGE_DEEP and stages[-1] == STAGE_DEEP
    deep = w.searching.last_response
    assert deep is not None and deep.deep and "rerank" in deep.stages
    assert "re-ranked" in w.summary.text()
    assert not w.reasoning.isVisible()  # a model whose reasoning does not help: none
    assert deep.reasoning is None
    # The instant list, re-ranked exactly as the core re-ranks it (its quality is
    # tested in tests/search/test_deep.py and measured by bench/search_sets.py).
    assert [r.path for r in deep.results] != [r.path for r in instant.results]
    with open_reranker(threads=1) as encoder:
        expected, _ = DeepRanker(encoder).rerank(instant.query, instant.results)
    assert [r.path for r in deep.results] == [r.path for r in expected]


def test_think_is_off_and_says_why(qtbot: QtBot, plain_window: MainWindow) -> None:
    w = plain_window
    assert not w.think_button.isEnabled() and not w.act_think.isEnabled()
    tip = w.think_button.toolTip()
    assert "Think is off" in tip and "not been measured" in tip
    assert w.deep_button.isEnabled()


def test_typing_during_the_rerank_cancels_it(qtbot: QtBot, plain_window: MainWindow) -> None:
    w = plain_window
    type_query(qtbot, w, "read a zip archive")
    # Hold the deep lane so the re-ranking is still waiting when the user types on.
    gate = threading.Event()
    w.engine.deep_lane.submit(lambda: gate.wait(30), name="hold")
    shown: list[int] = []
    w.results_shown.connect(shown.append)
    try:
        qtbot.keyClick(w.search, "\r")
        qtbot.waitUntil(lambda: w.searching.reranking, timeout=60000)
        cancel = w.searching._cancel
        assert cancel is not None and not cancel.is_set()
        qtbot.keyClicks(w.search, " members")
        assert cancel.is_set() and not w.searching.reranking
        gate.set()
        with qtbot.waitSignal(w.engine.deep_lane.idle, timeout=30000):
            pass
        qtbot.waitUntil(lambda: w.searching.stage >= STAGE_HYBRID, timeout=60000)
    finally:
        gate.set()
        w.results_shown.disconnect(shown.append)
    assert STAGE_DEEP not in shown  # the old query's re-ranking never reached the list
    response = w.searching.last_response
    assert response is not None and not response.deep
    assert response.query == "read a zip archive members"


def test_a_model_whose_reasoning_helps_reasons_on_enter(
    qtbot: QtBot, reasoning_window: MainWindow
) -> None:
    w = reasoning_window
    assert w.think_button.isEnabled()
    assert "0.580 reasoned vs 0.500 plain" in w.think_button.toolTip()
    type_query(qtbot, w, "parse command line options")
    stages = press_enter(qtbot, w)
    assert STAGE_REASONED in stages and stages[-1] == STAGE_DEEP
    deep = w.searching.last_response
    assert deep is not None and deep.deep and deep.reasoning is not None
    assert w.reasoning.isVisible() and w.reasoning.text.text()
