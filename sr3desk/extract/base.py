"""What every format module shares: the text builder, the deadline, the failure type.

A format module is a function ``extract_x(data: bytes, out: TextBuilder) -> None`` that
appends blocks, headings and pages to ``out`` and raises :class:`Unreadable` with a short
reason when the file cannot be read. The registry turns that into a
:class:`~sr3desk.extract.types.Document` or an :class:`~sr3desk.errors.ExtractError`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from sr3desk.extract.types import Document, Heading, Limits, OcrOptions, PageSpan

# C0 controls other than tab, newline and form feed, plus DEL: noise from every format.
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]+")
_CRLF = re.compile("\r\n?")
_WS = re.compile(r"\s+")


class Unreadable(Exception):
    """The file cannot be extracted; ``str(err)`` is the short reason for the user."""


def clean(text: str) -> str:
    """Unify line ends, turn form feeds into line breaks and drop control characters."""
    if "\r" in text:
        text = _CRLF.sub("\n", text)
    if "\x0c" in text:
        text = text.replace("\x0c", "\n")
    return _CONTROL.sub("", text)


def one_line(text: str) -> str:
    """Collapse all whitespace runs to single spaces (titles, table cells)."""
    return _WS.sub(" ", text).strip()


class TextBuilder:
    """Accumulates a document's text block by block, with headings and pages.

    Blocks are separated by a blank line. Text past ``limits.max_chars`` is dropped
    with one warning; :meth:`should_stop` tells loops when to end early (text full or
    time up), so that a long document yields what was read rather than nothing.
    """

    def __init__(
        self,
        limits: Limits,
        deadline: float | None = None,
        path: Path | None = None,
        ocr: OcrOptions | None = None,
    ) -> None:
        self.limits = limits
        self.deadline = deadline
        self.path = path  # the file being read, for messages
        self.ocr = ocr or OcrOptions()  # whether scanned pages and images are read by OCR
        self.ocr_pages: list[int] = []
        self.ocr_languages = ""
        self.ocr_seconds = 0.0
        self.ocr_count = 0
        self.headings: list[Heading] = []
        self.pages: list[PageSpan] = []
        self.warnings: list[str] = []
        self.encoding: str | None = None
        self.title: str | None = None
        self._parts: list[str] = []
        self._len = 0
        self._full = False
        self._late = False
        self._page_number: int | None = None  # the open page
        self._page_start: int | None = None  # where its first block starts

    @property
    def timed_out(self) -> bool:
        """True once :meth:`should_stop` has seen the deadline pass."""
        return self._late

    @property
    def length(self) -> int:
        """Characters so far."""
        return self._len

    def text(self) -> str:
        """The text so far (joins the parts once; cheap to call again)."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def warn(self, message: str) -> None:
        """Record a short note on what was lost or repaired (once per message)."""
        if message not in self.warnings:
            self.warnings.append(message)

    def should_stop(self) -> bool:
        """True once the text is full or the time is up; loops over parts check it."""
        if self._full:
            return True
        if self.deadline is not None and time.monotonic() > self.deadline:
            if not self._late:
                self._late = True
                self.warn(f"stopped after {self.limits.max_seconds:.0f} s: text incomplete")
            return True
        return False

    def _append(self, text: str) -> bool:
        room = self.limits.max_chars - self._len
        if len(text) > room:
            text = text[: max(room, 0)]
            self._full = True
            self.warn(f"text cut at {self.limits.max_chars:,} characters")
        if text:
            self._parts.append(text)
            self._len += len(text)
        return not self._full

    def _separate(self) -> None:
        if self._len and not self._full:
            self._append("\n\n")

    def block(self, text: str, *, cleaned: bool = False) -> int:
        """Append a paragraph-like block; returns its start offset (-1 when empty)."""
        if not cleaned:
            text = clean(text)
        text = text.strip("\n")
        if not text.strip() or self._full:
            return -1
        self._separate()
        start = self._len
        if self._page_number is not None and self._page_start is None:
            self._page_start = start
        self._append(text)
        return start

    def heading(self, title: str, level: int) -> None:
        """Append a heading block and record it (``level`` clamped to 1..6)."""
        title = one_line(clean(title))
        if not title or self._full:
            return
        start = self.block(title, cleaned=True)
        if start >= 0:
            self.mark_heading(start, level, title)

    def mark_heading(self, offset: int, level: int, title: str) -> None:
        """Record a heading whose title is already in the text at ``offset``."""
        if offset < self._len:
            self.headings.append(Heading(offset, min(max(level, 1), 6), one_line(title)))

    def recognized(self, page: int, languages: str, seconds: float, found_text: bool) -> None:
        """Record that page ``page`` was read by OCR in ``languages`` in ``seconds``;
        ``found_text``: its text was appended (a blank page's was not)."""
        if found_text:
            self.ocr_pages.append(page)
        self.ocr_languages = languages
        self.ocr_seconds += seconds
        self.ocr_count += 1

    def start_page(self, number: int) -> None:
        """Open page ``number``; the text appended until :meth:`end_page` is that page."""
        self.end_page()
        self._page_number = number

    def end_page(self) -> None:
        """Close the open page, if any (a page without text records no span)."""
        if self._page_number is not None and self._page_start is not None:
            self.pages.append(PageSpan(self._page_start, self._len, self._page_number))
        self._page_number = self._page_start = None

    def build(self, path: Path, kind: str) -> Document:
        """The finished :class:`Document`."""
        self.end_page()
        self.headings.sort(key=lambda h: h.offset)
        return Document(
            path=path,
            kind=kind,
            text=self.text(),
            pages=self.pages,
            headings=self.headings,
            warnings=self.warnings,
            encoding=self.encoding,
            title=self.title,
            ocr_pages=self.ocr_pages,
            ocr_languages=self.ocr_languages,
            ocr_seconds=self.ocr_seconds,
            ocr_count=self.ocr_count,
        )


FormatFn = Callable[[bytes, TextBuilder], None]
