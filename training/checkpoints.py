"""What a training run writes, for SFT and RL alike: checkpoints, the final model, the log.

A run's ``out_dir`` holds::

    config.yaml              the run's config, loadable with --config
    log.jsonl                one JSON record per logged step and per evaluation
    checkpoint-NNNNNN/       resumable: accelerate's state + train_state.json
    final/                   a plain HF checkpoint (LoRA merged) + config.yaml,
                             train_state.json and sr3.json, for ``training.export``

``train_state.json`` holds the step and the config (and whatever else the stage
adds); ``sr3.json`` is the sidecar the exporter turns into the GGUF's ``sr3.``
metadata: model name, stage, prompts and, once ``training.eval`` has run, the
held-out figures.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sr3desk.model.prompts import PromptSet
from training.config import ConfigError, save_config
from training.export import SIDECAR

if TYPE_CHECKING:
    from accelerate import Accelerator

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
FINAL = "final"
BASE = "base"  # the re-drawn start of a run with model.init_std
STATE_FILE = "train_state.json"
LOG_FILE = "log.jsonl"


class StepCounter:
    """The step counter, saved with each checkpoint (accelerate's custom-object protocol)."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        """Counter state for the checkpoint."""
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the counter from a checkpoint."""
        self.step = int(state["step"])


def checkpoints(out_dir: Path) -> list[Path]:
    """Step checkpoints in ``out_dir``, oldest first."""
    return sorted(p for p in out_dir.glob(f"{CHECKPOINT_PREFIX}*") if (p / STATE_FILE).is_file())


def resolve_resume(resume: str, out_dir: Path, option: str) -> Path | None:
    """The checkpoint to resume from, or None.

    ``resume`` is the setting named ``option`` (e.g. ``train.resume``): empty (start
    afresh), 'auto' (the newest checkpoint in ``out_dir``, if any) or a folder.
    """
    if not resume:
        return None
    if resume == "auto":
        found = checkpoints(out_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise ConfigError(f"{option}={path} is not a checkpoint folder (no {STATE_FILE})")
    return path


def read_state(folder: str | Path) -> dict[str, Any]:
    """The ``train_state.json`` of a checkpoint or final/ folder (step, config, ...)."""
    return dict(json.loads((Path(folder) / STATE_FILE).read_text(encoding="utf-8")))


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """Write ``train_state.json`` into ``folder``."""
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")


def save_checkpoint(
    accelerator: Accelerator, out_dir: Path, step: int, state: dict[str, Any], keep: int
) -> Path:
    """Save a resumable checkpoint of every registered object; keep the newest ``keep``.

    Every process takes part (sharded state); the main process writes ``state``
    (step, config, ...) and removes the older checkpoints.
    """
    folder = out_dir / f"{CHECKPOINT_PREFIX}{step:06d}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        write_state(folder, state)
        for old in checkpoints(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return folder


def write_sidecar(folder: Path, **entries: Any) -> Path:
    """Merge ``entries`` (name, stage, prompts, eval) into ``folder/sr3.json``.

    A :class:`PromptSet` is stored as its fields (what the exporter reads back).
    """
    path = folder / SIDECAR
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for key, value in entries.items():
        if isinstance(value, PromptSet):
            value = {f.name: getattr(value, f.name) for f in fields(value)}
            value.pop("from_metadata")
        data[key] = value
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def read_prompts(model_dir: Path) -> PromptSet:
    """The prompts a checkpoint was trained with (its ``sr3.json``), else the defaults."""
    sidecar = model_dir / SIDECAR
    if not sidecar.is_file():
        return PromptSet()
    saved = json.loads(sidecar.read_text(encoding="utf-8")).get("prompts", {})
    known = {f.name for f in fields(PromptSet)} - {"from_metadata"}
    given: dict[str, Any] = {k: str(v) for k, v in saved.items() if k in known}
    return PromptSet(**given)


def save_model(
    folder: Path,
    model: Any,
    tokenizer: Any,
    name: str,
    stage: str,
    prompts: PromptSet,
    config: Any = None,
    state: dict[str, Any] | None = None,
    state_dict: dict[str, Any] | None = None,
) -> None:
    """Write an HF checkpoint the exporter reads: weights, tokenizer and ``sr3.json``.

    ``config`` and ``state`` add ``config.yaml`` and ``train_state.json``;
    ``state_dict`` replaces the model's own (the gathered shards under FSDP). An
    existing ``folder`` is replaced.
    """
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(str(folder), state_dict=state_dict)
    tokenizer.save_pretrained(str(folder))
    if config is not None:
        save_config(config, folder / "config.yaml")
    if state is not None:
        write_state(folder, state)
    write_sidecar(folder, name=name, stage=stage, prompts=prompts)


def save_final(
    accelerator: Accelerator,
    model: Any,
    tokenizer: Any,
    out_dir: Path,
    stage: str,
    prompts: PromptSet,
    config: Any,
    state: dict[str, Any],
    merge_lora: bool,
    state_dict: dict[str, Any] | None = None,
) -> Path:
    """Save ``out_dir/final``: the trained HF model (LoRA merged), its config and sidecar.

    ``model`` is the unwrapped transformers (or peft) model; ``config`` the run's
    config, whose ``model.path`` names the result (``<base>-<stage>``). The main
    process writes; every process waits for it.
    """
    final = out_dir / FINAL
    if accelerator.is_main_process:
        if merge_lora:
            model = model.merge_and_unload()
        name = f"{Path(config.model.path).name}-{stage}"
        save_model(final, model, tokenizer, name, stage, prompts, config, state, state_dict)
        log.info("final model: %s", final)
    accelerator.wait_for_everyone()
    return final


def append_log(out_dir: Path, record: dict[str, Any]) -> None:
    """Append one record to the run's ``log.jsonl``."""
    with (out_dir / LOG_FILE).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


__all__ = [
    "BASE",
    "CHECKPOINT_PREFIX",
    "FINAL",
    "SIDECAR",
    "STATE_FILE",
    "StepCounter",
    "append_log",
    "checkpoints",
    "read_prompts",
    "read_state",
    "resolve_resume",
    "save_checkpoint",
    "save_final",
    "save_model",
    "write_sidecar",
    "write_state",
]
