"""Fixtures of the index tests: the tiny model, real documents, tree helpers."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sr3desk.index.store import Store
from sr3desk.model.ggufinfo import ModelInfo, inspect_gguf
from sr3desk.model.runtime import LlamaEmbedder, open_embedder

# One llama.cpp thread: tests run beside other processes, and llama.cpp's
# spinning thread barriers collapse when its threads outnumber free cores.
TEST_THREADS = 1
# A small real corpus: the Python tutorial's sources (17 files, ~290 KB).
TUTORIAL = "tutorial"


@pytest.fixture(scope="session")
def tiny_info(tiny_gguf: Path) -> ModelInfo:
    """What the tiny model's GGUF declares (id, dim, prompts)."""
    return inspect_gguf(tiny_gguf)


@pytest.fixture(scope="session")
def tiny_embedder(tiny_gguf: Path) -> Iterator[LlamaEmbedder]:
    """The tiny Qwen2 model opened once for the whole session."""
    with open_embedder(tiny_gguf, threads=TEST_THREADS, n_ctx=512) as embedder:
        yield embedder


@pytest.fixture(scope="session")
def tutorial_sources(python_docs_sources: Path) -> Path:
    """The reST sources of the Python tutorial (a real corpus of 17 files)."""
    return python_docs_sources / TUTORIAL


@pytest.fixture
def docs(tmp_path: Path, tutorial_sources: Path) -> Path:
    """A private copy of a few tutorial files (fast to index) in ``tmp_path/docs``."""
    root = tmp_path / "docs"
    root.mkdir()
    for name in ("appetite.rst.txt", "interpreter.rst.txt", "venv.rst.txt", "whatnow.rst.txt"):
        shutil.copy(tutorial_sources / name, root / name)
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty data directory."""
    return tmp_path / "home"


def random_unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` random L2-normalised float32 vectors."""
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def touch_later(path: Path, text: str | None = None) -> None:
    """Rewrite ``path`` (or only re-date it) with an mtime that surely differs."""
    before = path.stat().st_mtime
    if text is not None:
        path.write_text(text, encoding="utf-8")
    later = max(time.time(), before + 1.0)
    os.utime(path, (later, later))


def index_state(store: Store) -> dict[str, object]:
    """Everything a clean index is compared on: files, chunks, vectors.

    Returns {"files": {path: (status, reason, hash, n_chunks)}, "chunks": sorted
    (path, ordinal, text), "vectors": {(path, text): vector}, "chunk_ids": all ids}.
    """
    files = {r.path: (r.status, r.reason, r.content_hash, r.n_chunks) for r in store.files()}
    chunks: list[tuple[str, int, str]] = []
    ids: list[str] = []
    by_id: dict[str, tuple[str, str]] = {}
    for rec in store.files():
        for hit in store.file_chunks(rec.file_id):
            chunks.append((hit.path, hit.ordinal, hit.text))
            ids.append(hit.chunk_id)
            by_id[hit.chunk_id] = (hit.path, hit.text)
    vectors = {by_id[cid]: vec for cid, vec in store.chunk_vectors(ids).items()}
    return {"files": files, "chunks": sorted(chunks), "vectors": vectors, "chunk_ids": ids}
