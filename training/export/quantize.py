"""Quantization with llama.cpp's own quantizer, through llama-cpp-python."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from training.export.arch import ExportError

log = logging.getLogger(__name__)

# Suffix of a float GGUF's stem that a quantized sibling replaces ("x.F16" -> "x.Q8_0").
_FLOAT_SUFFIX = re.compile(r"\.(f32|f16|bf16)$", re.IGNORECASE)


def quant_names() -> list[str]:
    """The quantization names llama.cpp offers, e.g. ``Q8_0`` and ``Q4_K_M``."""
    import llama_cpp

    prefix = "LLAMA_FTYPE_MOSTLY_"
    return sorted(n[len(prefix) :] for n in dir(llama_cpp) if n.startswith(prefix))


def ftype_of(name: str) -> int:
    """The llama.cpp file type number for a quantization name; ExportError if unknown."""
    import llama_cpp

    value = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name.upper()}", None)
    if not isinstance(value, int):
        raise ExportError(f"Unknown quantization {name!r}; choose from: {', '.join(quant_names())}")
    return value


def quant_path(base: Path, name: str) -> Path:
    """Where the ``name`` quantization of ``base`` goes: its float suffix replaced."""
    stem = _FLOAT_SUFFIX.sub("", base.stem)
    return base.with_name(f"{stem}.{name.upper()}{base.suffix}")


def quantize(src: Path, dst: Path, name: str, threads: int | None = None) -> Path:
    """Quantize the GGUF ``src`` to ``dst`` as ``name`` (e.g. "Q4_K_M"); returns ``dst``.

    Writes to a temporary name first so a failed run leaves no half-written model.
    """
    import llama_cpp

    from sr3desk.model.native import llama_log

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype_of(name)
    params.nthread = threads or (os.cpu_count() or 1)
    tmp = dst.with_name(dst.name + ".part")
    log.info("quantizing %s -> %s (%s)", src.name, dst.name, name.upper())
    # llama.cpp warns once per tensor that falls back to another type (576-wide rows do
    # not fit Q4_K's 256-element blocks); importing native routes its log into logging,
    # where that chatter stays below WARNING and errors still show.
    native_log = llama_log
    level = native_log.level
    native_log.setLevel(logging.WARNING)
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    finally:
        native_log.setLevel(level)
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ExportError(f"Cannot quantize {src} to {name}: llama.cpp's quantizer failed ({rc})")
    tmp.replace(dst)
    return dst
