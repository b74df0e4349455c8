"""The folder walk: exclusions, symlinks, special files, order, hashing."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from corpora import make_dev_zero_link, make_fifo, make_symlink_loop

from sr3desk.index.scan import content_hash, scan, scan_paths
from sr3desk.index.types import IndexOptions


def write(path: Path, text: str = "some text\n", mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def names(root: Path, opts: IndexOptions | None = None) -> list[str]:
    result = scan([str(root)], opts or IndexOptions())
    return [os.path.relpath(e.path, root) for e in result.entries if e.skip is None]


def test_default_exclusions_and_user_globs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "keep.md")
    write(root / "sub" / "keep.txt")
    for excluded in (
        ".git/config.txt",
        "node_modules/pkg/readme.md",
        "__pycache__/x.py",
        ".hidden/notes.txt",
        ".secret.txt",
        "proj/env/pyvenv.cfg",
        "proj/env/lib/site.py",
        "cache/CACHEDIR.TAG",
        "cache/data.txt",
        "pkg.egg-info/PKG-INFO.txt",
        "notes.txt~",
        "~$report.docx",
        "archive.zip",
    ):
        write(root / excluded)
    write(root / "scans" / "image.png")
    # Images are read by OCR; with OCR off they are left out like any binary.
    assert sorted(names(root)) == ["keep.md", "scans/image.png", "sub/keep.txt"]
    assert sorted(names(root, IndexOptions(ocr=False))) == ["keep.md", "sub/keep.txt"]
    (root / "scans" / "image.png").unlink()
    assert sorted(names(root)) == ["keep.md", "sub/keep.txt"]
    assert sorted(names(root, IndexOptions(exclude=("*.md",)))) == ["sub/keep.txt"]
    assert sorted(names(root, IndexOptions(exclude=("sub/**",)))) == ["keep.md"]
    assert sorted(names(root, IndexOptions(exclude=("sub",)))) == ["keep.md"]
    hidden = names(root, IndexOptions(include_hidden=True))
    assert ".hidden/notes.txt" in hidden
    assert ".git/config.txt" not in hidden  # still a default exclusion


def test_size_limit(tmp_path: Path) -> None:
    write(tmp_path / "small.txt")
    write(tmp_path / "big.txt", "x" * 5000)
    result = scan([str(tmp_path)], IndexOptions(max_file_bytes=4096))
    found = {os.path.basename(e.path): e.skip for e in result.entries}
    assert found == {"small.txt": None, "big.txt": "exceeds 4 KB limit"}


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    write(root / "real.txt")
    write(outside / "secret.txt")
    (root / "inside-link.txt").symlink_to(root / "real.txt")
    (root / "outside-link.txt").symlink_to(outside / "secret.txt")
    (root / "outside-dir").symlink_to(outside, target_is_directory=True)
    (root / "self-dir").symlink_to(root, target_is_directory=True)  # a folder loop
    (root / "dangling.txt").symlink_to(tmp_path / "nothing.txt")
    make_symlink_loop(root)
    make_dev_zero_link(root)
    result = scan([str(root)], IndexOptions())
    found = {os.path.basename(e.path): e.skip for e in result.entries}
    assert found == {
        "real.txt": None,
        "outside-link.txt": "symbolic link to outside the indexed folders (not followed)",
        "outside-dir": "symbolic link to outside the indexed folders (not followed)",
        "dangling.txt": "broken symbolic link",
        "loop.txt": "symbolic link loop",
        "loop.txt.other": "symbolic link loop",
        "zeros.txt": "symbolic link to outside the indexed folders (not followed)",
    }


def test_special_files_are_reported_not_opened(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path)
    result = scan([str(tmp_path)], IndexOptions())
    assert [(e.path, e.skip) for e in result.entries] == [
        (str(fifo), "not a regular file (a FIFO)")
    ]
    # Hashing refuses it without blocking (no writer will ever come).
    done = threading.Event()
    errors: list[OSError] = []

    def attempt() -> None:
        try:
            content_hash(str(fifo))
        except OSError as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=attempt, daemon=True).start()
    assert done.wait(10)
    assert errors and "not a regular file" in str(errors[0])


def test_content_hash_streams(tmp_path: Path) -> None:
    a = write(tmp_path / "a.txt", "same" * 1_000_000)
    b = write(tmp_path / "b.txt", "same" * 1_000_000)
    c = write(tmp_path / "c.txt", "same" * 999_999 + "diff")
    assert content_hash(str(a)) == content_hash(str(b)) != content_hash(str(c))
    with pytest.raises(FileNotFoundError):
        content_hash(str(tmp_path / "missing.txt"))


def test_scan_paths_for_watcher_events(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "a" / "one.txt")
    write(root / "a" / "two.md")
    write(root / ".git" / "HEAD.txt")
    write(tmp_path / "elsewhere.txt")
    opts = IndexOptions()
    result = scan_paths(
        [str(root / "a"), str(root / ".git" / "HEAD.txt"), str(tmp_path / "elsewhere.txt"),
         str(root / "gone.txt")],
        [str(root)],
        opts,
    )  # fmt: skip
    assert sorted(os.path.basename(e.path) for e in result.entries) == ["one.txt", "two.md"]


def test_missing_root_is_reported(tmp_path: Path) -> None:
    result = scan([str(tmp_path / "nope")], IndexOptions())
    assert result.entries == [] and result.missing_roots == [str(tmp_path / "nope")]


def test_rescan_cost_is_one_stat_per_entry(tmp_path: Path) -> None:
    """Scanning lists each folder once and never opens a file with an extension."""
    for i in range(200):
        write(tmp_path / f"d{i % 10}" / f"f{i}.txt")
    opened: list[str] = []
    real_open = os.open

    def spy(path: object, *args: object, **kwargs: object) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    os.open = spy
    try:
        result = scan([str(tmp_path)], IndexOptions())
    finally:
        os.open = real_open
    assert len(result.entries) == 200
    assert [p for p in opened if p.endswith(".txt")] == []
