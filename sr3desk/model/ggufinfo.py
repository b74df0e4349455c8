"""Read what a GGUF model file says about itself, without loading its weights.

:func:`inspect_gguf` parses the GGUF header (metadata and tensor table) through a
memory map, checks that the file is complete (every tensor's bytes present), finds
``<|embed_token|>`` in the vocabulary and returns a :class:`ModelInfo`. It takes
milliseconds even for multi-gigabyte files, so the CLI, the GUI and the index can
call it freely; results are cached per (path, size, mtime, inode).

``model_id`` identifies the file's content: the model's name plus 12 hex digits of
a SHA-256 over the whole header (metadata and tensor table), the file size, and
two 4 KiB samples of every tensor's data (its start and its middle). Hashing every
byte would cost seconds for a 1 GB model on each start; a retrained, requantized or
re-exported model changes the header or the sampled bytes of every tensor it
touches, so the samples suffice to tell two models apart while staying cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import re
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

from sr3desk.errors import ModelError
from sr3desk.model import prompts as P

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
SAMPLE_BYTES = 4096
# Arrays with more elements than this are not copied into ModelInfo.metadata.
SMALL_ARRAY = 64

# GGUF value types (gguf.constants.GGUFValueType): struct format of the scalars.
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_SCALAR |= {11: "<q", 12: "<d"}
_STRING = 8
_ARRAY = 9
# llama.cpp token types whose text the tokenizer matches as one special token.
_SPECIAL_TOKEN_TYPES = {3, 4}  # CONTROL, USER_DEFINED

_FIX = "download or convert it again (`sr3desk model fetch` or `sr3desk model convert`)"


@dataclass(frozen=True)
class ModelInfo:
    """What a Search-R3 GGUF declares: identity, shape, tokenizer facts and prompts."""

    path: Path
    name: str
    architecture: str
    size_bytes: int
    dim: int  # embedding width (hidden size)
    n_ctx_train: int
    quantization: str  # llama.cpp file type, e.g. "Q8_0", "Q4_K_M", "F16"
    embed_token_id: int
    prompts: P.PromptSet
    chat_template: str | None
    eval: dict[str, Any] | None  # held-out metrics from ``sr3.eval``
    stage: str | None  # "base", "sft", "rl" from ``sr3.model.stage``
    model_id: str
    n_layers: int = 0
    n_vocab: int = 0
    n_tensors: int = 0
    bos_token: str = ""
    eos_token: str = ""
    # Scalar metadata (and small arrays) for display; large arrays are left out.
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def chat(self) -> P.ChatTemplate:
        """Return the model's chat template (ChatML when the file carries none)."""
        return P.ChatTemplate(self.chat_template, self.bos_token, self.eos_token)


@dataclass(frozen=True)
class _ArrayRef:
    """A metadata array left in the file: where it starts, its element type and count."""

    offset: int
    elem_type: int
    count: int


class _Truncated(Exception):
    """The header ends before the file does."""


class _Reader:
    """Little-endian cursor over the mapped file; raises _Truncated past the end."""

    def __init__(self, buf: mmap.mmap, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise _Truncated

    def scalar(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self) -> str:
        n = self.scalar("<Q")
        self.need(n)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            elem = self.scalar("<I")
            count = self.scalar("<Q")
            ref = _ArrayRef(self.pos, elem, count)
            if elem == _STRING:
                self.pos = _skip_strings(self.buf, self.pos, count, self.size)
            elif elem in _SCALAR:
                self.need(struct.calcsize(_SCALAR[elem]) * count)
                self.pos += struct.calcsize(_SCALAR[elem]) * count
            else:
                raise ValueError(f"unsupported array element type {elem}")
            return ref
        if vtype in _SCALAR:
            return self.scalar(_SCALAR[vtype])
        raise ValueError(f"unknown metadata value type {vtype}")

    def array(self, ref: _ArrayRef, limit: int | None = None) -> list[Any]:
        """Read (the first ``limit`` elements of) an array left in the file."""
        saved, self.pos = self.pos, ref.offset
        try:
            n = ref.count if limit is None else min(limit, ref.count)
            if ref.elem_type == _STRING:
                return [self.string() for _ in range(n)]
            fmt = _SCALAR[ref.elem_type]
            return [self.scalar(fmt) for _ in range(n)]
        finally:
            self.pos = saved

    def scan_strings(
        self, ref: _ArrayRef, wanted: str, indices: set[int]
    ) -> tuple[int | None, dict[int, str]]:
        """One pass over a string array: the index of ``wanted`` (or None) and the
        texts at ``indices``."""
        return _scan_strings(self.buf, ref.offset, ref.count, wanted.encode("utf-8"), indices)

    def element(self, ref: _ArrayRef, index: int) -> Any:
        """One element of a numeric array, or None when out of range."""
        if not 0 <= index < ref.count or ref.elem_type not in _SCALAR:
            return None
        fmt = _SCALAR[ref.elem_type]
        (value,) = struct.unpack_from(fmt, self.buf, ref.offset + index * struct.calcsize(fmt))
        return value


_U64 = struct.Struct("<Q")


def _skip_strings(buf: mmap.mmap, pos: int, count: int, size: int) -> int:
    # Vocabularies hold 50k-150k strings: this loop is kept tight on purpose.
    if pos + 8 * count > size:
        raise _Truncated  # each string takes at least its 8-byte length
    unpack = _U64.unpack_from
    try:
        for _ in range(count):
            pos += 8 + unpack(buf, pos)[0]
    except struct.error:
        raise _Truncated from None
    if pos > size:
        raise _Truncated
    return pos


def _scan_strings(
    buf: mmap.mmap, pos: int, count: int, target: bytes, indices: set[int]
) -> tuple[int | None, dict[int, str]]:
    unpack = _U64.unpack_from
    n_target = len(target)
    found: int | None = None
    texts: dict[int, str] = {}
    for i in range(count):
        n = unpack(buf, pos)[0]
        pos += 8
        if n == n_target and found is None and buf[pos : pos + n] == target:
            found = i
        if i in indices:
            texts[i] = buf[pos : pos + n].decode("utf-8", errors="replace")
        pos += n
    return found, texts


@dataclass(frozen=True)
class TensorSpan:
    """One tensor of a GGUF: name, ggml dims (fastest first), type, absolute byte span."""

    name: str
    dims: tuple[int, ...]
    type_name: str  # e.g. "F32", "Q8_0"
    offset: int
    nbytes: int


@dataclass
class _Tensor:
    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int


_CACHE: dict[tuple[str, int, int, int], ModelInfo] = {}


def inspect_gguf(path: str | os.PathLike[str]) -> ModelInfo:
    """Read a Search-R3 GGUF's header and return its :class:`ModelInfo`.

    Takes the path of a ``.gguf`` file. Raises :class:`ModelError` with a one-line
    message naming the file and what to do when it is missing, unreadable, not a
    GGUF, truncated, or lacks ``<|embed_token|>``.
    """
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ModelError(
            f"Model file {p} does not exist; check the path, or get a model with "
            "`sr3desk model fetch` or `sr3desk model install`"
        ) from None
    except OSError as exc:
        raise ModelError(f"Cannot read model file {p}: {exc.strerror}") from None
    if p.is_dir():
        raise ModelError(f"{p} is a folder, not a GGUF model file; give the .gguf file inside it")
    p = p.resolve()
    key = (str(p), st.st_size, st.st_mtime_ns, st.st_ino)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    info = _inspect(p, st.st_size)
    _CACHE[key] = info
    return info


def _inspect(path: Path, size: int) -> ModelInfo:
    with _mapped(path, size) as buf:
        return _parse(path, buf, size)


@contextmanager
def _mapped(path: Path, size: int) -> Iterator[mmap.mmap]:
    """Map a GGUF read-only after checking that it is one (ModelError if not)."""
    if size == 0:
        raise ModelError(f"{path} is empty, not a GGUF model file; {_FIX}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if head != GGUF_MAGIC:
                raise ModelError(
                    f"{path} is not a GGUF model file; convert a Hugging Face checkpoint "
                    "with `sr3desk model convert`"
                )
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                yield buf
    except OSError as exc:
        raise ModelError(f"Cannot read model file {path}: {exc.strerror}") from None


def _header(
    path: Path, buf: mmap.mmap, size: int
) -> tuple[_Reader, dict[str, Any], list[_Tensor], int]:
    """Parse metadata and tensor table; check every tensor's bytes are present.

    Returns the reader, the metadata (large arrays as _ArrayRef), the tensors and
    the offset where tensor data starts.
    """
    r = _Reader(buf, size)
    r.pos = 4
    try:
        version = r.scalar("<I")
        if version not in (2, 3):
            if version & 0xFFFF == 0:
                raise ModelError(f"{path} is a big-endian GGUF, which is not supported; {_FIX}")
            raise ModelError(f"{path} is GGUF version {version}, which is not supported; {_FIX}")
        n_tensors = r.scalar("<Q")
        n_kv = r.scalar("<Q")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            k = r.string()
            meta[k] = r.value(r.scalar("<I"))
        tensors = _read_tensor_table(r, n_tensors)
        align = meta.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(align, int) or align <= 0:
            align = DEFAULT_ALIGNMENT
        data_start = -(-r.pos // align) * align
    except _Truncated:
        raise ModelError(f"{path} is truncated (its header is incomplete); {_FIX}") from None
    except ValueError as exc:
        raise ModelError(f"{path} is a damaged GGUF file ({exc}); {_FIX}") from None

    # A vocabulary-only file has no tensors, hence no (padded) data section.
    expected = max((data_start + t.offset + t.nbytes for t in tensors), default=r.pos)
    if expected > size:
        raise ModelError(f"{path} is truncated ({size} of {expected} bytes); {_FIX}")
    return r, meta, tensors, data_start


def tensor_spans(path: str | os.PathLike[str]) -> list[TensorSpan]:
    """Where each tensor's bytes lie in a GGUF (absolute offsets), for tools and tests.

    Raises ModelError like :func:`inspect_gguf` for missing, non-GGUF or truncated
    files (the embed token is not required).
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ModelError(f"Cannot read model file {p}: {exc.strerror}") from None
    with _mapped(p, size) as buf:
        _, _, tensors, data_start = _header(p, buf, size)
    return [
        TensorSpan(
            t.name, t.dims, GGMLQuantizationType(t.ggml_type).name, data_start + t.offset, t.nbytes
        )
        for t in tensors
    ]


def _parse(path: Path, buf: mmap.mmap, size: int) -> ModelInfo:
    r, meta, tensors, data_start = _header(path, buf, size)

    arch = str(meta.get("general.architecture", "unknown"))
    prompt_meta = {k: v for k, v in meta.items() if isinstance(v, str)}
    prompt_set = P.PromptSet.from_gguf_metadata(prompt_meta)

    tokens_ref = meta.get("tokenizer.ggml.tokens")
    if not isinstance(tokens_ref, _ArrayRef) or tokens_ref.elem_type != _STRING:
        raise ModelError(f"{path} has no tokenizer vocabulary; {_FIX}")
    special_ids = {
        v
        for k in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")
        if isinstance(v := meta.get(k), int)
    }
    embed_id, special_texts = r.scan_strings(tokens_ref, prompt_set.embed_token, special_ids)
    if embed_id is None:
        raise ModelError(
            f"{path} has no {prompt_set.embed_token} token, so it is not a Search-R3 "
            "embedding model; use `sr3desk model fetch` or convert one with "
            "`sr3desk model convert`"
        )
    types_ref = meta.get("tokenizer.ggml.token_type")
    if isinstance(types_ref, _ArrayRef):
        ttype = r.element(types_ref, embed_id)
        if ttype is not None and ttype not in _SPECIAL_TOKEN_TYPES:
            raise ModelError(
                f"{path} has {prompt_set.embed_token} as an ordinary token (type {ttype}), "
                f"so text cannot address it; re-export the model with `sr3desk model convert`"
            )

    def token_text(key: str) -> str:
        tid = meta.get(key)
        return special_texts.get(tid, "") if isinstance(tid, int) else ""

    name = str(meta.get(P.KEY_MODEL_NAME) or meta.get("general.name") or _stem(path))
    template = meta.get("tokenizer.chat_template")
    small = {
        k: (r.array(v) if v.count <= SMALL_ARRAY else f"<array of {v.count}>")
        if isinstance(v, _ArrayRef)
        else v
        for k, v in meta.items()
    }
    return ModelInfo(
        path=path,
        name=name,
        architecture=arch,
        size_bytes=size,
        dim=int(meta.get(f"{arch}.embedding_length", 0)),
        n_ctx_train=int(meta.get(f"{arch}.context_length", 0)),
        quantization=_quantization(meta, tensors),
        embed_token_id=embed_id,
        prompts=prompt_set,
        chat_template=template if isinstance(template, str) else None,
        eval=_eval(meta.get(P.KEY_EVAL), path),
        stage=str(meta[P.KEY_MODEL_STAGE]) if P.KEY_MODEL_STAGE in meta else None,
        model_id=f"{_slug(name)}-{_content_hash(buf, size, data_start, tensors)}",
        n_layers=int(meta.get(f"{arch}.block_count", 0)),
        n_vocab=tokens_ref.count,
        n_tensors=len(tensors),
        bos_token=token_text("tokenizer.ggml.bos_token_id"),
        eos_token=token_text("tokenizer.ggml.eos_token_id"),
        metadata=small,
    )


def _read_tensor_table(r: _Reader, n_tensors: int) -> list[_Tensor]:
    # A tensor entry takes at least 8 (name) + 4 + 4 + 8 bytes.
    r.need(24 * n_tensors)
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.scalar("<I")
        if n_dims > 8:
            raise ValueError(f"tensor {name} has {n_dims} dimensions")
        dims = tuple(r.scalar("<Q") for _ in range(n_dims))
        ggml_type = r.scalar("<I")
        offset = r.scalar("<Q")
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise ValueError(f"tensor {name} has unknown type {ggml_type}") from None
        n_el = 1
        for d in dims:
            n_el *= d
        tensors.append(_Tensor(name, dims, ggml_type, offset, n_el // block * type_size))
    return tensors


def _quantization(meta: Mapping[str, Any], tensors: list[_Tensor]) -> str:
    ftype = meta.get("general.file_type")
    if isinstance(ftype, int):
        try:
            name = LlamaFileType(ftype).name
        except ValueError:
            name = ""
        if name and name != "GUESSED":
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    # No file type recorded: the commonest type among the matrices.
    counts: dict[int, int] = {}
    for t in tensors:
        if len(t.dims) >= 2:
            counts[t.ggml_type] = counts.get(t.ggml_type, 0) + 1
    if not counts:
        return "unknown"
    return GGMLQuantizationType(max(counts, key=lambda k: counts[k])).name


def _eval(raw: Any, path: Path) -> dict[str, Any] | None:
    if not isinstance(raw, str):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("%s: ignoring malformed %s metadata", path, P.KEY_EVAL)
        return None
    return value if isinstance(value, dict) else None


def _content_hash(buf: mmap.mmap, size: int, data_start: int, tensors: list[_Tensor]) -> str:
    h = hashlib.sha256()
    h.update(size.to_bytes(8, "little"))
    h.update(buf[:data_start])
    for t in tensors:
        start = data_start + t.offset
        for at in (start, start + t.nbytes // 2):
            end = min(at + SAMPLE_BYTES, start + t.nbytes)
            h.update(buf[at:end])
    return h.hexdigest()[:12]


def _stem(path: Path) -> str:
    return path.name.removesuffix(".gguf")


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-").lower()
    return slug or "model"


__all__ = ["ModelInfo", "TensorSpan", "inspect_gguf", "tensor_spans"]
