"""PDF through pypdf: the text layer page by page, headings from the outline.

A PDF whose pages yield no text is reported as having no text layer (a scan, most
likely: OCR is out of scope). One that needs a password is reported as encrypted; one
that only has an owner password (printing/copying restrictions) is read. A long PDF
that runs out of time keeps the pages read so far.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from sr3desk.extract.base import TextBuilder, Unreadable, one_line

log = logging.getLogger(__name__)

_MAX_OUTLINE = 5000  # outline entries turned into headings; more is a generated index


def _short(err: BaseException) -> str:
    text = one_line(str(err)) or type(err).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _outline(reader: Any) -> list[tuple[int, int, str]]:
    """(page index, level, title) of the outline entries, in order."""
    found: list[tuple[int, int, str]] = []

    def walk(items: list[Any], level: int) -> None:
        for item in items:
            if len(found) >= _MAX_OUTLINE:
                return
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            page = reader.get_destination_page_number(item)
            title = one_line(str(getattr(item, "title", "") or ""))
            if page is not None and page >= 0 and title:
                found.append((page, level, title))

    walk(reader.outline, 1)
    return found


def extract_pdf(data: bytes, out: TextBuilder) -> None:
    """A PDF's text layer, one page span per page, outline entries as headings."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    # pypdf logs every repair it makes ("EOF marker not found"); the outcome is what
    # matters and it is reported as a reason or a warning on the document.
    logging.getLogger("pypdf").setLevel(logging.ERROR)

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except Exception as err:  # pypdf raises many types on damaged files; all mean corrupt
        raise Unreadable(f"corrupt PDF: {_short(err)}") from err
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except (DependencyError, NotImplementedError, FileNotDecryptedError) as err:
            raise Unreadable("encrypted PDF") from err
        if not opened:
            raise Unreadable("encrypted PDF")
    try:
        n_pages = len(reader.pages)
    except FileNotDecryptedError as err:
        raise Unreadable("encrypted PDF") from err
    except Exception as err:
        raise Unreadable(f"corrupt PDF: {_short(err)}") from err
    if n_pages == 0:
        raise Unreadable("corrupt PDF: no pages")

    starts: dict[int, int] = {}  # page index -> offset of its text
    blank = failed = done = 0
    first_error: BaseException | None = None
    for index in range(n_pages):
        if out.should_stop():
            out.warn(f"read {done} of {n_pages} pages")
            break
        try:
            text = reader.pages[index].extract_text()
        except Exception as err:  # one bad page must not lose the others
            failed += 1
            first_error = first_error or err
            continue
        finally:
            done += 1
        out.start_page(index + 1)
        start = out.block(text)
        if start < 0:
            blank += 1
        else:
            starts[index] = start
    out.end_page()
    if not starts:
        if out.timed_out:
            raise Unreadable(f"timed out after {out.limits.max_seconds:.0f} s")
        if failed and first_error is not None:
            raise Unreadable(f"corrupt PDF: {_short(first_error)}")
        raise Unreadable("no text layer (scanned?)")
    if failed:
        out.warn(f"{failed} of {n_pages} pages unreadable")
    if blank:
        out.warn(f"{blank} of {n_pages} pages without text")
    _add_outline(reader, out, starts)


def _add_outline(reader: Any, out: TextBuilder, starts: dict[int, int]) -> None:
    """Outline entries as headings: at their title on the target page, else its start."""
    try:
        entries = _outline(reader)
    except Exception as err:  # a broken outline costs the headings, not the text
        out.warn(f"outline unreadable: {_short(err)}")
        return
    pages = {p.number - 1: p for p in out.pages}
    text = out.text()
    for index, level, title in entries:
        span = pages.get(index)
        if span is None or index not in starts:
            continue
        found = text.find(title, span.start, span.end)
        out.mark_heading(found if found >= 0 else span.start, level, title)
