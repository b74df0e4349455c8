"""A delta folder's files and its manifest, ``delta.json``.

The manifest says what the delta is (model name, stage, prompts, held-out figures),
what it applies to (the base's recipe and a hash of the base tensors it keeps), which
tensors it replaces, and which texts its reference vectors belong to.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sr3desk.errors import ModelError

MANIFEST = "delta.json"
TENSORS = "delta.safetensors"
REFERENCE = "reference.npy"
FILES = (MANIFEST, TENSORS, REFERENCE)
FORMAT = 1
MAX_BYTES = 40_000_000  # what one commit of the shipped model may add to the repository


class DeltaError(ModelError):
    """A delta cannot be extracted or applied; the message names the file and the reason."""


@dataclass(frozen=True)
class BaseRef:
    """The base a delta applies to.

    ``recipe``: the base's build recipe (``training.testmodels``' stamp, e.g.
    "smollm2-sr3/3"), for the reader; ``sha256``: hash of every base tensor the delta
    keeps (:func:`training.delta.tensors.fingerprint`), which apply checks;
    ``tensors``: how many those are.
    """

    recipe: str | None
    sha256: str
    tensors: int


@dataclass(frozen=True)
class Reference:
    """A fixed text whose vector the applied model must reproduce.

    ``kind`` is "document" (``embed_documents``) or "query" (``embed_query`` without
    reasoning).
    """

    kind: str
    text: str


@dataclass(frozen=True)
class Manifest:
    """The contents of ``delta.json``.

    ``tensors`` maps each replaced tensor's name to its stored type ("F16" or "F32")
    and shape; ``prompts`` are the PromptSet fields the model was trained with;
    ``eval`` the held-out figures for ``sr3.eval`` (None when not evaluated);
    ``source`` where the trained checkpoint was and its step, for the reader.
    """

    name: str
    stage: str
    base: BaseRef
    tensors: dict[str, dict[str, Any]]
    references: list[Reference]
    prompts: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data the delta holds."""
        total = 0
        for spec in self.tensors.values():
            count = 1
            for n in spec["shape"]:
                count *= int(n)
            total += count * (2 if spec["dtype"] == "F16" else 4)
        return total

    def write(self, folder: Path) -> Path:
        """Write ``folder/delta.json``; returns its path."""
        path = folder / MANIFEST
        data = asdict(self)
        data["bytes"] = self.nbytes
        # One line per tensor and per reference text, so the file reads as a list.
        rows = {f"@{i}@": v for i, v in enumerate([*self.tensors.values(), *data["references"]])}
        keys = iter(rows)
        data["tensors"] = {name: next(keys) for name in self.tensors}
        data["references"] = [next(keys) for _ in self.references]
        text = json.dumps(data, indent=2, ensure_ascii=False)
        for key, value in rows.items():
            text = text.replace(f'"{key}"', json.dumps(value, ensure_ascii=False))
        path.write_text(text + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """Read ``folder/delta.json``; DeltaError naming the problem when it is unusable."""
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DeltaError(f"{folder} is not a delta folder: it has no {MANIFEST}") from None
        except (OSError, ValueError) as err:
            raise DeltaError(f"Cannot read {path}: {err}") from err
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise DeltaError(f"{path} has format {found!r}; this version reads format {FORMAT}")
        try:
            return cls(
                name=str(data["name"]),
                stage=str(data["stage"]),
                base=BaseRef(**data["base"]),
                tensors=dict(data["tensors"]),
                references=[Reference(**r) for r in data["references"]],
                prompts=dict(data.get("prompts") or {}),
                eval=data.get("eval"),
                source=dict(data.get("source") or {}),
            )
        except (KeyError, TypeError) as err:
            raise DeltaError(f"{path} lacks or mangles an entry: {err}") from err


def missing_files(folder: Path) -> list[str]:
    """The delta files absent from ``folder`` (all of them when it does not exist)."""
    return [name for name in FILES if not (folder / name).is_file()]


def digest(folder: Path) -> str:
    """SHA-256 (16 hex digits) over the delta's files: changes when any of them does."""
    h = hashlib.sha256()
    for name in FILES:
        h.update(name.encode())
        with open(folder / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]
