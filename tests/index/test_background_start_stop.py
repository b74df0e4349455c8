"""Stopping a background indexing run: only the process its record names, by pid and
command line (the run itself, ``sr3desk index``, is tested in tests/cli/test_tune_faults.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sr3desk.index.background import (
    INDEX_PROCESS,
    start_background_index,
    stop_background_index,
)

SLEEPER = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(120)"]


@dataclass
class FakeSettings:
    folders: list[str] = field(default_factory=list)
    model_path: str | None = None


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process leading its own process group, as a background run is started; it has
    said it runs (until it has, /proc may not show its command line yet)."""
    proc = subprocess.Popen(SLEEPER, stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    yield proc
    proc.kill()
    proc.wait()
    proc.stdout.close()


def record(home: Path, pid: int, command: list[str]) -> None:
    (home / INDEX_PROCESS).write_text(json.dumps({"pid": pid, "command": command}))


def test_stop_kills_the_recorded_run(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    record(tmp_path, sleeper.pid, SLEEPER)
    assert stop_background_index(tmp_path)
    assert sleeper.wait(10) != 0  # killed
    assert not (tmp_path / INDEX_PROCESS).exists()
    assert not stop_background_index(tmp_path)  # nothing recorded any more


def test_stop_spares_a_process_that_got_the_pid(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    record(tmp_path, sleeper.pid, [sys.executable, "-m", "sr3desk", "index"])
    assert not stop_background_index(tmp_path)
    assert sleeper.poll() is None  # still runs
    assert not (tmp_path / INDEX_PROCESS).exists()


def test_nothing_starts_without_folders_or_model(tmp_path: Path) -> None:
    assert start_background_index(tmp_path, FakeSettings([str(tmp_path)], None)) is None
    gone = str(tmp_path / "gone")
    assert start_background_index(tmp_path, FakeSettings([gone], "model.gguf")) is None
    assert not (tmp_path / INDEX_PROCESS).exists()
