"""Every bad file gives its reason, fast, through the worker; nothing hangs."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
from corpora import (
    make_dev_zero_link,
    make_fifo,
    make_lying_zip_docx,
    make_symlink_loop,
    make_zip_bomb_docx,
)

from sr3desk.extract import ExtractError, Extractor, Limits, extract
from sr3desk.extract.registry import _os_reason
from sr3desk.index.chunking import ApproxCounter, chunk_document


def test_bad_corpus_through_the_worker(
    bad_corpus: tuple[Path, dict[str, str | None]], extractor: Extractor
) -> None:
    folder, expected = bad_corpus
    assert len(expected) >= 30
    for name, reason in expected.items():
        started = time.monotonic()
        try:
            doc = extractor.extract(folder / name)
        except ExtractError as err:
            assert reason is not None, f"{name} should be indexed, got {err.reason!r}"
            assert reason in err.reason, (name, err.reason)
            assert len(err.reason) < 100 and "\n" not in err.reason
        else:
            assert reason is None, f"{name} should fail with {reason!r}"
            assert doc.text or name == "empty.txt"
        # Only the real 52-page PDF takes seconds; every bad file is refused at once.
        if reason is not None:
            assert time.monotonic() - started < 5, name
    assert extractor.restarts == 0


def test_empty_and_invalid_utf8_files_are_documents(
    bad_corpus: tuple[Path, dict[str, str | None]],
) -> None:
    folder, _ = bad_corpus
    empty = extract(folder / "empty.txt")
    assert empty.text == "" and chunk_document(empty, ApproxCounter()) == []
    broken = extract(folder / "invalid-utf8.txt")
    assert broken.encoding == "utf-8" and "Grüße aus Köln" in broken.text
    assert "broken \ufffd\ufffd\ufffd( bytes" in broken.text
    assert broken.warnings == ["invalid utf-8 bytes replaced"]


def test_scan_level_oddities_are_refused_without_opening(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path)
    loop = make_symlink_loop(tmp_path)
    zeros = make_dev_zero_link(tmp_path)
    with Extractor(Limits(max_seconds=5, grace_seconds=1)) as worker:
        for path, reason in (
            (fifo, "not a regular file (a FIFO)"),
            (loop, "symlink loop"),
            (zeros, "not a regular file (a character device)"),
            (tmp_path / "never-existed.txt", "file vanished"),
            (tmp_path, "not a regular file (a folder)"),
        ):
            with pytest.raises(ExtractError) as caught:
                worker.extract(path)
            assert caught.value.reason == reason
        assert worker.restarts == 0


def test_os_errors_become_short_reasons() -> None:
    assert _os_reason(PermissionError(errno.EACCES, "Permission denied")) == "permission denied"
    assert _os_reason(FileNotFoundError(errno.ENOENT, "No such file")) == "file vanished"
    assert _os_reason(OSError(errno.ELOOP, "Too many levels")) == "symlink loop"


def test_size_limits(tmp_path: Path) -> None:
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"0" * 3 * 1024 * 1024)
    with pytest.raises(ExtractError, match="exceeds 2 MB limit"):
        extract(big, Limits(max_file_bytes=2 * 1024 * 1024))
    text = tmp_path / "notes.txt"
    text.write_text("word " * 300_000)
    with pytest.raises(ExtractError, match="exceeds 1 MB limit for text files"):
        extract(text, Limits(max_text_file_bytes=1024 * 1024))
    doc = extract(text, Limits(max_chars=1000))
    assert len(doc.text) == 1000 and doc.warnings == ["text cut at 1,000 characters"]


def test_zip_checks(tmp_path: Path) -> None:
    bomb = make_zip_bomb_docx(tmp_path / "bomb.docx", megabytes=20)
    with pytest.raises(ExtractError, match=r"zip bomb: 2\d MB uncompressed"):
        extract(bomb, Limits(max_unzipped_bytes=10 * 1024 * 1024))
    with pytest.raises(ExtractError, match=r"zip bomb: \d+ entries"):
        extract(bomb, Limits(max_zip_members=10))
    doc = extract(bomb)  # within the default 256 MB the same file is a fine document
    assert "marmalade" in doc.text
    lying = make_lying_zip_docx(tmp_path / "lying.docx")
    with pytest.raises(ExtractError, match="corrupt DOCX: Bad CRC-32"):
        extract(lying)
    not_zip = tmp_path / "fake.docx"
    not_zip.write_text("just text")
    with pytest.raises(ExtractError, match="corrupt DOCX"):
        extract(not_zip)


def test_one_huge_line_is_linear(bad_corpus: tuple[Path, dict[str, str | None]]) -> None:
    """With the text limit lifted, a 50 MB line still goes through in seconds."""
    folder, _ = bad_corpus
    path = folder / "one-line.txt"
    assert os.path.getsize(path) > 50 * 1024 * 1024
    started = time.monotonic()
    doc = extract(path, Limits(max_text_file_bytes=64 * 1024 * 1024, max_chars=2_000_000))
    assert len(doc.text) == 2_000_000 and "\n" not in doc.text
    chunks = chunk_document(doc, ApproxCounter())
    assert chunks and all(c.tokens <= 256 for c in chunks)
    assert time.monotonic() - started < 120  # a hang guard, not a benchmark
