"""The change planner on plain data: no database, no files (hashes come from a dict)."""

from __future__ import annotations

import errno

import pytest

from sr3desk.index.planner import ChangePlan, plan_changes
from sr3desk.index.scan import Entry, ScanResult
from sr3desk.index.tables import KnownFiles, records_table
from sr3desk.index.types import STATUS_INDEXED, STATUS_SKIPPED, FileRecord

ROOT = "/docs"


def rec(
    name: str, size: int = 10, mtime: float = 1.0, digest: str = "", **kw: object
) -> FileRecord:
    """A known file row under ROOT (content hash defaults to its name)."""
    return FileRecord(
        f"id-{name}", f"{ROOT}/{name}", size, mtime, digest or f"h-{name}", n_chunks=1, **kw
    )  # type: ignore[arg-type]


def entry(name: str, size: int = 10, mtime: float = 1.0, skip: str | None = None) -> Entry:
    return Entry(f"{ROOT}/{name}", size, mtime, 0, skip)


def plan(
    entries: list[Entry],
    known: list[FileRecord],
    hashes: dict[str, str],
    unchanged: list[str] = (),  # type: ignore[assignment]
    unreadable: list[str] = (),  # type: ignore[assignment]
    moved_away: list[FileRecord] | None = None,
    scopes: tuple[str, ...] = (ROOT,),
) -> tuple[ChangePlan, list[str]]:
    """The plan for a scan of ``entries`` against ``known``, and the paths hashed."""
    hashed: list[str] = []

    def hash_file(path: str) -> str:
        hashed.append(path)
        name = path.rsplit("/", 1)[1]
        if hashes.get(name) == "EACCES":
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return hashes[name]

    result = ScanResult(list(entries), list(unchanged), list(unreadable), [ROOT])
    out = plan_changes(
        result,
        KnownFiles(records_table(known)),
        scopes,
        hash_file=hash_file,
        moved_away=(lambda sizes: moved_away or []) if moved_away is not None else None,
    )
    return out, hashed


def test_nothing_changed_hashes_nothing() -> None:
    known = [rec("a.md"), rec("b.md")]
    got, hashed = plan([entry("a.md")], known, {}, unchanged=[f"{ROOT}/b.md"])
    assert (got.scanned, got.unchanged) == (2, 2)
    assert not (got.to_read or got.gone or got.moves or got.touched or got.skips)
    assert hashed == []


def test_new_files_are_read_newest_first_without_hashing() -> None:
    got, hashed = plan([entry("old.md", mtime=1.0), entry("new.md", mtime=5.0)], [], {})
    assert [t.entry.path for t in got.to_read] == [f"{ROOT}/new.md", f"{ROOT}/old.md"]
    assert all(t.old is None and t.digest == "" for t in got.to_read)
    assert hashed == []


def test_touched_file_is_redated_not_read() -> None:
    got, _ = plan([entry("a.md", mtime=9.0)], [rec("a.md")], {"a.md": "h-a.md"})
    assert got.to_read == [] and got.unchanged == 1
    ((old, new),) = got.touched
    assert (old.file_id, new.file_id, new.mtime, new.content_hash) == (
        "id-a.md",
        "id-a.md",
        9.0,
        "h-a.md",
    )


def test_edited_file_is_read_again_keeping_its_id() -> None:
    got, _ = plan([entry("a.md", size=11)], [rec("a.md")], {"a.md": "changed"})
    (task,) = got.to_read
    assert task.old is not None and task.old.file_id == "id-a.md" and task.digest == "changed"


def test_rename_is_a_move_and_the_old_path_is_not_gone() -> None:
    known = [rec("old-name.md")]
    got, _ = plan([entry("new-name.md")], known, {"new-name.md": "h-old-name.md"})
    ((old, new),) = got.moves
    assert old.path == f"{ROOT}/old-name.md" and new.path == f"{ROOT}/new-name.md"
    assert new.file_id == old.file_id and new.n_chunks == 1
    assert got.gone == [] and got.to_read == []


def test_same_size_other_content_is_new_and_the_old_file_is_gone() -> None:
    got, _ = plan([entry("b.md")], [rec("a.md")], {"b.md": "other"})
    assert [t.entry.path for t in got.to_read] == [f"{ROOT}/b.md"]
    assert [r.path for r in got.gone] == [f"{ROOT}/a.md"]


def test_gone_only_within_scope_and_not_under_unreadable_folders() -> None:
    known = [rec("a.md"), rec("locked/b.md"), FileRecord("x", "/elsewhere/c.md", 1, 1.0, "h")]
    got, _ = plan([], known, {}, unreadable=[f"{ROOT}/locked"])
    assert [r.path for r in got.gone] == [f"{ROOT}/a.md"]


def test_skips_are_recorded_once() -> None:
    known = [rec("pipe", status=STATUS_SKIPPED, reason="FIFO")]
    again, _ = plan([entry("pipe", skip="FIFO")], known, {})
    assert again.skips == [] and again.unchanged == 1
    new, _ = plan([entry("link", skip="symbolic link loop")], [], {})
    assert [(r.path, r.status, r.reason) for r in new.skips] == [
        (f"{ROOT}/link", STATUS_SKIPPED, "symbolic link loop")
    ]
    assert new.skipped == [(f"{ROOT}/link", "symbolic link loop")]


def test_unreadable_changed_file_is_skipped_with_the_reason() -> None:
    got, _ = plan([entry("a.md", size=12)], [rec("a.md")], {"a.md": "EACCES"})
    assert got.to_read == [] and got.skipped == [(f"{ROOT}/a.md", "permission denied")]


@pytest.mark.parametrize("exists_in_scope", [False, True])
def test_move_whose_old_half_is_outside_the_update(exists_in_scope: bool) -> None:
    """The watcher may see the new path first: a file elsewhere in the roots that
    vanished is offered as the move's source."""
    away = FileRecord("id-far", f"{ROOT}/far/x.md", 10, 1.0, "h-x", n_chunks=2)
    offered = [away] if exists_in_scope else []
    got, _ = plan(
        [entry("near/x.md")], [], {"x.md": "h-x"}, moved_away=offered, scopes=(f"{ROOT}/near",)
    )
    if exists_in_scope:
        ((old, new),) = got.moves
        assert old.file_id == new.file_id == "id-far" and new.status == STATUS_INDEXED
    else:
        assert got.moves == [] and len(got.to_read) == 1
