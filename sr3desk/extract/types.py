"""What extraction produces and the limits it works within.

A :class:`Document` is the text of one file plus the structure the chunker needs:
where pages start and end and where headings are, all as character offsets into
``Document.text``. :class:`Limits` bounds what one file may cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MB = 1024 * 1024


@dataclass(frozen=True)
class PageSpan:
    """Page ``number`` (1-based, physical order) is ``text[start:end]``."""

    start: int
    end: int
    number: int


@dataclass(frozen=True)
class Heading:
    """A heading whose title starts at ``text[offset:]``; ``level`` 1 is the top."""

    offset: int
    level: int
    title: str


@dataclass
class Document:
    """The extracted text of one file.

    ``kind`` names the format family ("pdf", "markdown", "rst", "html", "text", "code",
    "csv", "json", "log", "docx", "pptx", "odt", "epub", "email", "rtf", "image"). ``pages`` is
    empty for formats without pages (slides count as pages). ``headings`` are sorted by
    offset. ``warnings`` are short notes on what was lost or repaired (truncated text,
    replaced bytes, pages without text). ``encoding`` is the detected text encoding for
    text formats, else None.
    """

    path: Path
    kind: str
    text: str
    pages: list[PageSpan] = field(default_factory=list)
    headings: list[Heading] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    encoding: str | None = None
    title: str | None = None
    ocr_pages: list[int] = field(default_factory=list)
    """Pages whose text was recognised by OCR (1-based; an image file's frames count
    as pages). Empty when all the text came from a text layer."""
    ocr_languages: str = ""
    """The OCR languages used ("eng", "eng+deu"), when ``ocr_pages`` is not empty."""
    ocr_seconds: float = 0.0
    """Time spent rendering and recognising pages by OCR."""
    ocr_count: int = 0
    """Pages recognised by OCR, blank ones included (``ocr_pages`` lists those that
    gave text)."""


@dataclass(frozen=True)
class OcrOptions:
    """Whether and how scanned pages and images are read by OCR. Checked in
    ``__post_init__``."""

    enabled: bool = True
    """Off: a PDF without a text layer is reported as "no text layer (scanned?)" and
    an image file as "no text layer (image; OCR is off)"."""
    languages: str = "eng"
    """Tesseract language codes joined by "+" ("eng", "eng+deu"); each needs its
    language data installed (Debian: ``tesseract-ocr-<code>``)."""

    def __post_init__(self) -> None:
        codes = self.languages.split("+")
        if not all(c and c.replace("_", "").isalnum() for c in codes):
            raise ValueError(
                f"OCR languages must be Tesseract codes joined by '+', like 'eng+deu', "
                f"got {self.languages!r}"
            )


@dataclass(frozen=True)
class Limits:
    """What one file may cost to extract. Checked in ``__post_init__``."""

    max_file_bytes: int = 64 * MB
    """Files larger than this are skipped ("exceeds 64 MB limit")."""
    max_text_file_bytes: int = 16 * MB
    """Plain-text formats (text, code, logs, CSV, JSON, Markdown, reST, HTML) larger than
    this are skipped: a text file that big is a data dump or a log, not a document."""
    max_seconds: float = 60.0
    """Extraction time per file. Paged formats stop at this point and keep the pages
    read so far (with a warning); the worker process is killed at ``max_seconds`` plus
    ``grace_seconds`` whatever it is doing ("timed out after 60 s")."""
    grace_seconds: float = 10.0
    """Extra time before the hard kill, so that the cooperative stop can happen first."""
    max_unzipped_bytes: int = 256 * MB
    """Uncompressed size of a zip container (DOCX, PPTX, ODT, EPUB), declared and actual;
    a bigger one is refused as a zip bomb."""
    max_zip_members: int = 20_000
    """Entries in a zip container."""
    max_chars: int = 5_000_000
    """Extracted characters kept per file; the rest is dropped with a warning."""
    max_memory_bytes: int = 2048 * MB
    """Address-space limit of the extraction worker process (``RLIMIT_AS``)."""
    max_image_pixels: int = 80_000_000
    """Pixels of an image to recognise (an image file's frame, or a PDF page as
    rendered for OCR); a bigger image file is refused before it is decoded ("image
    too large"), a bigger PDF page is rendered at a lower resolution. 80 megapixels
    holds an A3 page at 600 dpi."""

    def __post_init__(self) -> None:
        for name in (
            "max_file_bytes",
            "max_text_file_bytes",
            "max_unzipped_bytes",
            "max_zip_members",
            "max_chars",
            "max_memory_bytes",
            "max_image_pixels",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)}")
        if self.max_seconds <= 0 or self.grace_seconds < 0:
            raise ValueError("Limits.max_seconds must be positive and grace_seconds >= 0")
        if self.max_memory_bytes < 256 * MB:
            raise ValueError(
                "Limits.max_memory_bytes below 256 MB leaves the worker no room to import "
                "its parsers: raise it"
            )


def human_bytes(n: int) -> str:
    """``n`` bytes as a short size for messages: ``"64 MB"``, ``"4 GB"``, ``"512 KB"``."""
    if n >= 1024 * MB:
        value, unit = n / (1024 * MB), "GB"
    elif n >= MB:
        value, unit = n / MB, "MB"
    else:
        value, unit = n / 1024, "KB"
    return f"{value:.0f} {unit}" if value >= 10 or value == int(value) else f"{value:.1f} {unit}"
