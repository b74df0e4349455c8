"""``sr3desk model info|install|convert|fetch`` as a user runs them (subprocesses).

``fetch`` talks to a local stand-in of the hub (tests/model/hubstandin.py) that
serves the tiny Qwen2 checkpoint under the official model's name: the download,
the conversion, the quantization and the first use all run for real, offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "model"))
from hubstandin import HubStandIn

from sr3desk.model.fetch import DEFAULT_REPO
from sr3desk.model.ggufinfo import inspect_gguf
from sr3desk.settings import Settings


def sr3desk(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line in a fresh interpreter; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "sr3desk", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def home() -> Path:
    return Path(os.environ["SR3DESK_HOME"])


def test_info_text_and_json(smollm2_gguf: Callable[[str], Path]) -> None:
    path = smollm2_gguf("Q4_K_M")
    out = sr3desk("model", "info", str(path))
    assert out.returncode == 0, out.stderr
    assert "Q4_K_M" in out.stdout and "576 dims" in out.stdout and "smollm2-sr3" in out.stdout
    out = sr3desk("model", "info", "--json", str(path))
    facts = json.loads(out.stdout)
    info = inspect_gguf(path)
    assert facts["dim"] == info.dim == 576
    assert facts["quantization"] == "Q4_K_M"
    assert facts["model_id"] == info.model_id
    assert facts["prompts"]["embed_token"] == "<|embed_token|>"


def test_info_of_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00")
    out = sr3desk("model", "info", str(path))
    assert out.returncode != 0
    assert out.stderr.startswith("sr3desk: error: ") and "truncated" in out.stderr
    assert len(out.stderr.splitlines()) == 1


def test_install_sets_the_default_once(
    tiny_gguf: Path, smollm2_gguf: Callable[[str], Path]
) -> None:
    out = sr3desk("model", "install", str(tiny_gguf), "--default")
    assert out.returncode == 0, out.stderr
    installed = home() / "models" / tiny_gguf.name
    assert out.stdout.strip() == str(installed)
    assert installed.stat().st_size == tiny_gguf.stat().st_size
    assert Settings.load(home()).model_path == str(installed)
    # A second model with --if-unset leaves the chosen default alone; plain --default
    # changes it (which defaults --if-unset replaces: tests/cli/test_install_default.py).
    other = smollm2_gguf("Q4_K_M")
    out = sr3desk("model", "install", str(other), "--default", "--if-unset")
    assert out.returncode == 0, out.stderr
    assert Settings.load(home()).model_path == str(installed)
    out = sr3desk("model", "install", str(other), "--default")
    assert Settings.load(home()).model_path == str(home() / "models" / other.name)
    # The configured model is what `embed` uses without --model.
    out = sr3desk("embed", "--json", "hello")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)[0]) == 576


def test_install_refuses_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.gguf"
    path.write_text("no")
    out = sr3desk("model", "install", str(path), "--default")
    assert out.returncode != 0 and "not a GGUF" in out.stderr
    assert not (home() / "models" / "bad.gguf").exists()
    assert Settings.load(home()).model_path is None


def test_convert_reports_progress_and_paths(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    """The exporter runs as a child process: its steps on stderr, the written files on stdout."""
    out = sr3desk(
        "model",
        "convert",
        str(tiny_qwen2_dir),
        str(tmp_path / "t.F32.gguf"),
        "--type",
        "f32",
        "--quant",
        "Q8_0",
    )
    assert out.returncode == 0, out.stderr
    written = [Path(line) for line in out.stdout.splitlines()]
    assert written == [tmp_path / "t.F32.gguf", tmp_path / "t.Q8_0.gguf"]
    assert inspect_gguf(written[1]).quantization == "Q8_0"
    assert "writing t.F32.gguf" in out.stderr and "quantizing" in out.stderr
    # A bad folder is one line naming it, from the child's error.
    out = sr3desk("model", "convert", str(tmp_path / "nope"), str(tmp_path / "x.gguf"))
    assert out.returncode == 2 and out.stderr.startswith("sr3desk: error: Cannot export")
    assert len(out.stderr.splitlines()) == 1


def test_convert_without_the_train_extra(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    """Without torch (shadowed by a package that fails to import), the extra is named."""
    shim = tmp_path / "shim" / "torch"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('torch is not installed')\n")
    out = sr3desk(
        "model",
        "convert",
        str(tiny_qwen2_dir),
        str(tmp_path / "out.gguf"),
        env={"PYTHONPATH": str(tmp_path / "shim")},
    )
    assert out.returncode != 0
    assert "'train' extra" in out.stderr and "sr3desk[train]" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "out.gguf").exists()


def test_fetch_offline_fails_at_once() -> None:
    out = sr3desk("model", "fetch", env={"HF_HUB_OFFLINE": "1"})
    assert out.returncode != 0
    assert "HF_HUB_OFFLINE" in out.stderr and "Traceback" not in out.stderr
    assert not list(home().glob("models/*.gguf"))


def test_fetch_from_the_hub_stand_in(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for f in tiny_qwen2_dir.iterdir():
        if f.is_file() and not f.name.startswith(".") and f.suffix != ".gguf":
            (repo / f.name).symlink_to(f)
    env = {"HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
    with HubStandIn({DEFAULT_REPO: repo}) as hub:
        env["HF_ENDPOINT"] = hub.url
        # The tiny model's width (64) does not fit K-quants' 256-wide blocks: Q8_0.
        out = sr3desk("model", "fetch", "--quant", "Q8_0", env=env)
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path == home() / "models" / "Search-R3.0-Small.Q8_0.gguf"
    info = inspect_gguf(path)
    assert info.quantization == "Q8_0" and info.dim == 64
    assert not (home() / "models" / ".download" / "Search-R3.0-Small").exists()
    assert Settings.load(home()).model_path == str(path)  # no default was set before
    out = sr3desk("embed", "--json", "fetched and ready")
    assert out.returncode == 0, out.stderr
    vec = np.array(json.loads(out.stdout)[0])
    assert vec.shape == (64,) and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5


@pytest.mark.parametrize("args", [["model"], ["model", "nope"]])
def test_usage_errors(args: list[str]) -> None:
    out = sr3desk(*args)
    assert out.returncode == 2 and "usage:" in out.stderr
