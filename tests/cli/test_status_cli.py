"""`sr3desk status`: the JSON contract and the readable form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sr3desk.cli import main


def test_status_of_an_empty_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--db", str(tmp_path / "home"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {k: status[k] for k in ("files", "chunks", "pending", "model", "skipped")} == {
        "files": 0,
        "chunks": 0,
        "pending": 0,
        "model": None,
        "skipped": [],
    }


def test_status_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.md").write_text("# Note\n\nThe heron waits by the pond.\n")
    (docs / "noise.txt").write_bytes(bytes(range(256)) * 64)
    home = tmp_path / "home"
    assert main(["index", str(docs), "--db", str(home)]) == 0
    capsys.readouterr()
    assert main(["status", "--db", str(home), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["files"] == 1 and status["chunks"] == 1 and status["pending"] == 0
    assert status["model"] is None
    assert status["skipped"] == [{"path": str(docs / "noise.txt"), "reason": "binary file"}]
    assert main(["status", "--db", str(home)]) == 0
    text = capsys.readouterr().out
    assert "Files:   1 indexed, 1 skipped" in text
    assert "Model:   none (keyword search only)" in text
    assert f"  {docs / 'noise.txt'}: binary file" in text
