"""Running a pipeline's stages, each one process: the frame that tune and recipe share.

A stage is the command a user could run alone (``python -m training.sft ...``); it runs
in a process of its own so that its memory is returned before the next one starts.
:func:`run_stage` runs one to the end and times it; :func:`export_command` is the
export stage's command (F16 and :data:`QUANT` GGUFs of an HF checkpoint).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

QUANT = "Q8_0"  # what the app ships and runs by default; every row is measured on it
POLL_S = 0.5  # how often a watched stage's ``watch`` is called while it runs


class StageError(RuntimeError):
    """A stage's process failed: ``name``, its exit ``code`` and its ``command``."""

    def __init__(self, name: str, code: int, command: Sequence[str]) -> None:
        super().__init__(f"{name} failed (exit {code}): {' '.join(command)}")
        self.name, self.code, self.command = name, code, list(command)


def python_module(module: str, *args: str | Path) -> list[str]:
    """The command line running ``python -m module args...`` with this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]


def run_stage(
    name: str,
    command: Sequence[str],
    stages: dict[str, float],
    *,
    stdout: IO[Any] | Path | None = None,
    watch: Callable[[], None] | None = None,
) -> float:
    """Run one stage's process to the end, offline (``HF_HUB_OFFLINE``).

    Takes the stage's ``name``, its ``command``, the ``stages`` table of seconds per
    stage name (this run's time is added to it), where its standard output goes
    (``stdout``: an open file, a file path written anew, or None: this process's own)
    and ``watch``, called every :data:`POLL_S` while it runs and once after it ended.
    Returns the seconds it took; raises :class:`StageError` when it exits non-zero.
    """
    log.info("== %s: %s", name, " ".join(command))
    t0 = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if isinstance(stdout, Path):
        with stdout.open("w", encoding="utf-8") as fh:
            code = _wait(subprocess.Popen(list(command), env=env, stdout=fh), watch)
    else:
        code = _wait(subprocess.Popen(list(command), env=env, stdout=stdout), watch)
    seconds = time.perf_counter() - t0
    stages[name] = stages.get(name, 0.0) + seconds
    if code != 0:
        raise StageError(name, code, command)
    log.info("== %s done in %.1f min", name, seconds / 60)
    return seconds


def _wait(proc: subprocess.Popen[Any], watch: Callable[[], None] | None) -> int:
    """Wait for ``proc`` to end, calling ``watch`` meanwhile; returns its exit status."""
    with proc:
        while True:
            try:
                code = proc.wait(POLL_S if watch is not None else None)
            except subprocess.TimeoutExpired:
                if watch is not None:
                    watch()
                continue
            if watch is not None:
                watch()  # what it wrote last
            return code


def export_command(
    hf_dir: Path,
    f16: Path,
    stage: str,
    *,
    name: str | None = None,
    eval_json: Path | None = None,
) -> tuple[list[str], Path]:
    """The command exporting ``hf_dir`` to the F16 GGUF ``f16`` and its :data:`QUANT`
    one beside it, stamped with the training ``stage``, the model's ``name`` (default:
    the exporter's) and the figures in ``eval_json``; returns it and the QUANT GGUF's
    path."""
    command = python_module("training.export", hf_dir, f16, "--type", "f16", "--quant", QUANT)
    if name is not None:
        command += ["--name", name]
    command += ["--stage", stage]
    if eval_json is not None:
        command += ["--eval-json", str(eval_json)]
    quant = f16.with_name(f16.name.removesuffix(".F16.gguf") + f".{QUANT}.gguf")
    return command, quant


__all__ = ["QUANT", "StageError", "export_command", "python_module", "run_stage"]
