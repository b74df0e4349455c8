"""The worker process: same results as in-process, survives hangs and crashes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from corpora import install_test_formats, make_vanishing_file

from sr3desk.extract import ExtractError, Extractor, Limits, extract


def test_worker_gives_the_same_document(
    good_files: tuple[Path, dict[str, str]], extractor: Extractor
) -> None:
    folder, phrases = good_files
    for name in phrases:
        assert extractor.extract(folder / name) == extract(folder / name)
    pid = extractor.worker_pid
    extractor.extract(folder / "guide.md")
    assert extractor.worker_pid == pid  # one worker serves every file


def test_worker_survives_a_hang_a_crash_and_a_memory_hog(
    tmp_path: Path, good_files: tuple[Path, dict[str, str]]
) -> None:
    folder, _ = good_files
    for name in ("x.slow", "x.crash", "x.hog"):
        (tmp_path / name).write_text("trouble")
    limits = Limits(max_seconds=4.0, grace_seconds=0.5, max_memory_bytes=768 * 1024 * 1024)
    with Extractor(limits, worker_init=install_test_formats) as worker:
        assert "marmalade" in worker.extract(folder / "report.docx").text
        first = worker.worker_pid

        started = time.monotonic()
        with pytest.raises(ExtractError, match=r"timed out after \d+ s"):
            worker.extract(tmp_path / "x.slow")
        assert time.monotonic() - started >= 4.0  # never given up early
        assert worker.restarts == 1
        assert "marmalade" in worker.extract(folder / "report.docx").text
        assert worker.worker_pid != first

    # A generous time limit, so that on a loaded machine the memory limit is what stops
    # the hog, not the clock.
    limits = Limits(max_seconds=120.0, grace_seconds=0.5, max_memory_bytes=768 * 1024 * 1024)
    with Extractor(limits, worker_init=install_test_formats) as worker:
        with pytest.raises(ExtractError, match=r"extraction crashed \(SIGSEGV\)"):
            worker.extract(tmp_path / "x.crash")
        assert worker.restarts == 1
        assert "albatross" in worker.extract(folder / "notes.odt").text

        with pytest.raises(ExtractError, match="out of memory"):
            worker.extract(tmp_path / "x.hog")
        assert "sourdough" in worker.extract(folder / "page.html").text

        # Killed from outside between two files: the next file is not blamed.
        pid = worker.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)  # let the kernel reap it; the worker is not ours to wait on
        assert "Penguin" in worker.extract(folder / "slides.pptx").text


def test_a_file_deleted_while_read(tmp_path: Path) -> None:
    path = make_vanishing_file(tmp_path)
    with Extractor(worker_init=install_test_formats) as worker:
        doc = worker.extract(path)
    assert "deletes itself" in doc.text and not path.exists()


def test_close_stops_the_worker(good_files: tuple[Path, dict[str, str]]) -> None:
    worker = Extractor()
    worker.extract(good_files[0] / "guide.md")
    pid = worker.worker_pid
    assert pid is not None
    worker.close()
    worker.close()  # idempotent
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
