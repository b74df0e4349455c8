"""Fixtures of the search tests (the helpers live in searchcorpus.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from searchcorpus import (
    PY_LIBRARY,
    BagOfWordsEmbedder,
    Corpus,
    NoiseEmbedder,
    build,
    make_corpus,
)

from sr3desk.index.store import Store


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """The corpus indexed three ways: bag-of-words model ("bow"), noise model
    ("noise"), and bag-of-words with only the "old" folder embedded ("partial")."""
    if not PY_LIBRARY.is_dir():
        pytest.fail(f"{PY_LIBRARY} is missing: install Debian's python3.11-doc", pytrace=False)
    base = tmp_path_factory.mktemp("search-corpus")
    root = base / "docs"
    pages = make_corpus(root)
    homes = {name: base / f"home-{name}" for name in ("bow", "noise", "partial")}
    build(homes["bow"], root, BagOfWordsEmbedder())
    build(homes["noise"], root, NoiseEmbedder())
    build(homes["partial"], root, BagOfWordsEmbedder(), only=str(root / "old") + os.sep)
    return Corpus(root, pages, homes)


@pytest.fixture
def bow_store(corpus: Corpus) -> Iterator[Store]:
    """A read-only store on the bag-of-words index."""
    with corpus.store("bow") as store:
        yield store
