"""Tuning the model to the user's own index, as the app sees it: no torch here.

The work is ``python -m training.tune`` (the ``train`` extra), run as a child process
that writes only in ``<data dir>/tune-staging/`` until it moves the tuned model into
the models folder. This module checks the extra, finds the current model's checkpoint,
runs the child, and switches the default model when the tuned one won; the switch is
one settings write, the same as ``model install --default``: the next indexing run
(``sr3desk index``/``watch``, the window) then builds the new model's generation beside
the old one, which serves until it is complete (:mod:`sr3desk.index.generations`).
:func:`undo` puts the previous model back at once: its generation is still the active
one until the new one completes, and is rebuilt otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sr3desk.errors import Sr3Error
from sr3desk.settings import Settings

log = logging.getLogger(__name__)

# Modules of the `train` extra that tuning needs (looked up, never imported here).
TRAIN_MODULES = ("torch", "transformers", "safetensors", "yaml")
INSTALL_HINT = "tuning needs the train extra: pip install -e '.[train]'"
STAGING = "tune-staging"  # where training.tune writes everything
RESULT = "result.json"  # what it did, in STAGING
HISTORY = "tune-history.json"  # the default models a tune replaced, newest last


def missing_train_extra() -> str | None:
    """None when the ``train`` extra is installed, else the one line saying what to install."""
    for name in TRAIN_MODULES:
        if importlib.util.find_spec(name) is None:
            return f"{INSTALL_HINT} ({name} is missing)"
    return None


def _is_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def checkpoint_of(gguf: Path, root: Path | None = None) -> tuple[Path, Path | None] | None:
    """Where the weights of the model in ``gguf`` can be trained from: ``(checkpoint,
    None)`` when its HF checkpoint lies beside it (tuned models and test models are kept
    so), or ``(base checkpoint, delta folder)`` for a model shipped as a delta in a
    source checkout ``root`` (default: this one): ``assets/models/NAME/delta.json`` over
    ``build/models/BASE``. None when neither is found."""
    if _is_checkpoint(gguf.parent):
        return gguf.parent, None
    root = root or Path(__file__).resolve().parents[1]
    delta = root / "assets" / "models" / gguf.name.split(".")[0]
    try:
        manifest = json.loads((delta / "delta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = root / "build" / "models" / str(manifest["base"]["recipe"]).split("/")[0]
    return (base, delta) if _is_checkpoint(base) else None


def tune_command(
    home: Path,
    model: Path,
    base: Path,
    minutes: float,
    steps: int = 0,
    margin: float | None = None,
    teacher: bool = True,
    overrides: Sequence[str] = (),
    delta: Path | None = None,
) -> list[str]:
    """The ``python -m training.tune`` command line for these settings."""
    command = [sys.executable, "-m", "training.tune", "--home", str(home)]
    command += ["--model", str(model), "--base", str(base), "--minutes", str(minutes)]
    if delta is not None:
        command += ["--delta", str(delta)]
    if steps:
        command += ["--steps", str(steps)]
    if margin is not None:
        command += ["--margin", str(margin)]
    if not teacher:
        command.append("--no-teacher")
    return [*command, *overrides]


def run_tune(command: Sequence[str], home: Path, on_line: Callable[[str], None]) -> dict[str, Any]:
    """Run ``command`` (from :func:`tune_command`), passing each line it logs to ``on_line``.

    Returns the result it wrote (``tune-staging/result.json``); raises :class:`Sr3Error`
    when it fails, with its last line.
    """
    result_file = home / STAGING / RESULT
    result_file.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    last = ""
    with subprocess.Popen(
        list(command), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    ) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip()
            if line:
                last = line
                on_line(line)
        code = proc.wait()
    if code != 0 or not result_file.is_file():
        raise Sr3Error(f"Tuning failed (exit {code}): {last}")
    result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
    return result


def _history(home: Path) -> list[str]:
    try:
        return list(json.loads((home / HISTORY).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return []


def _save_history(home: Path, items: list[str]) -> None:
    tmp = home / f".{HISTORY}.part"
    tmp.write_text(json.dumps(items, indent=2), encoding="utf-8")
    os.replace(tmp, home / HISTORY)


def switch_default(home: Path, model: Path) -> str | None:
    """Make ``model`` the default model (as ``model install --default`` does), remembering
    the one it replaces for :func:`undo`; returns that one's path (None: there was none)."""
    settings = Settings.load(home)
    previous = settings.model_path
    _save_history(home, [*_history(home), previous or ""])
    settings.model_path = str(model)
    settings.model_auto = None
    settings.save(home)
    log.info("default model: %s (was %s)", model, previous)
    return previous


def undo(home: Path) -> str | None:
    """Go back to the default model the last switch replaced; returns its path (None:
    keyword search only). Raises :class:`Sr3Error` when no tune switched the model."""
    items = _history(home)
    if not items:
        raise Sr3Error("Nothing to undo: no tune has changed the default model")
    previous = items.pop()
    settings = Settings.load(home)
    settings.model_path = previous or None
    settings.model_auto = None
    settings.save(home)
    _save_history(home, items)
    log.info("default model back to %s", previous or "none")
    return previous or None


def start_background_index(home: Path) -> int | None:
    """Start ``sr3desk index`` over the remembered folders, detached, so the new default
    model's generation is built while the old one serves; returns its pid (None: no
    folders are remembered). Its output goes to ``<data dir>/tune-index.log``."""
    folders = Settings.load(home).folders
    if not folders:
        return None
    command = [sys.executable, "-m", "sr3desk", "index", *folders, "--db", str(home)]
    with (home / "tune-index.log").open("ab") as logfile:
        proc = subprocess.Popen(
            command,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc.pid
