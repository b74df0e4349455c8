"""Office documents: DOCX (python-docx), PPTX (python-pptx), ODT (odfpy).

Each is a zip container and passes :func:`~sr3desk.extract.zipcheck.check_zip` first.
DOCX headings come from paragraph styles ("Title", "Heading 1".."Heading 6"); tables
become one line per row. In a PPTX each slide is a page whose title is a heading; the
speaker notes follow the slide's text. ODT headings are ``text:h`` with their outline
level.
"""

from __future__ import annotations

import io
import re
from typing import Any

from sr3desk.extract.base import TextBuilder, Unreadable, one_line
from sr3desk.extract.zipcheck import check_zip

_HEADING_STYLE = re.compile(r"heading\s*(\d)", re.IGNORECASE)


def _row_line(cells: list[str]) -> str:
    """Cells of one table row joined by " | ", merged cells (repeats) once."""
    kept: list[str] = []
    for cell in cells:
        cell = one_line(cell)
        if cell and (not kept or kept[-1] != cell):
            kept.append(cell)
    return " | ".join(kept)


def _corrupt(what: str, err: BaseException) -> Unreadable:
    text = one_line(str(err)) or type(err).__name__
    return Unreadable(f"corrupt {what}: {text[:80]}")


def extract_docx(data: bytes, out: TextBuilder) -> None:
    """A Word document: paragraphs and tables in order, headings by style."""
    check_zip(data, out.limits, "DOCX")
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as err:  # python-docx raises KeyError, lxml errors, ... on bad parts
        raise _corrupt("DOCX", err) from err
    props = document.core_properties
    if props.title:
        out.title = one_line(props.title)
    for item in document.iter_inner_content():
        if out.should_stop():
            break
        if isinstance(item, Table):
            for row in item.rows:
                out.block(_row_line([cell.text for cell in row.cells]))
            continue
        text = item.text
        style = item.style.name if item.style is not None else ""
        match = _HEADING_STYLE.match(style or "")
        if match:
            out.heading(text, int(match.group(1)))
        elif style == "Title":
            out.heading(text, 1)
        else:
            out.block(text)


def _shape_texts(shapes: Any) -> list[str]:
    """Text of a slide's shapes in order, groups and tables included."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    texts: list[str] = []
    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            texts.extend(_shape_texts(shape.shapes))
        elif getattr(shape, "has_table", False) and shape.has_table:
            for row in shape.table.rows:
                texts.append(_row_line([cell.text for cell in row.cells]))
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            texts.append(shape.text_frame.text)
    return texts


def extract_pptx(data: bytes, out: TextBuilder) -> None:
    """A PowerPoint deck: one page per slide, the slide title as heading, then notes."""
    check_zip(data, out.limits, "PPTX")
    from pptx import Presentation

    try:
        deck = Presentation(io.BytesIO(data))
    except Exception as err:  # python-pptx raises KeyError, lxml errors, ... on bad parts
        raise _corrupt("PPTX", err) from err
    if deck.core_properties.title:
        out.title = one_line(deck.core_properties.title)
    for number, slide in enumerate(deck.slides, start=1):
        if out.should_stop():
            break
        out.start_page(number)
        title_shape = slide.shapes.title
        title = one_line(title_shape.text_frame.text) if title_shape is not None else ""
        if title:
            out.heading(title, 1)
        title_id = title_shape.shape_id if title_shape is not None else None
        others = [shape for shape in slide.shapes if shape.shape_id != title_id]
        for text in _shape_texts(others):
            out.block(text)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            out.block(slide.notes_slide.notes_text_frame.text)
    out.end_page()


def extract_odt(data: bytes, out: TextBuilder) -> None:
    """An OpenDocument text: headings with their outline level, paragraphs, lists, tables."""
    check_zip(data, out.limits, "ODT")
    from odf import teletype
    from odf.namespaces import TABLENS, TEXTNS
    from odf.opendocument import load

    try:
        document = load(io.BytesIO(data))
    except Exception as err:  # odfpy raises KeyError, xml errors, ... on bad parts
        raise _corrupt("ODT", err) from err

    # Walk with an explicit stack: nested lists and sections can go deep.
    work: list[Any] = list(reversed(document.text.childNodes))
    while work:
        if out.should_stop():
            break
        node = work.pop()
        qname = getattr(node, "qname", None)
        if qname == (TEXTNS, "h"):
            level = node.attributes.get((TEXTNS, "outline-level"), "1")
            out.heading(teletype.extractText(node), int(level) if str(level).isdigit() else 1)
        elif qname == (TEXTNS, "p"):
            out.block(teletype.extractText(node))
        elif qname == (TABLENS, "table-row"):
            cells = [
                teletype.extractText(c)
                for c in node.childNodes
                if getattr(c, "qname", None) == (TABLENS, "table-cell")
            ]
            out.block(_row_line(cells))
        elif getattr(node, "childNodes", None):
            work.extend(reversed(node.childNodes))
