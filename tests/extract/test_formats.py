"""Every format on generated files and on real documents."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from corpora import REAL_PDF, make_good_files

from sr3desk.extract import Document, ExtractError, Limits, extract, supported
from sr3desk.extract.text import decode

GOOD_KINDS = {
    "report.docx": "docx",
    "slides.pptx": "pptx",
    "notes.odt": "odt",
    "book.epub": "epub",
    "mail.eml": "email",
    "paged.pdf": "pdf",
    "letter.rtf": "rtf",
    "guide.md": "markdown",
    "page.html": "html",
    "table.csv": "csv",
    "records.json": "json",
    "events.jsonl": "json",
    "latin1.txt": "text",
    "utf16.txt": "text",
    "utf16le.txt": "text",
    "script.py": "code",
    "server.log": "log",
    "Makefile": "code",
    "manual.rst": "rst",
}


def headings(doc: Document) -> list[tuple[int, str]]:
    return [(h.level, h.title) for h in doc.headings]


def assert_headings_in_text(doc: Document) -> None:
    """Headings added as blocks sit exactly at their offset."""
    for h in doc.headings:
        assert doc.text.startswith(h.title, h.offset), (h, doc.text[h.offset : h.offset + 40])


def test_every_generated_format_yields_its_phrase(good_files: tuple[Path, dict[str, str]]) -> None:
    folder, phrases = good_files
    assert set(phrases) == set(GOOD_KINDS)
    for name, phrase in phrases.items():
        doc = extract(folder / name)
        assert doc.kind == GOOD_KINDS[name], name
        assert phrase in doc.text, (name, doc.text)
        assert supported(folder / name)


def test_docx_headings_by_style_and_tables(good_files: tuple[Path, dict[str, str]]) -> None:
    doc = extract(good_files[0] / "report.docx")
    assert headings(doc) == [(1, "Quarterly report"), (1, "Regional results"), (2, "Details")]
    assert "Region | Tons\n\nNorth | 40" in doc.text
    assert doc.title == "Quarterly report"
    assert_headings_in_text(doc)


def test_pptx_slides_are_pages_with_title_headings(good_files: tuple[Path, dict[str, str]]) -> None:
    doc = extract(good_files[0] / "slides.pptx")
    assert [p.number for p in doc.pages] == [1, 2]
    assert headings(doc) == [(1, "Roadmap"), (1, "Risks")]
    second = doc.text[doc.pages[1].start : doc.pages[1].end]
    assert second.startswith("Risks") and "Ask the zoologists" in second
    assert "Penguin" not in doc.text[doc.pages[0].start : doc.pages[0].end]
    assert_headings_in_text(doc)


def test_odt_heading_levels(good_files: tuple[Path, dict[str, str]]) -> None:
    doc = extract(good_files[0] / "notes.odt")
    assert headings(doc) == [(1, "Field notes"), (2, "Weather")]
    assert_headings_in_text(doc)


def test_epub_chapters_in_spine_order_with_toc_fallback(
    good_files: tuple[Path, dict[str, str]],
) -> None:
    doc = extract(good_files[0] / "book.epub")
    # Chapter Two has no <h1>: its table-of-contents title becomes its heading.
    assert headings(doc) == [(1, "Chapter One"), (1, "Chapter Two")]
    assert doc.text.index("astrolabe") < doc.text.index("thirteen")
    assert doc.title == "The Clockmaker"
    assert_headings_in_text(doc)


def test_email_headers_plain_body_and_attachments(good_files: tuple[Path, dict[str, str]]) -> None:
    doc = extract(good_files[0] / "mail.eml")
    assert doc.title == "Budget for the submarine cable"
    assert headings(doc) == [(1, "Budget for the submarine cable")]
    assert "From: Ada <ada@example.org>" in doc.text
    assert "Attachments: quote.pdf" in doc.text
    assert "<b>" not in doc.text and doc.text.count("submarine cable budget") == 1


def test_html_drops_scripts_styles_and_navigation(good_files: tuple[Path, dict[str, str]]) -> None:
    doc = extract(good_files[0] / "page.html")
    assert headings(doc) == [(1, "Recipes"), (2, "Soup")]
    assert "script text" not in doc.text and "color" not in doc.text and "About" not in doc.text
    assert "Leek | 2" in doc.text
    assert doc.title == "Recipes"
    assert_headings_in_text(doc)


def test_markdown_source_with_parsed_headings(good_files: tuple[Path, dict[str, str]]) -> None:
    doc = extract(good_files[0] / "guide.md")
    assert headings(doc) == [(1, "Gardening guide"), (2, "Pests")]  # not the fenced "#"
    assert doc.text.startswith("# Gardening guide")
    assert doc.text.startswith("## Pests", doc.headings[1].offset)


def test_rst_with_sphinx_directives_and_roles(good_files: tuple[Path, dict[str, str]]) -> None:
    doc = extract(good_files[0] / "manual.rst")
    assert headings(doc) == [(1, "Telescope manual"), (2, "focus(distance)"), (2, "Maintenance")]
    assert "Point it at the moon." in doc.text  # role title, not its target
    assert "Added in version 2.1. Clean the mirror monthly." in doc.text
    assert ":noindex:" not in doc.text and ".." not in doc.text
    assert not doc.warnings
    assert_headings_in_text(doc)


def test_rtf_code_page_and_paragraphs(good_files: tuple[Path, dict[str, str]]) -> None:
    doc = extract(good_files[0] / "letter.rtf")
    assert doc.encoding == "cp1252"
    assert doc.text.splitlines()[0] == "Dear committee,"


def test_csv_rows_and_quoted_cells(good_files: tuple[Path, dict[str, str]]) -> None:
    doc = extract(good_files[0] / "table.csv")
    assert doc.text.splitlines() == [
        "city | population",
        "Reykjavik, Iceland | 131000",
        "Nuuk | 19000",
    ]


def test_encodings_are_detected(good_files: tuple[Path, dict[str, str]]) -> None:
    folder = good_files[0]
    assert extract(folder / "utf16.txt").encoding == "utf-16-le"
    assert extract(folder / "utf16le.txt").encoding == "utf-16-le"
    latin = extract(folder / "latin1.txt")
    assert latin.encoding not in (None, "utf-8") and "château fort" in latin.text
    assert not latin.warnings


def test_decode_rules() -> None:
    assert decode("ok".encode("utf-8-sig"))[:2] == ("ok", "utf-8")
    assert decode("grüß".encode("utf-16-be"))[:2] == ("grüß", "utf-16-be")
    text, encoding, warnings = decode("Grüße ".encode() * 20 + b"\xff")
    assert encoding == "utf-8" and text.endswith("\ufffd") and warnings
    with pytest.raises(Exception, match="binary file"):
        decode(b"\x01\x02\x03\x04text\x05\x06\x07\x08" * 50)


def test_json_on_one_long_line_is_reindented(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text('{"items": [' + ",".join(f'{{"id": {i}}}' for i in range(500)) + "]}")
    doc = extract(path)
    assert doc.text.count("\n") > 500 and '"id": 499' in doc.text


def test_magic_bytes_beat_a_text_extension(tmp_path: Path) -> None:
    from corpora import make_text_pdf

    pdf = make_text_pdf(tmp_path / "report.txt", ["a PDF in disguise"])
    doc = extract(pdf)
    assert doc.kind == "pdf" and "a PDF in disguise" in doc.text


def test_supported_by_name_and_sniffing(tmp_path: Path) -> None:
    assert supported(Path("a/b/notes.rst.txt"))
    # Images are read by OCR, unless it is off; other binaries are never tried.
    assert supported(tmp_path / "photo.png")
    assert not supported(tmp_path / "photo.png", images=False)
    assert not supported(tmp_path / "archive.zip")
    readme = tmp_path / "README"
    readme.write_text("hello")
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(range(256)))
    assert supported(readme) and not supported(blob)


def test_pdf_pages_and_outline_headings(real_pdfs: list[Path]) -> None:
    faq = next(p for p in real_pdfs if p.name == "R-FAQ.pdf")
    assert faq == REAL_PDF
    doc = extract(faq)
    numbers = [p.number for p in doc.pages]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 40
    for before, after in zip(doc.pages, doc.pages[1:], strict=False):
        assert before.start < before.end <= after.start
    assert doc.pages[-1].end == len(doc.text)
    where = doc.text.index("R is a system for statistical computation and graphics")
    page = next(p.number for p in doc.pages if p.start <= where < p.end)
    assert page == 7  # R-FAQ 2022-09-08: "2.1 What is R?" on the 7th physical page
    titles = {h.title for h in doc.headings}
    assert {"What is R?", "5 R Add-On Packages"} <= titles
    what = next(h for h in doc.headings if h.title == "What is R?")
    assert doc.text.startswith("What is R?", what.offset)


def test_pdf_time_limit_keeps_pages_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from corpora import make_text_pdf

    import sr3desk.extract.base as base

    pdf = make_text_pdf(tmp_path / "long.pdf", [f"page {i} text" for i in range(1, 21)])
    # A clock that the text builder sees advance one second per look: each page read
    # costs "a second", deterministically, whatever the machine's load.
    looks = iter(range(10**6))
    started = base.time.monotonic()
    monkeypatch.setattr(base, "time", SimpleNamespace(monotonic=lambda: started + next(looks)))
    doc = extract(pdf, Limits(max_seconds=6.0))
    assert 0 < len(doc.pages) < 20
    assert f"read {len(doc.pages)} of 20 pages" in doc.warnings
    assert "stopped after 6 s: text incomplete" in doc.warnings
    assert doc.text.endswith(f"page {len(doc.pages)} text")
    with pytest.raises(ExtractError, match="timed out after 0 s"):
        extract(pdf, Limits(max_seconds=1e-9))


def test_python_docs_rst_sample(
    python_docs_sources: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    files = sorted(python_docs_sources.rglob("*.rst.txt"))
    sample = random.Random(3).sample(files, 25)
    sample.append(python_docs_sources / "library" / "functions.rst.txt")
    with_headings = 0
    for path in sample:
        doc = extract(path)
        assert doc.kind == "rst" and not doc.warnings, (path, doc.warnings)
        assert doc.text.strip(), path
        with_headings += bool(doc.headings)
        assert_headings_in_text(doc)
        assert ":func:`" not in doc.text and ".. versionadded::" not in doc.text, path
    assert with_headings >= 0.9 * len(sample)  # the rest are include snippets
    functions = extract(python_docs_sources / "library" / "functions.rst.txt")
    assert (2, "abs(x)") in headings(functions)
    # Sphinx directives and roles parse silently: no reporter output at all.
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_python_docs_html_sample(python_docs_sources: Path) -> None:
    html_root = python_docs_sources.parent
    pages = sorted((html_root / "library").glob("*.html"))
    for path in random.Random(5).sample(pages, 10):
        doc = extract(path)
        assert doc.kind == "html" and doc.headings, path
        assert all("¶" not in h.title for h in doc.headings), path
        assert "Navigation" not in doc.text[:200], path
        assert_headings_in_text(doc)
    doc = extract(html_root / "library" / "functions.html")
    assert (2, "abs(x)") in headings(doc)


def test_regenerating_gives_identical_text(tmp_path: Path) -> None:
    first = make_good_files(tmp_path / "a")
    second = make_good_files(tmp_path / "b")
    assert first == second
    for name in ("report.docx", "notes.odt", "page.html", "manual.rst"):
        assert extract(tmp_path / "a" / name).text == extract(tmp_path / "b" / name).text
