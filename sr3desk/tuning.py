"""Tuning the model to the user's own index, as the app sees it: no torch here.

The work is ``python -m training.tune`` (the ``train`` extra), run as a child process
that writes only in ``<data dir>/tune-staging/`` until it moves the tuned model into
the models folder. This module checks the extra, finds the current model's checkpoint,
runs the child, and switches the default model when the tuned one won; the switch is
one settings write, the same as ``model install --default``: the next indexing run
(``sr3desk index``/``watch``, the window) then builds the new model's generation beside
the old one, which serves until it is complete (:mod:`sr3desk.index.generations`).
:func:`start_background_index` starts that run at once, detached, and remembers it so
that the next switch or :func:`undo` can stop it: its model is then no longer wanted.
:func:`undo` puts the previous model back at once: its generation is still the active
one until the new one completes, and is rebuilt otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
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
TUNE_LOCK = "tune.lock"  # held by the running tune (one per data directory)
HISTORY = "tune-history.json"  # the default models a tune replaced, newest last
# Of the minutes asked, the share SFT is sized to fill (training.tune); data, the probe,
# export and the A/B take the rest. The window's ETA reads it too.
TRAIN_SHARE = 0.6
INDEX_LOG = "tune-index.log"  # the output of the re-embedding a switch starts
INDEX_PROCESS = "tune-index.json"  # that re-embedding's pid and command line
STOP_TIMEOUT_S = 10.0  # the longest a killed re-embedding takes to be gone

# The re-embeddings this process started, by pid: kept so that they are reaped (the
# window outlives them) and never garbage-collected while they run.
_started: dict[int, subprocess.Popen[bytes]] = {}


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
    None)`` when its HF checkpoint lies beside it (test models and tuned models of a
    model that had one are kept so), or ``(base checkpoint, delta folder)`` for a model
    kept as a delta: a ``delta.json`` beside the GGUF (tuned models of the shipped
    model) or the shipped ``assets/models/NAME/`` of a source checkout ``root``
    (default: this one), over ``build/models/BASE`` of that checkout. None when
    neither is found or the base is not built."""
    if _is_checkpoint(gguf.parent):
        return gguf.parent, None
    root = root or Path(__file__).resolve().parents[1]
    for delta in (gguf.parent, root / "assets" / "models" / gguf.name.split(".")[0]):
        try:
            manifest = json.loads((delta / "delta.json").read_text(encoding="utf-8"))
            recipe = str(manifest["base"]["recipe"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        base = root / "build" / "models" / recipe.split("/")[0]
        return (base, delta) if _is_checkpoint(base) else None
    return None


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
    when it fails, with its last line. (A run that ends well has written a new result:
    each one clears the staging folder when it starts, under the tune lock, so another
    tune's files are never touched here.)
    """
    result_file = home / STAGING / RESULT
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
    the one it replaces for :func:`undo`; returns that one's path (None: there was none).
    A re-embedding an earlier switch started is stopped first: its model is replaced."""
    stop_background_index(home)
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
    keyword search only). Raises :class:`Sr3Error` when no tune switched the model.

    The re-embedding the switch started is stopped first, so that the generation it
    builds can no longer replace the served one; the next indexing run drops it. When
    the new model's vectors had already replaced the old ones, the index serves the
    old ones again at once (the last swap keeps them), or, while another indexer holds
    the index, as soon as it next opens with the model.
    """
    items = _history(home)
    if not items:
        raise Sr3Error("Nothing to undo: no tune has changed the default model")
    stop_background_index(home)
    previous = items.pop()
    settings = Settings.load(home)
    settings.model_path = previous or None
    settings.model_auto = None
    settings.save(home)
    _save_history(home, items)
    log.info("default model back to %s", previous or "none")
    if previous:
        serve_previous(home, previous)
    return previous or None


def serve_previous(home: Path, model: str) -> bool:
    """Make the index of ``home`` serve the kept previous generation again when it
    holds the vectors of the GGUF at ``model`` (:meth:`Pointer.restore_previous`);
    returns True when it did. False when another process holds the index (it does the
    same when it opens with that model) or no such generation is kept."""
    from sr3desk.errors import IndexAccessError
    from sr3desk.index.generations import Pointer
    from sr3desk.index.lock import WriterLock
    from sr3desk.index.store import INDEX_DIR

    lock = WriterLock(home)
    try:
        lock.acquire()
    except IndexAccessError:
        return False
    try:
        pointer = Pointer(home / INDEX_DIR)
        pointer.refresh(force=True)
        kept = pointer.previous
        if kept is None or kept.model_path is None:
            return False
        if Path(kept.model_path).resolve() != Path(model).resolve():
            return False
        return pointer.restore_previous(kept.model_id)
    finally:
        lock.release()


def start_background_index(home: Path) -> int | None:
    """Start ``sr3desk index`` over the remembered folders with the default model,
    detached, so that its generation is built while the old one serves; returns its pid
    (None: no folder or no default model). One an earlier switch started is stopped
    first. Its output goes to ``<data dir>/tune-index.log``; its pid and command line to
    ``tune-index.json``, for :func:`stop_background_index`."""
    stop_background_index(home)
    settings = Settings.load(home)
    # A folder gone from the disk would fail the whole run; the indexer still reads
    # every remembered one that exists (they are its rebuild roots).
    folders = [f for f in settings.folders if os.path.exists(f)]
    if not folders or not settings.model_path:
        return None
    # The model is named: `index` would prefer $SR3DESK_MODEL to the new default.
    command = [sys.executable, "-m", "sr3desk", "index", "--db", str(home)]
    command += ["--model", settings.model_path, *folders]
    with (home / INDEX_LOG).open("ab") as logfile:
        proc = subprocess.Popen(
            command,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    for pid in [pid for pid, child in _started.items() if child.poll() is not None]:
        del _started[pid]
    _started[proc.pid] = proc
    tmp = home / f".{INDEX_PROCESS}.part"
    tmp.write_text(json.dumps({"pid": proc.pid, "command": command}), encoding="utf-8")
    os.replace(tmp, home / INDEX_PROCESS)
    log.info("re-embedding for %s started (pid %d)", settings.model_path, proc.pid)
    return proc.pid


def stop_background_index(home: Path) -> bool:
    """Kill the re-embedding :func:`start_background_index` started in ``home`` (its
    whole process group) if it still runs, and wait until it is gone; returns True when
    it was running. The index is made to survive a kill at any instant; a gentler stop
    would still commit its last vectors and could complete the unwanted generation."""
    record = home / INDEX_PROCESS
    try:
        raw = json.loads(record.read_text(encoding="utf-8"))
        pid, command = int(raw["pid"]), [str(a) for a in raw["command"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    running = _runs(pid, command)
    if running:
        log.info("stopping the re-embedding (pid %d)", pid)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            running = False
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    child = _started.pop(pid, None)
    if child is not None and running:
        try:
            child.wait(STOP_TIMEOUT_S)  # reaped: our own child
        except subprocess.TimeoutExpired:
            log.warning("the re-embedding (pid %d) did not end when killed", pid)
    record.unlink(missing_ok=True)
    return running


def _runs(pid: int, command: list[str]) -> bool:
    """True when ``pid`` is alive and runs ``command`` (not a process that got the pid
    of one long gone). Only Linux's /proc tells; elsewhere nothing is killed."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return _alive(pid) and cmdline.split(b"\0")[:-1] == [os.fsencode(a) for a in command]


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and has not exited (a zombie waiting to be reaped by
    its parent has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])
