"""PDF through pypdf: the text layer page by page, headings from the outline.

A page with no text layer, or almost none (under :data:`MIN_TEXT_CHARS` characters),
that shows an image is a scan: it is rendered by PDFium and read by OCR
(:mod:`~sr3desk.extract.ocr`), a page at a time, so that a PDF of scanned and real
pages keeps the real pages' own text. With OCR off, or when OCR finds nothing, a PDF
whose pages yield no text is reported as having no text layer. One that needs a
password is reported as encrypted; one that only has an owner password
(printing/copying restrictions) is read. A long PDF that runs out of time keeps the
pages read so far.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

from sr3desk.extract.base import TextBuilder, Unreadable, one_line

log = logging.getLogger(__name__)

_MAX_OUTLINE = 5000  # outline entries turned into headings; more is a generated index
MIN_TEXT_CHARS = 32  # a page with fewer non-blank characters of text layer may be a scan
NO_TEXT = "no text layer (scanned?)"


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
    scans = _Scans(data, out)
    for index in range(n_pages):
        if out.should_stop():
            out.warn(f"read {done} of {n_pages} pages")
            break
        try:
            page = reader.pages[index]
            text = page.extract_text()
        except Exception as err:  # one bad page must not lose the others
            failed += 1
            first_error = first_error or err
            continue
        finally:
            done += 1
        if out.ocr.enabled and _few_chars(text) and _shows_image(page):
            text = scans.read(index, text)
        out.start_page(index + 1)
        start = out.block(text)
        if start < 0:
            blank += 1
        else:
            starts[index] = start
            if scans.last_ocr == index:
                out.recognized(index + 1, scans.languages, scans.last_seconds, True)
    out.end_page()
    scans.close()
    if not starts:
        if out.timed_out:
            raise Unreadable(f"timed out after {out.limits.max_seconds:.0f} s")
        if failed and first_error is not None:
            raise Unreadable(f"corrupt PDF: {_short(first_error)}")
        if scans.unavailable:
            raise Unreadable(f"{NO_TEXT}; {scans.unavailable}")
        if out.ocr_count:
            raise Unreadable("no text layer, and OCR found no text")
        raise Unreadable(NO_TEXT)
    if scans.unavailable:
        out.warn(scans.unavailable)
    if failed:
        out.warn(f"{failed} of {n_pages} pages unreadable")
    if blank:
        out.warn(f"{blank} of {n_pages} pages without text")
    _add_outline(reader, out, starts)


def _few_chars(text: str) -> bool:
    return len("".join(text.split())) < MIN_TEXT_CHARS


def _shows_image(page: Any) -> bool:
    """True when the page draws an image (directly or in a form XObject), or when
    its resources cannot be read (then the page is rendered to find out)."""
    try:
        return _has_image(page.get("/Resources"), depth=0)
    except Exception:  # a damaged resource dictionary: let the renderer decide
        return True


def _has_image(resources: Any, depth: int) -> bool:
    if resources is None or depth > 3:
        return False
    resources = resources.get_object()
    xobjects = resources.get("/XObject")
    if xobjects is None:
        return False
    for ref in xobjects.get_object().values():
        obj = ref.get_object()
        subtype = obj.get("/Subtype")
        if subtype == "/Image":
            return True
        if subtype == "/Form" and _has_image(obj.get("/Resources"), depth + 1):
            return True
    return False


class _Scans:
    """Renders pages without text by PDFium and reads them by OCR; the PDF is
    opened by PDFium on the first such page only."""

    def __init__(self, data: bytes, out: TextBuilder) -> None:
        self.data = data
        self.out = out
        self.languages = out.ocr.languages
        self.unavailable = ""  # why OCR could not run, once it failed to start
        self.last_ocr = -1  # index of the last page whose text came from OCR
        self.last_seconds = 0.0
        self._doc: Any = None

    def read(self, index: int, text: str) -> str:
        """The text of page ``index``: by OCR when that finds more than the text
        layer's ``text``, else ``text``."""
        from sr3desk.extract import ocr

        if self.unavailable:
            return text
        started = time.monotonic()
        try:
            eng = ocr.engine(self.out.ocr.languages)
            image = self._render(index)
            found = eng.recognize(image).text
        except ocr.OcrUnavailable as err:
            self.unavailable = f"OCR unavailable: {err}"
            log.warning("%s", self.unavailable)
            return text
        except Unreadable as err:
            self.out.warn(f"page {index + 1} not read by OCR: {err}")
            return text
        seconds = time.monotonic() - started
        self.languages = eng.languages
        if len("".join(found.split())) > 2 * len("".join(text.split())):
            self.last_ocr, self.last_seconds = index, seconds
            return found
        self.out.recognized(index + 1, eng.languages, seconds, False)
        return text

    def _render(self, index: int) -> Any:
        import pypdfium2 as pdfium

        try:
            if self._doc is None:
                self._doc = pdfium.PdfDocument(self.data)
            page = self._doc[index]
            width, height = page.get_size()  # points
            scale = ocr_scale(width, height, self.out.limits.max_image_pixels)
            bitmap = page.render(scale=scale, grayscale=True, may_draw_forms=False)
            return bitmap.to_pil()
        except pdfium.PdfiumError as err:
            raise Unreadable(f"cannot render: {_short(err)}") from err

    def close(self) -> None:
        if self._doc is not None:
            self._doc.close()
            self._doc = None


def ocr_scale(width_pt: float, height_pt: float, max_pixels: int) -> float:
    """Rendering scale (pixels per point) for OCR: 300 dpi, lowered so that the page
    stays within ``max_pixels``."""
    from sr3desk.extract.ocr import OCR_DPI

    scale = OCR_DPI / 72
    area = max(width_pt * height_pt, 1.0)
    if area * scale * scale > max_pixels:
        scale = (max_pixels / area) ** 0.5
    return scale


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
