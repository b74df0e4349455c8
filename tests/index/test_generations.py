"""The generation pointer's state table: every event of :meth:`Pointer.open_for_writer`'s
docstring, on the pointer file alone (no tables), and the switch back under the lock."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from sr3desk.index.generations import KEYWORD_MODEL, META_FILE, Generation, Pointer
from sr3desk.index.lock import WriterLock
from sr3desk.index.store import INDEX_DIR, Store


def model(tmp_path: Path, name: str) -> SimpleNamespace:
    """A model as the pointer sees it (``ModelLike``): identity, size and file, no weights."""
    return SimpleNamespace(model_id=f"{name}-id", name=name, dim=8, path=tmp_path / f"{name}.gguf")


@pytest.fixture
def pointer(tmp_path: Path) -> Pointer:
    folder = tmp_path / INDEX_DIR
    folder.mkdir()
    return Pointer(folder)


def states(pointer: Pointer) -> tuple[str | None, str | None, str | None, list[str]]:
    """(active, building, previous, retired) by model id, as saved on disk."""
    meta = Pointer(pointer.path.parent)
    meta.refresh(force=True)
    m = meta.meta

    def model_of(key: str | None) -> str | None:
        return m.gens[key].model_id if key else None

    retired = sorted(m.gens[k].model_id for k in m.retired)
    return model_of(m.active), model_of(m.building), model_of(m.previous), retired


def test_open_creates_the_tables_before_naming_a_new_generation(
    pointer: Pointer, tmp_path: Path
) -> None:
    first = model(tmp_path, "first")
    made: list[str] = []

    def make_tables(gen: Generation) -> None:
        assert gen.key not in pointer.meta.gens  # not named yet
        made.append(gen.key)

    gen = pointer.open_for_writer(first, make_tables)
    assert made == [gen.key] and states(pointer) == ("first-id", None, None, [])
    # The model's generation serves: opening again changes nothing.
    assert pointer.open_for_writer(first, make_tables) == gen and made == [gen.key]


def test_every_event_of_the_state_table(pointer: Pointer, tmp_path: Path) -> None:
    first, second, third = (model(tmp_path, n) for n in ("first", "second", "third"))
    a = pointer.open_for_writer(first, lambda g: None)
    b = pointer.open_for_writer(second, lambda g: None)  # built beside A
    assert states(pointer) == ("first-id", "second-id", None, [])
    assert pointer.open_for_writer(second, lambda g: None) == b  # goes on building
    assert not pointer.complete(a.key)  # only the building one completes
    assert pointer.complete(b.key)
    assert states(pointer) == ("second-id", None, "first-id", [])

    c = pointer.open_for_writer(third, lambda g: None)
    assert states(pointer) == ("second-id", "third-id", "first-id", [])
    # Back to the previous model: it serves at once, the unfinished one is dropped.
    assert pointer.open_for_writer(first, lambda g: None) == a
    assert states(pointer) == ("first-id", None, "second-id", ["third-id"])
    assert pointer.meta.retired[c.key] == 0.0  # never served: at once

    pointer.open_for_writer(third, lambda g: None)
    # The served model opens again: the building one would never complete.
    assert pointer.open_for_writer(first, lambda g: None) == a
    assert states(pointer) == ("first-id", None, "second-id", ["third-id", "third-id"])

    d = pointer.open_for_writer(third, lambda g: None)
    assert pointer.complete(d.key)  # the one kept before retires, after its grace
    assert states(pointer) == ("third-id", None, "first-id", ["second-id", "third-id", "third-id"])
    assert pointer.meta.retired[b.key] > 0.0
    due = {g.key for g in pointer.due_for_drop(now=pointer.meta.retired[b.key] + 1)}
    assert b.key not in due and len(due) == 2  # the unfinished ones only
    pointer.forget(sorted(due))
    assert states(pointer) == ("third-id", None, "first-id", ["second-id"])


def test_keyword_writer_fills_what_serves(pointer: Pointer, tmp_path: Path) -> None:
    gen = pointer.open_for_writer(None, lambda g: None)
    assert gen.model_id == KEYWORD_MODEL and gen.dim is None
    assert pointer.open_for_writer(None, lambda g: None) == gen
    built = pointer.open_for_writer(model(tmp_path, "first"), lambda g: None)
    # Without a model the writer fills the served generation, and keeps the built one.
    assert pointer.open_for_writer(None, lambda g: None) == gen
    assert pointer.meta.building == built.key


def test_a_moved_gguf_is_recorded(pointer: Pointer, tmp_path: Path) -> None:
    first = model(tmp_path, "first")
    pointer.open_for_writer(first, lambda g: None)
    moved = SimpleNamespace(**{**vars(first), "path": tmp_path / "moved" / "first.gguf"})
    assert pointer.open_for_writer(moved, lambda g: None).model_path == str(moved.path)
    saved = json.loads(pointer.path.read_text())
    assert [g["model_path"] for g in saved["gens"].values()] == [str(moved.path)]


def test_serve_previous_goes_back_by_gguf_path_under_the_lock(tmp_path: Path) -> None:
    home = tmp_path
    (home / INDEX_DIR).mkdir()
    pointer = Pointer(home / INDEX_DIR)
    first, second = model(tmp_path, "first"), model(tmp_path, "second")
    pointer.open_for_writer(first, lambda g: None)
    assert pointer.complete(pointer.open_for_writer(second, lambda g: None).key)
    assert not Store.serve_previous(home, second.path)  # it serves; not the kept one
    with WriterLock(home):  # another writer holds the index: it does it when it opens
        assert not Store.serve_previous(home, first.path)
    assert states(pointer)[:3] == ("second-id", None, "first-id")
    assert Store.serve_previous(home, tmp_path / "." / "first.gguf")  # the same file
    assert states(pointer)[:3] == ("first-id", None, "second-id")
    assert (home / INDEX_DIR / META_FILE).is_file()


def test_serve_previous_without_an_index(tmp_path: Path) -> None:
    assert not Store.serve_previous(tmp_path, tmp_path / "model.gguf")
