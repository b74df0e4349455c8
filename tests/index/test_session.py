"""Opening an indexing session from explicit options: settings to options, a model
that cannot be loaded, a second writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from sr3desk.errors import IndexAccessError, Sr3Error
from sr3desk.index.session import ModelChoice, open_session, options_for
from sr3desk.index.store import Store
from sr3desk.index.types import IndexOptions
from sr3desk.settings import Settings


def test_options_for_settings_and_the_command_line() -> None:
    settings = Settings(exclude=["*.log"], max_file_mb=2.0)
    assert options_for(settings) == IndexOptions(exclude=("*.log",), max_file_bytes=2 * 2**20)
    assert options_for(settings, max_mb=0.5).max_file_bytes == 2**19
    assert options_for(settings, embed_batch=8).embed_batch == 8
    with pytest.raises(Sr3Error, match="must be positive"):
        options_for(settings, max_mb=0)


def test_a_model_that_cannot_load_falls_back_to_keywords(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    home = tmp_path / "home"
    with pytest.raises(Sr3Error), open_session(home, ModelChoice(bad), IndexOptions()):
        pass
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("Otters hold hands while they sleep.\n")
    with open_session(home, ModelChoice(bad), IndexOptions(), keyword_fallback=True) as session:
        assert session.keyword_only and session.store.write_generation.dim is None
        assert session.indexer.run([docs]).indexed == 1
    with Store.open(home) as reader:
        assert reader.keyword_search("otters", 1)[0].path == str(docs / "a.md")


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with (
        Store.open(home, None, write=True),
        pytest.raises(IndexAccessError, match="Another sr3desk indexer"),
        open_session(home, ModelChoice(None), IndexOptions()),
    ):
        pass
