"""A crash of llama.cpp in the indexing child: one line naming the native library and
the model, and the window's side lives on."""

from __future__ import annotations

import logging
import os
import signal
import textwrap
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from sr3desk.errors import Sr3Error
from sr3desk.gui.indexproc import IndexProcess
from sr3desk.index.child import SessionConfig, options_dict
from sr3desk.index.types import IndexOptions


def test_native_crash_in_the_indexer_is_reported(
    qtbot: QtBot, tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for a fault inside llama.cpp: the child dies by SIGSEGV right after
    # it loads the model (planted with sitecustomize, in the child only).
    plant = tmp_path / "plant"
    plant.mkdir()
    (plant / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import os, signal
            if os.environ.get("SR3DESK_CRASH_NOTE"):
                import sr3desk.model.native as native
                load = native.load_model
                def crashing(path, vocab_only=False, gpu_layers=0):
                    model = load(path, vocab_only, gpu_layers)
                    if not vocab_only:
                        os.kill(os.getpid(), signal.SIGSEGV)
                    return model
                native.load_model = crashing
            """
        )
    )
    monkeypatch.setenv("PYTHONPATH", f"{plant}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.txt").write_text("Rivers form where rain gathers.\n")
    config = SessionConfig(
        home=str(tmp_path / "home"),
        model_path=str(tiny_gguf),
        threads=1,
        gpu_layers=0,
        roots=[str(docs)],
        options=options_dict(IndexOptions()),
        log_level=logging.WARNING,
    )
    proc = IndexProcess(config)
    failures: list[BaseException] = []
    proc.failed.connect(failures.append)
    with qtbot.waitSignal(proc.ended, timeout=120_000):
        proc.start()
    assert len(failures) == 1 and isinstance(failures[0], Sr3Error)
    text = str(failures[0])
    assert "\n" not in text
    assert text.startswith("Indexing crashed in the native library llama.cpp")
    assert str(tiny_gguf) in text and signal.Signals.SIGSEGV.name in text
    assert "SR3DESK_LLAMA_REPACK=off" in text
