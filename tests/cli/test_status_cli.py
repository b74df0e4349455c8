"""`sr3desk status`: the JSON contract and the readable form."""

from __future__ import annotations

import json
import os
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


def test_status_names_the_default_model(
    tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sr3desk.model.ggufinfo import inspect_gguf

    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["default_model"] is None
    assert main(["model", "install", str(tiny_gguf), "--default", "--if-unset"]) == 0
    installed = Path(os.environ["SR3DESK_HOME"]) / "models" / tiny_gguf.name
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["default_model"] == {
        "path": str(installed),
        "name": "tiny-qwen2",
        "stage": "base",
        "model_id": inspect_gguf(installed).model_id,
        "auto": True,
    }
    assert status["model"] is None  # nothing indexed: no vectors served yet
    assert main(["status"]) == 0
    assert f"Default: tiny-qwen2 (base, set automatically) {installed}" in capsys.readouterr().out
    # A default whose file is gone is still named, with the reason it cannot be used.
    installed.unlink()
    assert main(["status", "--json"]) == 0
    default = json.loads(capsys.readouterr().out)["default_model"]
    assert default["path"] == str(installed) and default["name"] is None
    assert "does not exist" in default["error"]
