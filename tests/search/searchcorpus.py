"""The search tests' corpus and test models: a small real corpus indexed by the real indexer.

Two simple embedders implement the ``Embedder`` protocol next to the real
llama.cpp one, to put the searcher in front of models of known quality:
``BagOfWordsEmbedder`` (hashed stemmed word counts: a lexical model about as
good as keyword search) and ``NoiseEmbedder`` (a random vector per text: a model
that knows nothing). The GGUF models (tiny-qwen2, smollm2-sr3) are used where the
real runtime matters: tests/search/test_quality_pydocs.py, tests/cli/test_search.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sr3desk.index.chunking import ApproxCounter
from sr3desk.index.indexer import Indexer
from sr3desk.index.store import Store
from sr3desk.index.types import IndexOptions
from sr3desk.model.base import QueryEmbedding
from sr3desk.model.ggufinfo import ModelInfo
from sr3desk.model.prompts import PromptSet
from sr3desk.search.text import STOPWORDS, stem, words

PY_LIBRARY = Path("/usr/share/doc/python3.11/html/_sources/library")
PY_HTML = Path("/usr/share/doc/python3.11/html/library")

# The corpus: reST pages in two folders with different dates, and two HTML pages.
OLD_PAGES = ("json", "csv", "base64", "zlib", "gzip", "bz2", "hashlib", "hmac", "secrets")
NEW_PAGES = ("getpass", "shelve", "sqlite3", "uuid", "webbrowser", "wave", "colorsys", "glob")
HTML_PAGES = ("fnmatch", "shlex")
OLD_MTIME = 1_577_836_800.0  # 2020-01-01 UTC
NEW_MTIME = 1_704_067_200.0  # 2024-01-01 UTC


@dataclass
class BagOfWordsEmbedder:
    """Hashed bag of light-stemmed content words, log-scaled counts, unit length."""

    dim: int = 512
    eval: dict[str, Any] | None = None
    calls: list[str] = field(default_factory=list)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            path=Path(f"{self.model_id}.gguf"),
            name=self.model_id,
            architecture="test",
            size_bytes=0,
            dim=self.dim,
            n_ctx_train=self.n_ctx,
            quantization="F32",
            embed_token_id=0,
            prompts=PromptSet(),
            chat_template=None,
            eval=self.eval,
            stage="test",
            model_id=self.model_id,
        )

    @property
    def model_id(self) -> str:
        return f"bow-{self.dim}"

    @property
    def n_ctx(self) -> int:
        return 4096

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for _, _, w in words(text):
            w = w.lower()
            if w in STOPWORDS or w.isdigit():
                continue
            h = int.from_bytes(hashlib.blake2b(stem(w).encode(), digest_size=8).digest(), "little")
            v[h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        v = np.sign(v) * np.log1p(np.abs(v))
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dim))

    def embed_query(
        self, text: str, reason: bool = False, max_reason_tokens: int = 256
    ) -> QueryEmbedding:
        self.calls.append(text)
        reasoning = f"The user looks for: {text}" if reason else None
        return QueryEmbedding(self._vec(text), reasoning, False, len(text.split()))

    def count_tokens(self, text: str) -> int:
        return ApproxCounter().count_tokens(text)

    def close(self) -> None:
        pass


class NoiseEmbedder(BagOfWordsEmbedder):
    """A model that knows nothing: a random unit vector per distinct text."""

    @property
    def model_id(self) -> str:
        return f"noise-{self.dim}"

    def _vec(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)


def make_corpus(root: Path) -> dict[str, Path]:
    """Copy the corpus pages under ``root``; returns {page name: path}."""
    out: dict[str, Path] = {}
    for folder, names, mtime in (("old", OLD_PAGES, OLD_MTIME), ("new", NEW_PAGES, NEW_MTIME)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            target = root / folder / f"{name}.rst.txt"
            shutil.copyfile(PY_LIBRARY / f"{name}.rst.txt", target)
            os.utime(target, (mtime, mtime))
            out[name] = target
    (root / "html").mkdir(exist_ok=True)
    for name in HTML_PAGES:
        target = root / "html" / f"{name}.html"
        shutil.copyfile(PY_HTML / f"{name}.html", target)
        os.utime(target, (NEW_MTIME, NEW_MTIME))
        out[name] = target
    return out


def build(home: Path, root: Path, embedder: BagOfWordsEmbedder, only: str | None = None) -> None:
    """Index ``root`` into ``home`` with the real indexer and ``embedder``.

    ``only``: embed just the files under this folder (the rest stays pending, as
    in an index whose embedding is still running).
    """
    with Store.open(home, embedder.info, write=True) as store:
        options = IndexOptions(max_tokens=200)
        with Indexer(store, embedder if only is None else None, options) as ix:
            ix.run([root])
        if only is not None:
            pending = store.pending_chunks()
            keep = [
                (cid, row)
                for cid, path, row in zip(
                    pending["chunk_id"].to_pylist(),
                    pending["path"].to_pylist(),
                    pending["_rowid"].to_pylist(),
                    strict=True,
                )
                if path.startswith(only)
            ]
            texts = store.chunk_texts([row for _, row in keep])
            store.write_vectors([cid for cid, _ in keep], embedder.embed_documents(texts))


@dataclass
class Corpus:
    """The indexed corpus: its folder, pages, and the data directory of each index."""

    root: Path
    pages: dict[str, Path]
    homes: dict[str, Path]

    def store(self, name: str) -> Store:
        return Store.open(self.homes[name])
