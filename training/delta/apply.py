"""Apply a delta: base HF checkpoint + delta -> F16 GGUF, checked against the reference
vectors, then quantized.

The merged HF checkpoint lives in a temporary folder inside ``out_dir`` and is gone
when :func:`apply_delta` returns; what stays is the F16 GGUF and its quantizations.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.delta import reference, tensors
from training.delta.manifest import REFERENCE, TENSORS, DeltaError, Manifest, missing_files

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_DTYPES = {"torch.float16": "F16", "torch.float32": "F32"}


@dataclass
class Applied:
    """What :func:`apply_delta` wrote and measured.

    ``paths``: the F16 GGUF, then its quantizations; ``cosines``: per reference text;
    ``seconds``: wall time of "merge" (checkpoint and F16 GGUF), "check" (reference
    vectors) and "quantize".
    """

    paths: list[Path]
    cosines: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)


def load(delta_dir: Path) -> tuple[Manifest, dict[str, torch.Tensor], np.ndarray]:
    """Read a delta folder: manifest, tensors and reference vectors.

    DeltaError when a file is missing or the tensors are not the ones the manifest lists.
    """
    from safetensors.torch import load_file

    missing = missing_files(delta_dir)
    if missing:
        raise DeltaError(f"Delta folder {delta_dir} lacks {', '.join(missing)}")
    manifest = Manifest.read(delta_dir)
    delta = load_file(str(delta_dir / TENSORS))
    listed = {n: (s["dtype"], tuple(s["shape"])) for n, s in manifest.tensors.items()}
    stored = {
        n: (_DTYPES.get(str(t.dtype), str(t.dtype)), tuple(t.shape)) for n, t in delta.items()
    }
    if listed != stored:
        odd = sorted(set(listed.items()) ^ set(stored.items()))[:3]
        raise DeltaError(f"{delta_dir / TENSORS} does not hold what delta.json lists: {odd}")
    want = np.load(delta_dir / REFERENCE)
    if want.ndim != 2 or want.shape[0] != len(manifest.references):
        raise DeltaError(
            f"{delta_dir / REFERENCE} holds {want.shape}, not one vector per reference text "
            f"({len(manifest.references)})"
        )
    return manifest, delta, want


def check_base(base_dir: Path, manifest: Manifest) -> None:
    """Fail unless ``base_dir`` holds the base tensors the delta was extracted against."""
    sha, count = tensors.fingerprint(base_dir, set(manifest.tensors))
    if sha != manifest.base.sha256 or count != manifest.base.tensors:
        raise DeltaError(
            f"The delta {manifest.name} was made for the base {manifest.base.recipe or '?'} "
            f"({manifest.base.tensors} kept tensors, sha256 {manifest.base.sha256[:12]}), but "
            f"{base_dir} has {count} with sha256 {sha[:12]}: rebuild the base with "
            "`make models`, or extract the delta again from this base"
        )


def merged_gguf(
    base_dir: Path,
    delta: Mapping[str, torch.Tensor],
    manifest: Manifest,
    work: Path,
    out: Path,
) -> Path:
    """Merge ``delta`` into ``base_dir`` under ``work`` and export it to the F16 GGUF ``out``.

    The GGUF carries the manifest's name, stage, prompts and held-out figures.
    Returns ``out``.
    """
    from sr3desk.model.prompts import PromptSet
    from training.export import convert

    hf = tensors.merge(base_dir, delta, work / "hf")
    convert(
        hf,
        out,
        out_type="f16",
        name=manifest.name,
        stage=manifest.stage,
        eval_metrics=manifest.eval,
        prompts=PromptSet(**manifest.prompts),
    )
    return out


def apply_delta(
    delta_dir: str | Path,
    base_dir: str | Path,
    out_dir: str | Path,
    quants: Iterable[str] = ("Q8_0",),
    threads: int | None = None,
) -> Applied:
    """Apply the delta in ``delta_dir`` to the HF checkpoint ``base_dir``.

    Writes ``out_dir/<name>.F16.gguf``, checks that it gives the delta's reference
    vectors (every cosine >= reference.MIN_COSINE) and quantizes it (``<name>.<QUANT>.gguf``
    per entry of ``quants``). ``threads``: llama.cpp threads for the check (None: the
    physical cores). Returns :class:`Applied`; raises DeltaError naming what does not
    match (the base's tensors, a reference text and its cosine) and removes the F16 file
    it wrote when the check fails.
    """
    from training.export.quantize import quant_path, quantize

    src, base, out = Path(delta_dir), Path(base_dir), Path(out_dir)
    manifest, delta, want = load(src)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    check_base(base, manifest)
    out.mkdir(parents=True, exist_ok=True)
    f16 = out / f"{manifest.name}.F16.gguf"
    with tempfile.TemporaryDirectory(prefix=".delta-", dir=out) as work:
        merged_gguf(base, delta, manifest, Path(work), f16)
    seconds["merge"] = time.perf_counter() - start

    start = time.perf_counter()
    try:
        got = reference.embed(f16, manifest.references, threads)
        cos = reference.check(got, want, manifest.references, f16.name)
    except DeltaError:
        f16.unlink(missing_ok=True)
        raise
    seconds["check"] = time.perf_counter() - start
    log.info(
        "%s reproduces the %d reference vectors (lowest cosine %.6f)",
        f16.name,
        len(cos),
        float(cos.min()),
    )

    start = time.perf_counter()
    paths = [f16] + [quantize(f16, quant_path(f16, q), q) for q in quants]
    seconds["quantize"] = time.perf_counter() - start
    log.info(
        "applied %s: merge %.1f s, check %.1f s, quantize %.1f s",
        manifest.name,
        seconds["merge"],
        seconds["check"],
        seconds["quantize"],
    )
    return Applied(paths, cos, seconds)
