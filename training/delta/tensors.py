"""Tensors of a delta: which differ from the base, the base's fingerprint, the merge.

Checkpoints are read one tensor at a time through safetensors; only the merge holds a
whole model in memory (it writes one ``model.safetensors``).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.delta.manifest import DeltaError

if TYPE_CHECKING:
    import torch

# What a merged checkpoint takes from the base besides its weights (config, tokenizer,
# chat template); the base's GGUFs, stamp and sidecar stay behind.
_NOT_COPIED = (".gguf", ".safetensors", ".recipe", "sr3.json", ".safetensors.index.json")


def _index(folder: Path) -> dict[str, Path]:
    """Tensor name -> the shard holding it."""
    from safetensors import safe_open

    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise DeltaError(f"{folder} has no .safetensors weights (not an HF checkpoint folder?)")
    where: dict[str, Path] = {}
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                where[name] = shard
    return where


def _read(folder: Path, names: list[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) of ``folder``'s checkpoint in name order (``names``: only those)."""
    from safetensors import safe_open

    where = _index(folder)
    with ExitStack() as stack:
        handles: dict[Path, Any] = {}
        for name in sorted(where) if names is None else names:
            shard = where[name]
            if shard not in handles:
                handles[shard] = stack.enter_context(safe_open(str(shard), framework="pt"))
            yield name, handles[shard].get_tensor(name)


def stored_dtype(shape: tuple[int, ...]) -> str:
    """How a delta stores a tensor: matrices in F16, vectors (norms, biases) in F32."""
    return "F16" if len(shape) >= 2 else "F32"


def changed(base_dir: Path, trained_dir: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``trained_dir`` that differ from ``base_dir``'s, in their stored type.

    Both checkpoints must hold the same tensor names and shapes (a delta replaces
    tensors, it cannot add or grow one). Returns name -> tensor, F16 for matrices and
    F32 for vectors; DeltaError when the checkpoints do not match or a value does not
    fit in F16.
    """
    import torch

    base, trained = _index(base_dir), _index(trained_dir)
    if set(base) != set(trained):
        extra = sorted(set(trained) - set(base))[:3]
        lost = sorted(set(base) - set(trained))[:3]
        raise DeltaError(
            f"{trained_dir} and the base {base_dir} hold different tensors "
            f"(only in the trained one: {extra}; only in the base: {lost})"
        )
    out: dict[str, torch.Tensor] = {}
    for (name, b), (_, t) in zip(_read(base_dir), _read(trained_dir), strict=True):
        if tuple(t.shape) != tuple(b.shape):
            raise DeltaError(
                f"{name} is {tuple(t.shape)} in {trained_dir} but {tuple(b.shape)} in the base "
                f"{base_dir}: a delta cannot resize a tensor"
            )
        if t.dtype == b.dtype and torch.equal(t, b):
            continue
        kind = torch.float16 if stored_dtype(tuple(t.shape)) == "F16" else torch.float32
        value = t.to(kind).contiguous()
        if not bool(torch.isfinite(value).all()):
            raise DeltaError(f"{name} of {trained_dir} has values that {kind} cannot hold")
        out[name] = value
    return out


def fingerprint(base_dir: Path, replaced: set[str]) -> tuple[str, int]:
    """SHA-256 over every tensor of ``base_dir`` not in ``replaced`` (name, type, shape, bytes).

    Returns the hex digest and the number of tensors hashed.
    """
    import torch

    names = sorted(set(_index(base_dir)) - replaced)
    h = hashlib.sha256()
    for name, t in _read(base_dir, names):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest(), len(names)


def merge(base_dir: Path, delta: Mapping[str, torch.Tensor], out_dir: Path) -> Path:
    """Write the HF checkpoint ``base_dir`` with ``delta``'s tensors into ``out_dir``.

    Replaced tensors take the base tensor's type (a float32 base gets the F16 values
    widened, exactly). Config, tokenizer and chat template are copied from the base.
    Returns ``out_dir``; DeltaError when a delta tensor is not in the base or has
    another shape.
    """
    from safetensors.torch import save_file

    merged: dict[str, torch.Tensor] = {}
    for name, t in _read(base_dir):
        new = delta.get(name)
        if new is not None:
            if tuple(new.shape) != tuple(t.shape):
                raise DeltaError(
                    f"The delta's {name} is {tuple(new.shape)} but the base {base_dir} has "
                    f"{tuple(t.shape)}: it was made for another model"
                )
            t = new.to(t.dtype)
        merged[name] = t
    unknown = sorted(set(delta) - set(merged))
    if unknown:
        raise DeltaError(
            f"The base {base_dir} has no {', '.join(unknown[:3])}: the delta is for another model"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in base_dir.iterdir():
        if path.is_file() and not path.name.endswith(_NOT_COPIED):
            shutil.copyfile(path, out_dir / path.name)
    save_file(merged, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return out_dir
