"""`sr3desk index`: bad files, summary, settings, the writer lock, the progress line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from corpora import make_bad_corpus, make_dev_zero_link, make_fifo, make_symlink_loop

from sr3desk.cli import main
from sr3desk.cli.index import ProgressBar
from sr3desk.index.store import Store
from sr3desk.index.types import Progress
from sr3desk.settings import Settings


def test_bad_corpus_is_indexed_with_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus"
    expected = make_bad_corpus(corpus)
    make_fifo(corpus)
    make_symlink_loop(corpus)
    make_dev_zero_link(corpus)
    expected |= {
        "pipe.txt": "FIFO",
        "loop.txt": "symbolic link loop",
        "loop.txt.other": "symbolic link loop",
        "zeros.txt": "symbolic link to outside",
    }
    home = tmp_path / "home"
    assert main(["index", str(corpus), "--db", str(home)]) == 0
    out = capsys.readouterr().out
    n_bad = sum(1 for r in expected.values() if r is not None)
    assert f"{n_bad} skipped" in out and "Skipped:" in out
    assert f"{corpus / 'encrypted.pdf'!s}: " in out

    assert main(["status", "--db", str(home), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    skipped = {os.path.relpath(s["path"], corpus): s["reason"] for s in status["skipped"]}
    for name, reason in expected.items():
        if reason is None:
            assert name not in skipped, (name, skipped.get(name))
        else:
            assert reason in skipped[name], (name, skipped.get(name))
    assert status["files"] == len(expected) - n_bad
    assert status["chunks"] > 0 and status["model"] is None and status["pending"] == 0
    assert Settings.load(home).folders == [str(corpus)]


def test_index_with_model_then_again(
    tmp_path: Path, tiny_gguf: Path, python_docs_sources: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("whatnow.rst.txt", "appetite.rst.txt"):
        (docs / name).write_bytes((python_docs_sources / "tutorial" / name).read_bytes())
    home = tmp_path / "home"
    home.mkdir()
    Settings(threads=1).save(home)
    args = ["index", str(docs), "--db", str(home), "--model", str(tiny_gguf)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("Indexed 2 files (") and "0 skipped" in first
    assert main(args) == 0
    assert "Indexed 0 files (0 chunks, 0 embedded)" in capsys.readouterr().out
    assert main(["status", "--db", str(home)]) == 0
    text = capsys.readouterr().out
    assert "2 indexed, 0 skipped" in text and "tiny-qwen2" in text and "0 pending" in text


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert main(["index", str(tmp_path / "missing"), "--db", str(home)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sr3desk: error: Cannot index {tmp_path / 'missing'}: no such file or folder"
    )
    (tmp_path / "docs").mkdir()
    with Store.open(home, None, write=True):
        assert main(["index", str(tmp_path / "docs"), "--db", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sr3desk: error: Another sr3desk indexer (pid ")
    assert err.count("\n") == 1


def test_progress_line() -> None:
    line = ProgressBar.render(
        Progress("embed", chunks_embedded=50, chunks_total=200, tokens_per_s=812.4, eta_s=95.0,
                 current="/docs/report.pdf")
    )  # fmt: skip
    assert line == (
        "[######..................]  25% 50/200 chunks embedded  812 tok/s  ETA 1m35s  report.pdf"
    )
    assert ProgressBar.render(Progress("scan")) == "scanning..."
