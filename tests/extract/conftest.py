"""Fixtures of the extraction tests: generated documents and the bad-file corpus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from corpora import make_bad_corpus, make_good_files

from sr3desk.extract import Extractor, Limits


@pytest.fixture(scope="session")
def good_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(folder, {file name: phrase it must yield}) of one generated file per format."""
    folder = tmp_path_factory.mktemp("good")
    return folder, make_good_files(folder)


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str | None]]:
    """(folder, {file name: expected reason or None}) of the reliability corpus."""
    folder = tmp_path_factory.mktemp("bad")
    return folder, make_bad_corpus(folder)


@pytest.fixture(scope="module")
def extractor() -> Iterator[Extractor]:
    """One worker for a test module, with the default limits."""
    with Extractor(Limits()) as worker:
        yield worker
