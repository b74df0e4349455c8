"""Test files: good documents of every format and a corpus of bad files.

``make_good_files(dir)`` writes one small document per format with the real library
for that format (python-docx, python-pptx, odfpy, ebooklib, email) and returns the
phrase each must yield. ``make_bad_corpus(dir)`` writes the bad files of the
reliability tests next to good ones and copies of a few real documents and returns
``{file name: expected reason substring}``, None for files that must be indexed.

Scan-level oddities (a FIFO, a symlink loop, a symlink to /dev/zero, a file deleted
while it is read) have their own builders: the index tests place them in a tree.
``install_test_formats`` is a worker hook (``Extractor(worker_init=...)``) that adds a
format that hangs (``.slow``) and one that deletes its file while reading (``.vanish``).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import time
import zipfile
import zlib
from email.message import EmailMessage
from pathlib import Path

REAL_RST = Path("/usr/share/doc/python3.11/html/_sources/tutorial/introduction.rst.txt")
REAL_HTML = Path("/usr/share/doc/python3.11/html/tutorial/introduction.html")
REAL_PDF = Path("/usr/share/R/doc/manual/R-FAQ.pdf")

# Reasons as the extractor words them (substrings are enough).
BINARY = "binary file"
ENCRYPTED = "encrypted PDF"
NO_TEXT = "no text layer"
CORRUPT_PDF = "corrupt PDF"
ZIP_BOMB = "zip bomb"
TOO_LARGE = "exceeds"


def make_text_pdf(path: Path, pages: list[str]) -> Path:
    """Write a minimal PDF whose page ``i`` shows the text ``pages[i]`` (Helvetica)."""
    objects: list[bytes] = []
    n = len(pages)
    # 1: catalog, 2: page tree, 3: font, then (page, content) pairs.
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        lines = []
        for j, line in enumerate(text.split("\n")):
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            lines.append(f"BT /F1 11 Tf 50 {750 - 14 * j} Td ({escaped}) Tj ET")
        stream = "\n".join(lines).encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(
            b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    path.write_bytes(bytes(out))
    return path


def make_encrypted_pdf(path: Path, text: str = "secret plans") -> Path:
    """A text PDF that needs the user password "secret" (RC4-128, pypdf's writer)."""
    from pypdf import PdfReader, PdfWriter

    plain = io.BytesIO()
    make_text_pdf(path, [text])
    writer = PdfWriter(clone_from=PdfReader(path))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    writer.write(plain)
    path.write_bytes(plain.getvalue())
    return path


def make_scanned_pdf(path: Path, pages: int = 2) -> Path:
    """A PDF whose pages carry no text at all (as a scan without OCR would)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    with path.open("wb") as fh:
        writer.write(fh)
    return path


def make_docx(path: Path) -> Path:
    """A Word document with a title, two heading levels, paragraphs and a table."""
    import docx

    document = docx.Document()
    document.core_properties.title = "Quarterly report"
    document.add_heading("Quarterly report", level=0)
    document.add_paragraph("Revenue from the lighthouse keeper program grew strongly.")
    document.add_heading("Regional results", level=1)
    document.add_paragraph("The northern region sold forty tons of marmalade.")
    document.add_heading("Details", level=2)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Region", "Tons"
    table.cell(1, 0).text, table.cell(1, 1).text = "North", "40"
    document.save(str(path))
    return path


def make_pptx(path: Path) -> Path:
    """A deck of two slides with titles, body text and speaker notes."""
    from pptx import Presentation

    deck = Presentation()
    for title, body, notes in (
        ("Roadmap", "Ship the glacier observatory in spring", "Mention the budget"),
        ("Risks", "Penguin migration may delay the launch", "Ask the zoologists"),
    ):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        slide.notes_slide.notes_text_frame.text = notes
    deck.save(str(path))
    return path


def make_odt(path: Path) -> Path:
    """An OpenDocument text with two headings and paragraphs."""
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    document = OpenDocumentText()
    document.text.addElement(H(outlinelevel=1, text="Field notes"))
    document.text.addElement(P(text="We observed a rare albatross near the harbour."))
    document.text.addElement(H(outlinelevel=2, text="Weather"))
    document.text.addElement(P(text="Fog rolled in after noon."))
    document.save(str(path))
    return path


def make_epub(path: Path) -> Path:
    """A two-chapter EPUB; the second chapter has no heading of its own."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("sr3desk-test-book")
    book.set_title("The Clockmaker")
    book.set_language("en")
    one = epub.EpubHtml(title="Chapter One", file_name="one.xhtml", lang="en")
    one.content = "<h1>Chapter One</h1><p>The clockmaker repaired a brass astrolabe.</p>"
    two = epub.EpubHtml(title="Chapter Two", file_name="two.xhtml", lang="en")
    two.content = "<p>At dawn the tower bells rang thirteen times.</p>"
    for chapter in (one, two):
        book.add_item(chapter)
    book.toc = [
        epub.Link("one.xhtml", "Chapter One", "one"),
        epub.Link("two.xhtml", "Chapter Two", "two"),
    ]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", one, two]
    epub.write_epub(str(path), book)
    return path


def make_eml(path: Path) -> Path:
    """A multipart e-mail: plain and HTML alternatives plus a PDF attachment."""
    message = EmailMessage()
    message["Subject"] = "Budget for the submarine cable"
    message["From"] = "Ada <ada@example.org>"
    message["To"] = "team@example.org"
    message["Date"] = "Tue, 03 Sep 2024 10:00:00 +0000"
    message.set_content("Please approve the submarine cable budget by Friday.")
    message.add_alternative(
        "<p>Please approve the <b>submarine cable</b> budget.</p>", subtype="html"
    )
    message.add_attachment(
        b"%PDF-1.4\n", maintype="application", subtype="pdf", filename="quote.pdf"
    )
    path.write_bytes(bytes(message))
    return path


def make_good_files(directory: Path) -> dict[str, str]:
    """Write one document per format into ``directory``; returns {name: phrase it holds}."""
    directory.mkdir(parents=True, exist_ok=True)
    make_docx(directory / "report.docx")
    make_pptx(directory / "slides.pptx")
    make_odt(directory / "notes.odt")
    make_epub(directory / "book.epub")
    make_eml(directory / "mail.eml")
    make_text_pdf(
        directory / "paged.pdf", ["First page about volcanoes", "Second page about geysers"]
    )
    (directory / "letter.rtf").write_bytes(
        rb"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Times;}}\f0 Dear committee,\par "
        rb"the caf\'e9 will host the chess tournament.\par}"
    )
    (directory / "guide.md").write_text(
        "# Gardening guide\n\nWater the tomatoes daily.\n\n## Pests\n\nSlugs love lettuce.\n\n"
        "```\n# not a heading\n```\n",
        encoding="utf-8",
    )
    (directory / "page.html").write_text(
        "<html><head><title>Recipes</title><style>p {color: red}</style>"
        "<script>var hidden = 'script text';</script></head><body><nav>Home | About</nav>"
        "<h1>Recipes</h1><p>Knead the sourdough for ten minutes.</p><h2>Soup</h2>"
        "<table><tr><td>Leek</td><td>2</td></tr></table></body></html>",
        encoding="utf-8",
    )
    (directory / "table.csv").write_text(
        'city,population\n"Reykjavik, Iceland",131000\nNuuk,19000\n', encoding="utf-8"
    )
    (directory / "records.json").write_text(
        '{"species": "narwhal", "habitat": "arctic"}', encoding="utf-8"
    )
    (directory / "events.jsonl").write_text(
        '{"event": "eclipse"}\n{"event": "meteor shower"}\n', encoding="utf-8"
    )
    (directory / "latin1.txt").write_bytes(
        "Très bien, dit le garçon à la fenêtre. Déjà vu, déjà entendu, château fort.\n".encode(
            "cp1252"
        )
        * 3
    )
    (directory / "utf16.txt").write_text(
        "Unicode sixteen with a byte order mark: ümlaut", encoding="utf-16"
    )
    (directory / "utf16le.txt").write_bytes("Little endian without BOM: ñandú".encode("utf-16-le"))
    (directory / "script.py").write_text(
        "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n"
    )
    (directory / "server.log").write_text("2024-01-01 12:00:00 INFO disk quota exceeded on /srv\n")
    (directory / "Makefile").write_text("all:\n\techo building the observatory\n")
    (directory / "manual.rst").write_text(
        "Telescope manual\n================\n\nPoint it at :func:`the moon <moon>`.\n\n"
        ".. function:: focus(distance)\n   :noindex:\n\n   Adjust the focus ring.\n\n"
        "Maintenance\n-----------\n\n.. versionadded:: 2.1\n   Clean the mirror monthly.\n",
        encoding="utf-8",
    )
    return {
        "report.docx": "forty tons of marmalade",
        "slides.pptx": "Penguin migration",
        "notes.odt": "rare albatross",
        "book.epub": "tower bells rang thirteen",
        "mail.eml": "submarine cable budget",
        "paged.pdf": "Second page about geysers",
        "letter.rtf": "café will host the chess tournament",
        "guide.md": "Slugs love lettuce",
        "page.html": "Knead the sourdough",
        "table.csv": "Reykjavik, Iceland | 131000",
        "records.json": "narwhal",
        "events.jsonl": "meteor shower",
        "latin1.txt": "garçon à la fenêtre",
        "utf16.txt": "ümlaut",
        "utf16le.txt": "ñandú",
        "script.py": "def fibonacci",
        "server.log": "disk quota exceeded",
        "Makefile": "building the observatory",
        "manual.rst": "Adjust the focus ring",
    }


def make_zip_bomb_docx(path: Path, megabytes: int = 300) -> Path:
    """A DOCX that is a valid Word document plus ``megabytes`` MB of zeros that compress
    to almost nothing (each 1 MB member is compressed once and stored many times)."""
    good = io.BytesIO()
    make_docx(Path(path))  # a real document to start from
    good.write(Path(path).read_bytes())
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed = block.compress(b"\0" * (1 << 20)) + block.flush()
    crc = zlib.crc32(b"\0" * (1 << 20))
    with zipfile.ZipFile(io.BytesIO(good.getvalue())) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in members:
            archive.writestr(info, data)
        for i in range(megabytes):
            _write_precompressed(archive, f"word/media/zeros{i}.bin", compressed, crc, 1 << 20)
    path.write_bytes(out.getvalue())
    return path


def _write_precompressed(
    archive: zipfile.ZipFile, name: str, compressed: bytes, crc: int, size: int
) -> None:
    """Add an entry whose deflated bytes are already known (no recompression)."""
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.CRC, info.compress_size, info.file_size = crc, len(compressed), size
    info.header_offset = archive.fp.tell()  # type: ignore[union-attr]
    archive.fp.write(info.FileHeader(zip64=False))  # type: ignore[union-attr]
    archive.fp.write(compressed)  # type: ignore[union-attr]
    archive.filelist.append(info)
    archive.NameToInfo[name] = info
    archive.start_dir = archive.fp.tell()  # type: ignore[union-attr]


def make_lying_zip_docx(path: Path) -> Path:
    """A DOCX whose central directory understates a member's size (a lying bomb)."""
    make_docx(path)
    data = bytearray(path.read_bytes())
    # The name's last occurrence is in the central directory, 46 bytes into its entry;
    # the uncompressed size sits at offset 24 of the entry (4 bytes, little endian).
    entry = data.rfind(b"word/document.xml") - 46
    assert data[entry : entry + 4] == b"PK\x01\x02"
    data[entry + 24 : entry + 28] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def make_bad_corpus(directory: Path) -> dict[str, str | None]:
    """Write the reliability corpus into ``directory``.

    Returns {file name: substring of the skip reason}, None for files that must be
    indexed. A 0-byte file is indexed as an empty document (no chunks): it is a
    legitimate file with nothing in it, not an error. Invalid UTF-8 is indexed with
    the bad bytes replaced. Takes about a second; writes about 55 MB (the long line).
    """
    directory.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}

    pdf = make_text_pdf(directory / "truncated.pdf", [f"page {i} of a long PDF" for i in range(30)])
    data = pdf.read_bytes()
    pdf.write_bytes(data[: len(data) // 2])
    expected["truncated.pdf"] = CORRUPT_PDF
    (directory / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 64)
    expected["corrupt.pdf"] = CORRUPT_PDF
    make_encrypted_pdf(directory / "encrypted.pdf")
    expected["encrypted.pdf"] = ENCRYPTED
    make_scanned_pdf(directory / "scanned.pdf")
    expected["scanned.pdf"] = NO_TEXT
    make_zip_bomb_docx(directory / "bomb.docx")
    expected["bomb.docx"] = ZIP_BOMB
    (directory / "empty.txt").write_bytes(b"")
    expected["empty.txt"] = None
    (directory / "binary.txt").write_bytes(os.urandom(65536))
    expected["binary.txt"] = BINARY
    (directory / "invalid-utf8.txt").write_bytes(
        "Grüße aus Köln, naïve café society.\n".encode() * 50 + b"broken \xff\xfe\xc3\x28 bytes\n"
    )
    expected["invalid-utf8.txt"] = None
    with (directory / "one-line.txt").open("wb") as fh:
        word = b"lorem ipsum dolor sit amet "
        for _ in range(50 * 1024 * 1024 // (len(word) * 4096) + 1):
            fh.write(word * 4096)
    expected["one-line.txt"] = TOO_LARGE

    good = directory / "good"
    for name in make_good_files(good):
        expected[f"good/{name}"] = None
    for real in (REAL_RST, REAL_HTML, REAL_PDF):
        shutil.copy(real, good / real.name)
        expected[f"good/{real.name}"] = None
    return expected


# -- scan-level oddities ---------------------------------------------------------------


def make_fifo(directory: Path, name: str = "pipe.txt") -> Path:
    """A named pipe (opening it for reading would block forever without a writer)."""
    path = directory / name
    os.mkfifo(path)
    return path


def make_symlink_loop(directory: Path, name: str = "loop.txt") -> Path:
    """Two symlinks pointing at each other; ``name`` is one of them."""
    path, other = directory / name, directory / f"{name}.other"
    path.symlink_to(other.name)
    other.symlink_to(path.name)
    return path


def make_dev_zero_link(directory: Path, name: str = "zeros.txt") -> Path:
    """A symlink to /dev/zero (endless bytes if ever read)."""
    path = directory / name
    path.symlink_to("/dev/zero")
    return path


def make_vanishing_file(directory: Path, name: str = "gone.vanish") -> Path:
    """A text file that the ``.vanish`` test format deletes while extracting it."""
    path = directory / name
    path.write_text("this file deletes itself while it is read\n")
    return path


# -- worker hooks -----------------------------------------------------------------------

SLOW_SECONDS = 3600.0


def _slow(data: bytes, out: object) -> None:
    time.sleep(SLOW_SECONDS)


def _vanish(data: bytes, out: object) -> None:
    from sr3desk.extract.base import TextBuilder
    from sr3desk.extract.text import extract_plain

    assert isinstance(out, TextBuilder) and out.path is not None
    out.path.unlink(missing_ok=True)
    extract_plain(data, out)


def _crash(data: bytes, out: object) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _hog(data: bytes, out: object) -> None:
    hoard = []
    while True:  # until the worker's address-space limit stops it
        hoard.append(bytearray(64 * 1024 * 1024))


def install_test_formats() -> None:
    """Worker hook: ``.slow`` files hang (to test the time limit), ``.vanish`` files are
    deleted while being read, ``.crash`` files kill the worker (SIGSEGV) and ``.hog``
    files allocate memory without end. Pass as
    ``Extractor(worker_init=install_test_formats)``."""
    from sr3desk.extract.registry import Format, register

    register("slow", Format("text", _slow, True))
    register("vanish", Format("text", _vanish, True))
    register("crash", Format("text", _crash, True))
    register("hog", Format("text", _hog, True))


# The Python tutorial pages the tuning tests index (tests/conftest.py: tune_indexed).
TUNE_DOCS = ("appetite", "whatnow", "interpreter", "venv", "modules", "errors", "stdlib", "classes")


def copy_tune_home(indexed: Path, dst: Path) -> Path:
    """Copy the ``tune_indexed`` fixture's folder to ``dst`` with its docs folder remembered in the
    settings; returns the copy's data directory."""
    from sr3desk.settings import Settings

    shutil.copytree(indexed, dst)
    home = dst / "home"
    settings = Settings.load(home)
    settings.folders = [str(dst / "docs")]
    settings.save(home)
    return home
