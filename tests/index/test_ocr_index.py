"""Scanned documents through the indexer and ``sr3desk search``: found at their page,
never read by OCR twice, and back to "no text layer" when OCR is turned off."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from scans import PAGES, R_INTRO, have_tools, image_pdf, rasterize

from sr3desk.cli import main
from sr3desk.index.indexer import Indexer
from sr3desk.index.store import Store
from sr3desk.index.types import STATUS_INDEXED, STATUS_SKIPPED, IndexOptions, OcrNote

pytestmark = pytest.mark.skipif(have_tools() is not None, reason=str(have_tools()))

# A sentence of R-intro's page 14, which the scan's second page shows.
SENTENCE = "the elementary arithmetic operators are the usual"


@pytest.fixture(scope="module")
def scan_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a two-page image-only PDF (R-intro pages 12 and 14 at 300 dpi)
    and a Python docs page with a text layer of its own."""
    base = tmp_path_factory.mktemp("ocr-index")
    pngs = [rasterize(R_INTRO, n, 300, base / f"p{n}.png") for n in PAGES[:2]]
    docs = base / "docs"
    docs.mkdir()
    image_pdf(pngs, docs / "scanned-manual.pdf", 300)
    text = Path("/usr/share/doc/python3.11/html/_sources/library/json.rst.txt")
    shutil.copyfile(text, docs / "json.rst.txt")
    return docs


def _run(home: Path, docs: Path, **options: object) -> tuple[int, int]:
    """Index ``docs``; returns (files read, pages read by OCR)."""
    with (
        Store.open(home, None, write=True) as store,
        Indexer(
            store,
            options=IndexOptions(**options),  # type: ignore[arg-type]
        ) as indexer,
    ):
        summary = indexer.run([docs])
    return summary.indexed, summary.ocr_pages


def test_scanned_pdf_indexed_once(scan_folder: Path, tmp_path: Path) -> None:
    home, docs = tmp_path / "home", tmp_path / "docs"
    shutil.copytree(scan_folder, docs)
    scan = str(docs / "scanned-manual.pdf")
    assert _run(home, docs) == (2, 2)
    with Store.open(home) as store:
        rec = store.file(scan)
        assert rec is not None and rec.status == STATUS_INDEXED
        assert OcrNote.parse(rec.reason) == OcrNote("eng", frozenset({1, 2}))
        hits = store.keyword_search(SENTENCE, 3)
        assert hits[0].path == scan and hits[0].page == 2
        chunks_before = [c.chunk_id for c in store.file_chunks(rec.file_id)]

    # Unchanged, then only touched (new mtime, same bytes): no OCR either time.
    assert _run(home, docs) == (0, 0)
    os.utime(scan, (1_700_000_000, 1_700_000_000))
    assert _run(home, docs) == (0, 0)
    with Store.open(home) as store:
        rec = store.file(scan)
        assert rec is not None and rec.mtime == 1_700_000_000
        assert [c.chunk_id for c in store.file_chunks(rec.file_id)] == chunks_before

    # OCR off: the scan goes back to having no text layer; on again: read again.
    assert _run(home, docs, ocr=False) == (0, 0)
    with Store.open(home) as store:
        rec = store.file(scan)
        assert rec is not None and rec.status == STATUS_SKIPPED
        assert rec.reason == "no text layer (scanned?)"
        assert (
            store.keyword_search(SENTENCE, 3) == []
            or store.keyword_search(SENTENCE, 3)[0].path != scan
        )
    assert _run(home, docs, ocr=False) == (0, 0)  # the setting did not change again
    assert _run(home, docs) == (1, 2)
    with Store.open(home) as store:
        assert store.keyword_search(SENTENCE, 3)[0].path == scan


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_search_finds_the_scanned_sentence_first(
    scan_folder: Path,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_gguf: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    home = tmp_path_factory.mktemp("ocr-cli")
    assert main(["index", str(scan_folder), "--db", str(home), "--model", str(tiny_gguf)]) == 0
    capsys.readouterr()
    args = ["search", SENTENCE, "--db", str(home), "--model", str(tiny_gguf), "--json"]
    assert main([*args, "--mode", mode]) == 0
    out = json.loads(capsys.readouterr().out)
    first = out["results"][0]
    assert first["path"] == str(scan_folder / "scanned-manual.pdf")
    assert first["page"] == 2 and first["ocr"] is True
    assert main(["search", SENTENCE, "--db", str(home), "--mode", "keyword"]) == 0
    assert "page 2  (text by OCR)" in capsys.readouterr().out
