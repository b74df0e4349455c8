"""Watching folders: coalesced bursts, file and folder events, a root that comes back."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sr3desk.index.indexer import Indexer
from sr3desk.index.store import Store
from sr3desk.index.types import Summary
from sr3desk.index.watcher import Watcher
from sr3desk.model.ggufinfo import ModelInfo
from sr3desk.model.runtime import LlamaEmbedder

DEBOUNCE = 0.3


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached in {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def keyword_watch(home: Path, docs: Path) -> Iterator[tuple[Store, Watcher, list[Summary]]]:
    """A keyword-only index of ``docs`` with a running watcher (and its summaries)."""
    summaries: list[Summary] = []
    with Store.open(home, None, write=True) as store, Indexer(store) as ix:
        ix.run([docs])
        watcher = Watcher(ix, [docs], debounce_s=DEBOUNCE, poll_s=0.2, on_update=summaries.append)
        with watcher:
            yield store, watcher, summaries
        assert watcher.errors == []


def paths(store: Store, word: str) -> set[str]:
    return {h.path for h in store.keyword_search(word, 50)}


def test_a_burst_of_saves_embeds_once(
    home: Path, docs: Path, tiny_info: ModelInfo, tiny_embedder: LlamaEmbedder
) -> None:
    summaries: list[Summary] = []
    target = docs / "burst.md"
    with Store.open(home, tiny_info, write=True) as store, Indexer(store, tiny_embedder) as ix:
        ix.run([docs])
        with Watcher(ix, [docs], debounce_s=DEBOUNCE, on_update=summaries.append) as watcher:
            for i in range(1000):
                with open(target, "w", encoding="utf-8") as fh:
                    fh.write(f"# Burst\n\nSave number {i} of the quokka notes.\n")
            wait_for(lambda: sum(s.indexed for s in summaries) >= 1)
            assert watcher.wait_idle(30)
            time.sleep(3 * DEBOUNCE)  # room for a stray second update to show up
            assert watcher.wait_idle(30)
        read = sum(s.indexed for s in summaries)
        embedded = sum(s.chunks_embedded for s in summaries)
        assert read == 1, summaries
        assert embedded == store.file(str(target)).n_chunks  # type: ignore[union-attr]
        hit = store.keyword_search("quokka", 1)[0]
        assert "Save number 999" in hit.text
        assert store.status().pending == 0


def test_file_and_folder_events(keyword_watch: tuple[Store, Watcher, list[Summary]]) -> None:
    store, watcher, summaries = keyword_watch
    docs = Path(next(iter(watcher.roots)))
    # create
    (docs / "new.md").write_text("A note about pangolins.\n")
    wait_for(lambda: paths(store, "pangolins") == {str(docs / "new.md")})
    # modify
    (docs / "new.md").write_text("A note about armadillos instead.\n")
    wait_for(lambda: paths(store, "armadillos") == {str(docs / "new.md")})
    assert paths(store, "pangolins") == set()
    # move a file into a new folder: re-pathed, not read again
    (docs / "box").mkdir()
    # The update that committed the edit reports its summary a moment later.
    assert watcher.wait_idle(30)
    reads_before = sum(s.indexed for s in summaries)
    os.rename(docs / "new.md", docs / "box" / "moved.md")
    wait_for(lambda: paths(store, "armadillos") == {str(docs / "box" / "moved.md")})
    assert watcher.wait_idle(30)
    assert sum(s.indexed for s in summaries) == reads_before
    assert sum(s.renamed for s in summaries) >= 1
    # a folder created with files in it, then moved, then deleted
    staging = docs.parent / "staging"
    staging.mkdir()
    (staging / "a.txt").write_text("Capybara husbandry.\n")
    (staging / "b.txt").write_text("More capybara facts.\n")
    os.rename(staging, docs / "incoming")
    wait_for(lambda: len(paths(store, "capybara")) == 2)
    os.rename(docs / "incoming", docs / "archive")
    wait_for(
        lambda: (
            paths(store, "capybara")
            == {str(docs / "archive" / "a.txt"), str(docs / "archive" / "b.txt")}
        )
    )
    shutil.rmtree(docs / "archive")
    wait_for(lambda: paths(store, "capybara") == set())
    # delete a file
    (docs / "box" / "moved.md").unlink()
    wait_for(lambda: paths(store, "armadillos") == set())
    assert store.file(str(docs / "box" / "moved.md")) is None
    # excluded places stay out
    (docs / ".git").mkdir()
    (docs / ".git" / "notes.txt").write_text("capybara in git\n")
    (docs / "later.txt").write_text("marker walrus\n")
    wait_for(lambda: paths(store, "walrus") == {str(docs / "later.txt")})
    assert paths(store, "capybara") == set()


def test_root_deleted_and_recreated(keyword_watch: tuple[Store, Watcher, list[Summary]]) -> None:
    store, watcher, _summaries = keyword_watch
    docs = Path(next(iter(watcher.roots)))
    assert store.status().files == 4
    shutil.rmtree(docs)
    wait_for(lambda: store.status().files == 0)
    docs.mkdir()
    (docs / "back.md").write_text("The ocelot returned.\n")
    wait_for(lambda: paths(store, "ocelot") == {str(docs / "back.md")})
    # The new folder is watched, not just scanned once.
    (docs / "again.md").write_text("And the ocelot stayed.\n")
    wait_for(lambda: len(paths(store, "ocelot")) == 2)
