"""Extract a delta: the tensors a trained checkpoint changed, with what it takes to check
that applying them gives the trained model back.

The delta folder is written beside its destination and swapped into place whole, so a
failed extraction leaves any previous delta as it was.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from training.delta import reference, tensors
from training.delta.apply import merged_gguf
from training.delta.manifest import (
    MAX_BYTES,
    REFERENCE,
    TENSORS,
    BaseRef,
    DeltaError,
    Manifest,
)

log = logging.getLogger(__name__)

STAGES = ("sft", "rl")
RECIPE_STAMP = ".recipe"  # training.testmodels' stamp in a built model folder


def _sidecar(folder: Path) -> dict[str, Any]:
    from training.export import SIDECAR

    path = folder / SIDECAR
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _source(trained_dir: Path) -> dict[str, Any]:
    from training.checkpoints import STATE_FILE, read_state

    out: dict[str, Any] = {"path": str(trained_dir)}
    if (trained_dir / STATE_FILE).is_file():
        out["step"] = read_state(trained_dir).get("step")
    return out


def extract_delta(
    base_dir: str | Path,
    trained_dir: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    stage: str | None = None,
    eval_metrics: Mapping[str, Any] | None = None,
    max_bytes: int = MAX_BYTES,
    threads: int | None = None,
) -> Manifest:
    """Write the delta of ``trained_dir`` over ``base_dir`` (both HF checkpoints) to ``out_dir``.

    ``out_dir`` gets ``delta.safetensors`` (the differing tensors: matrices F16, vectors
    F32), ``reference.npy`` (the vectors of :data:`reference.TEXTS` from the F16 GGUF of
    base + delta, through the app's runtime) and ``delta.json``. ``name`` defaults to
    ``out_dir``'s name; ``stage`` and ``eval_metrics`` to the trained checkpoint's
    ``sr3.json``. Returns the manifest; raises DeltaError when the checkpoints do not
    match, nothing changed, the stage is unknown or the delta's files exceed ``max_bytes``.
    """
    base, trained, out = Path(base_dir), Path(trained_dir), Path(out_dir)
    name = name or out.resolve().name
    side = _sidecar(trained)
    stage = stage or side.get("stage")
    if stage not in STAGES:
        raise DeltaError(
            f"Stage of {trained} is {stage!r}; give --stage {' or '.join(STAGES)} "
            "(a delta ships a trained model)"
        )
    changed = tensors.changed(base, trained)
    if not changed:
        raise DeltaError(f"{trained} holds the same weights as the base {base}: nothing to ship")
    nbytes = sum(t.numel() * t.element_size() for t in changed.values())
    if nbytes > max_bytes:
        biggest = max(changed, key=lambda n: changed[n].numel())
        raise DeltaError(
            f"The delta of {trained} is {nbytes / 1e6:.1f} MB ({len(changed)} tensors, the "
            f"largest {biggest}), over the {max_bytes / 1e6:g} MB cap: train fewer layers "
            "(model.train_layers) and leave the token rows frozen (model.train_token_rows)"
        )
    metrics = dict(eval_metrics) if eval_metrics is not None else side.get("eval")
    manifest = _manifest(base, trained, changed, name, stage, metrics)
    _write(out, base, trained, changed, manifest, max_bytes, threads)
    log.info(
        "wrote %s: %d tensors, %.1f MB, %d reference vectors",
        out,
        len(changed),
        nbytes / 1e6,
        len(manifest.references),
    )
    return manifest


def _manifest(
    base: Path,
    trained: Path,
    changed: Mapping[str, Any],
    name: str,
    stage: str,
    metrics: dict[str, Any] | None,
) -> Manifest:
    """The manifest of the ``changed`` tensors of ``trained`` over ``base``."""
    from training.checkpoints import read_prompts

    sha, kept = tensors.fingerprint(base, set(changed))
    stamp = base / RECIPE_STAMP
    prompts = read_prompts(trained)
    return Manifest(
        name=name,
        stage=stage,
        base=BaseRef(
            recipe=stamp.read_text(encoding="utf-8").strip() if stamp.is_file() else None,
            sha256=sha,
            tensors=kept,
        ),
        tensors={
            n: {"dtype": tensors.stored_dtype(tuple(t.shape)), "shape": list(t.shape)}
            for n, t in sorted(changed.items())
        },
        references=list(reference.TEXTS),
        prompts={
            f.name: getattr(prompts, f.name) for f in fields(prompts) if f.name != "from_metadata"
        },
        eval=metrics,
        source=_source(trained),
    )


def _write(
    out: Path,
    base: Path,
    trained: Path,
    changed: dict[str, Any],
    manifest: Manifest,
    max_bytes: int,
    threads: int | None,
) -> None:
    """Write the delta folder beside ``out`` and swap it into place whole."""
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(changed, str(tmp / TENSORS), metadata={"format": "pt"})
        with tempfile.TemporaryDirectory(prefix=".work-", dir=tmp) as work_name:
            work = Path(work_name)
            gguf = merged_gguf(base, changed, manifest, work, work / f"{manifest.name}.F16.gguf")
            vectors = reference.embed(gguf, manifest.references, threads)
        np.save(tmp / REFERENCE, vectors)
        manifest.write(tmp)
        total = sum(p.stat().st_size for p in tmp.iterdir())
        if total > max_bytes:  # the tensors fit, but not with the headers and vectors
            raise DeltaError(
                f"The delta of {trained} is {total / 1e6:.2f} MB in all, over the "
                f"{max_bytes / 1e6:g} MB cap: train fewer layers (model.train_layers)"
            )
        # mkdtemp and safetensors make private files; a delta is shared (and committed).
        tmp.chmod(0o755)
        for path in tmp.iterdir():
            path.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
