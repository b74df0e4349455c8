"""Convert a Hugging Face checkpoint to GGUF with the training pipeline's exporter.

The app never imports ``training`` (the pipeline imports the app, not the other way
round) and never imports torch, so the exporter runs as a child process,
``python -m training.export``, with the same interpreter. Its log lines on stderr
are the progress (writing, checking the tokenizer, quantizing), the paths it prints
on stdout are the result, and its one-line error becomes an :class:`Sr3Error`.
Converting needs the ``train`` extra (torch, transformers, safetensors); without
it the child exits with :data:`EXIT_MISSING_EXTRA` and
:class:`~sr3desk.errors.MissingExtraError` names the extra.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from sr3desk.errors import MissingExtraError, Sr3Error

EXPORT_MODULE = "training.export"
ERROR_PREFIX = f"{EXPORT_MODULE}: error: "
EXIT_MISSING_EXTRA = 3  # the exporter's exit status when the train extra is missing
# Modules of the `train` extra that converting needs (looked up here, imported by the
# child's --check); tuning needs more of the extra (sr3desk.tuning).
EXPORT_MODULES = ("torch", "transformers", "safetensors")
FEATURE = "Converting a model"


class ConversionCancelled(Sr3Error):
    """The caller cancelled a conversion; the child was stopped."""


def train_extra_installed() -> bool:
    """Whether the ``train`` extra's modules can be found (cheap: nothing is imported)."""
    return all(importlib.util.find_spec(m) is not None for m in EXPORT_MODULES)


def require_train_extra() -> None:
    """Check that conversion can run here: the extra is there and imports cleanly.

    The imports are tried in a child process (``python -m training.export --check``),
    so a broken install is found before a long download, not after. Raises
    MissingExtraError naming the ``train`` extra.
    """
    if not train_extra_installed():
        raise MissingExtraError(FEATURE, "train")
    _run_export(["--check"], None, None)


def convert_checkpoint(
    hf_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    out_type: str = "f16",
    quants: Iterable[str] = (),
    name: str | None = None,
    keep_base: bool = True,
    progress: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[Path]:
    """Convert ``hf_dir`` to the GGUF ``out_path`` (and its quantizations) in a child process.

    ``out_type`` is "f32", "f16" or "bf16"; each of ``quants`` ("Q8_0", "Q4_K_M")
    adds a quantized file beside ``out_path``; ``keep_base=False`` deletes the float
    file once they exist. ``progress`` receives each line the exporter logs;
    setting ``cancel`` stops the child and raises :class:`ConversionCancelled`.
    Returns the written paths, float file first (when kept). Raises
    MissingExtraError without the ``train`` extra, Sr3Error with the exporter's
    reason when the conversion fails.
    """
    args = [str(hf_dir), str(out_path), "--type", out_type]
    quant_list = list(quants)
    if quant_list:
        args += ["--quant", *quant_list]
    if name:
        args += ["--name", name]
    if not keep_base:
        args.append("--no-keep-base")
    out = _run_export(args, progress, cancel)
    return [Path(line) for line in out.splitlines() if line.strip()]


def _run_export(
    args: Sequence[str],
    progress: Callable[[str], None] | None,
    cancel: threading.Event | None,
) -> str:
    """Run ``python -m training.export ARGS``; returns its stdout, reports its stderr lines."""
    cmd = [sys.executable, "-m", EXPORT_MODULE, *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []
    tail: list[str] = []
    with subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        stderr = proc.stderr

        def pump() -> None:
            for raw in stderr:
                lines.put(raw.rstrip("\n"))
            lines.put(None)

        reader = threading.Thread(target=pump, name="sr3desk-export-log", daemon=True)
        reader.start()
        # Reports run on the caller's thread; the child is polled for cancel between lines.
        while True:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if cancel is not None and cancel.is_set():
                    proc.terminate()
                    proc.wait()
                    raise ConversionCancelled("The conversion was cancelled") from None
                continue
            if line is None:
                break
            if line.startswith(ERROR_PREFIX):
                errors.append(line.removeprefix(ERROR_PREFIX))
            elif line.strip():
                tail = [*tail[-4:], line]
                if progress is not None:
                    progress(line)
        out = proc.stdout.read()
        code = proc.wait()
    if code == EXIT_MISSING_EXTRA:
        raise MissingExtraError(FEATURE, "train")
    if code != 0:
        reason = errors[-1] if errors else (tail[-1] if tail else f"exit status {code}")
        raise Sr3Error(reason)
    return out


__all__ = [
    "EXIT_MISSING_EXTRA",
    "ConversionCancelled",
    "convert_checkpoint",
    "require_train_extra",
    "train_extra_installed",
]
