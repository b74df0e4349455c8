"""Export a Search-R3 Hugging Face checkpoint to GGUF for the app's llama.cpp runtime.

``convert(hf_dir, out_path)`` writes the weights (Qwen2 or Llama architecture), the
tokenizer with ``<|embed_token|>`` as a control token, the chat template and the
``sr3.`` metadata (prompts, model name and stage, held-out metrics), checks that
llama.cpp tokenizes like the HF tokenizer, and quantizes with llama.cpp's quantizer.
Run it as ``python -m training.export HF_DIR OUT.gguf --type f16 --quant Q8_0 Q4_K_M``.

A checkpoint may carry an ``sr3.json`` beside config.json with the keys ``name``,
``stage``, ``eval`` and ``prompts`` (PromptSet fields); explicit arguments win.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from sr3desk.model.prompts import PromptSet
from training.export.arch import ARCHS, ExportError
from training.export.quantize import ftype_of, quant_path, quantize
from training.export.verify import check_tokenizer
from training.export.writer import OUT_TYPES, Sr3Meta, write_gguf

log = logging.getLogger(__name__)

SIDECAR = "sr3.json"
STAGES = ("base", "sft", "rl")


def convert(
    hf_dir: str | Path,
    out_path: str | Path,
    out_type: str = "f16",
    quants: Iterable[str] = (),
    name: str | None = None,
    stage: str | None = None,
    eval_metrics: Mapping[str, Any] | None = None,
    prompts: PromptSet | None = None,
    keep_base: bool = True,
    verify: bool = True,
    pre: str | None = None,
) -> list[Path]:
    """Convert the HF checkpoint ``hf_dir`` to the GGUF ``out_path`` and its quantizations.

    ``out_type`` is "f32", "f16" or "bf16"; each name in ``quants`` (e.g. "Q8_0",
    "Q4_K_M") adds ``<stem>.<QUANT>.gguf`` beside ``out_path`` (a ".F16"-style suffix of
    the stem is replaced). ``name``/``stage``/``eval_metrics``/``prompts`` fill the
    ``sr3.`` keys (defaults: sr3.json, the folder name, "base", none, stage-1 prompts).
    ``keep_base=False`` deletes the float file once the quantizations exist; ``verify``
    compares llama.cpp's tokenization with the HF tokenizer's. Returns the written paths,
    float file first (when kept). Raises ExportError with a one-line reason.
    """
    src = Path(hf_dir)
    dst = Path(out_path)
    if out_type.lower() not in OUT_TYPES:
        raise ExportError(
            f"Unknown output type {out_type!r}; choose from: {', '.join(sorted(OUT_TYPES))}"
        )
    if not src.is_dir():
        raise ExportError(f"Cannot export {src}: no such folder")
    quant_list = [q.upper() for q in quants]
    for q in quant_list:
        ftype_of(q)  # fail before the long write, not after
    if dst.suffix != ".gguf":
        raise ExportError(f"Output {dst} should end in .gguf")
    dst.parent.mkdir(parents=True, exist_ok=True)
    meta = _meta(src, name, stage, eval_metrics, prompts)

    tmp = dst.with_name(dst.name + ".part")
    try:
        _, tokenizer = write_gguf(src, tmp, out_type.lower(), meta, pre=pre)
        if verify:
            log.info("checking %s's tokenization against llama.cpp", dst.name)
            check_tokenizer(tokenizer, tmp, meta.prompts, str(src))
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    written = [dst]
    for q in quant_list:
        written.append(quantize(dst, quant_path(dst, q), q))
    if not keep_base and quant_list:
        dst.unlink()
        written.remove(dst)
    return written


def _meta(
    src: Path,
    name: str | None,
    stage: str | None,
    eval_metrics: Mapping[str, Any] | None,
    prompts: PromptSet | None,
) -> Sr3Meta:
    side = _sidecar(src)
    stage = stage or side.get("stage") or "base"
    if stage not in STAGES:
        raise ExportError(f"Unknown model stage {stage!r}; choose from: {', '.join(STAGES)}")
    if prompts is None:
        known = {f.name for f in fields(PromptSet)} - {"from_metadata"}
        given = side.get("prompts") or {}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ExportError(f"Cannot export {src}: {SIDECAR} has unknown prompt keys {unknown}")
        prompts = PromptSet(**given)
    metrics = eval_metrics if eval_metrics is not None else side.get("eval")
    return Sr3Meta(
        prompts=prompts,
        name=name or side.get("name") or src.resolve().name,
        stage=stage,
        eval_metrics=metrics,
    )


def _sidecar(src: Path) -> dict[str, Any]:
    path = src / SIDECAR
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ExportError(f"Cannot export {src}: {SIDECAR} is not valid JSON") from err
    if not isinstance(data, dict):
        raise ExportError(f"Cannot export {src}: {SIDECAR} should hold a JSON object")
    return data


__all__ = ["ARCHS", "OUT_TYPES", "ExportError", "convert", "quantize"]
