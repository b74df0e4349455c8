"""Text extraction: one file in, one :class:`Document` out, or an ExtractError.

``extract(path, limits)`` reads a file in this process; :class:`Extractor` does the same
in a worker process with hard time and memory limits and is what the indexer uses.
``supported(path)`` says whether a file is worth trying. Formats: plain text and source
code in any common encoding, Markdown, reStructuredText, HTML, CSV/TSV, JSON, logs,
PDF, DOCX, PPTX, ODT, EPUB, e-mail (.eml) and RTF; scanned PDF pages and images (PNG,
JPEG, TIFF, WebP, BMP, GIF) by OCR (:mod:`~sr3desk.extract.ocr`).
"""

from __future__ import annotations

from sr3desk.errors import ExtractError
from sr3desk.extract.registry import extensions, extract, supported
from sr3desk.extract.types import Document, Heading, Limits, OcrOptions, PageSpan
from sr3desk.extract.worker import Extractor

__all__ = [
    "Document",
    "ExtractError",
    "Extractor",
    "Heading",
    "Limits",
    "OcrOptions",
    "PageSpan",
    "extensions",
    "extract",
    "supported",
]
