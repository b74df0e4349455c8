"""Tuning the model to the user's own index, as the app sees it: no torch here.

The work is ``python -m training.tune`` (the ``train`` extra), run as a child process
that writes only in ``<data dir>/tune-staging/`` until it moves the tuned model into
the models folder. This module checks the extra, finds the current model's checkpoint,
runs the child, and switches the default model when the tuned one won; the switch is
one settings write, the same as ``model install --default``: the next indexing run
(``sr3desk index``/``watch``, the window) then builds the new model's generation beside
the old one, which serves until it is complete (:mod:`sr3desk.index.generations`).
:func:`sr3desk.index.background.start_background_index` starts that run at once,
detached, and remembers it so that the next switch or :func:`undo` can stop it: its
model is then no longer wanted.
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
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sr3desk.errors import Sr3Error
from sr3desk.index.background import stop_background_index
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


# -- the tune's events ------------------------------------------------------------------
# training.tune tells its parent (the window, `sr3desk tune`) what it does in events on
# its standard output, one JSON object a line (:class:`TuneEvent`); its log goes to its
# standard error, for people, and is never parsed. The fields of each event:
#   {"event": "stage", "stage": "sft"}                 a stage begins (a key of TUNE_STAGES)
#   {"event": "plan", "steps": 144, "s_per_step": 2.5} SFT's steps (s_per_step: the probe's
#                                                      measure, or null when steps were given)
#   {"event": "progress", "stage": "sft", "step": 12, "steps": 144, "s_per_step": 2.4}
#                                                      SFT's last logged step and its time
#   {"event": "result", "result": {...}}               what it did (also in STAGING/RESULT)
#   {"event": "error", "message": "..."}               why it failed (it exits with 2)
EVENT_STAGE, EVENT_PLAN, EVENT_PROGRESS = "stage", "plan", "progress"
EVENT_RESULT, EVENT_ERROR = "result", "error"
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    EVENT_STAGE: ("stage",),
    EVENT_PLAN: ("steps", "s_per_step"),
    EVENT_PROGRESS: ("stage", "step", "steps", "s_per_step"),
    EVENT_RESULT: ("result",),
    EVENT_ERROR: ("message",),
}
TUNE_STAGES = ("data", "probe", "sft", "export", "eval")  # in the order they run


@dataclass
class TuneEvent:
    """One event of a tune run: ``event`` (a key of :data:`EVENT_FIELDS`) and the fields
    that event carries; the others keep their defaults.

    >>> line = TuneEvent(EVENT_PROGRESS, stage="sft", step=12, steps=144, s_per_step=2.5).to_line()
    >>> line
    '{"event": "progress", "stage": "sft", "step": 12, "steps": 144, "s_per_step": 2.5}'
    >>> TuneEvent.from_line(line) == TuneEvent(EVENT_PROGRESS, "sft", 12, 144, 2.5)
    True
    >>> TuneEvent.from_line("12:00:01 == sft: python -m training.sft") is None
    True
    """

    event: str
    stage: str = ""
    step: int = 0
    steps: int = 0
    s_per_step: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def to_line(self) -> str:
        """The event as one JSON line (without its newline): its name and its fields."""
        data = {"event": self.event}
        data.update((name, getattr(self, name)) for name in EVENT_FIELDS[self.event])
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_line(cls, line: str) -> TuneEvent | None:
        """The event on one line of the run's output; None when the line is not one (a
        stray print of a library, a truncated line)."""
        try:
            raw = json.loads(line)
        except ValueError:
            return None
        if not isinstance(raw, dict) or raw.get("event") not in EVENT_FIELDS:
            return None
        fields = {name: raw[name] for name in EVENT_FIELDS[raw["event"]] if name in raw}
        return cls(str(raw["event"]), **fields)


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


def run_tune(command: Sequence[str], on_event: Callable[[TuneEvent], None]) -> dict[str, Any]:
    """Run ``command`` (from :func:`tune_command`), passing each event it sends to
    ``on_event``; its log (standard error) goes to this module's logger at debug level.

    Returns the result its last event carried; raises :class:`Sr3Error` when it fails,
    with the message of its error event (or, without one, its log's last line).
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result: dict[str, Any] | None = None
    error = ""
    last: list[str] = []
    with subprocess.Popen(
        list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        reader = threading.Thread(target=_log_lines, args=(proc.stderr, last), daemon=True)
        reader.start()
        for line in proc.stdout:
            event = TuneEvent.from_line(line)
            if event is None:
                log.debug("tune (not an event): %s", line.rstrip())
                continue
            if event.event == EVENT_RESULT:
                result = event.result
            elif event.event == EVENT_ERROR:
                error = event.message
            on_event(event)
        code = proc.wait()
        reader.join()
    if code != 0 or result is None:
        raise Sr3Error(f"Tuning failed (exit {code}): {error or ''.join(last[-1:])}")
    return result


def _log_lines(stream: IO[str], last: list[str]) -> None:
    """Log each line of ``stream`` at debug level until its end, keeping the last one in
    ``last`` (the run's log is read so that its pipe never fills)."""
    try:
        for line in stream:
            line = line.rstrip()
            if line:
                log.debug("tune: %s", line)
                last[:] = [line]
    except (OSError, ValueError):
        pass  # closed under it: the caller was interrupted and has stopped reading


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
        from sr3desk.index.store import Store

        Store.serve_previous(home, previous)
    return previous or None
