"""The preview pane: the selected passage in the context of its file.

The file's text comes from the index (``Store.file_chunks``), not from reading
the file again, so the preview shows exactly what was searched. Chunks overlap
by a few tokens; the overlap is dropped using their character spans. Only a
window of chunks around the passage is rendered, which keeps a 300-page PDF as
quick to show as a note.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from sr3desk.gui import theme
from sr3desk.gui.results import format_date, home_relative
from sr3desk.search.text import match_spans, parse_query

if TYPE_CHECKING:
    from sr3desk.index.types import ChunkHit, OcrNote
    from sr3desk.search import FileResult, Passage

CONTEXT_CHUNKS = 6  # chunks shown before and after the passage
HIT_ANCHOR = "sr3-hit"


def _marked(text: str, stems: frozenset[str], back: str, fore: str) -> str:
    """Escape ``text`` for HTML with the words matching ``stems`` marked."""
    out: list[str] = []
    pos = 0
    for s, e in match_spans(text, stems):
        out.append(html.escape(text[pos:s]))
        out.append(
            f'<span style="background-color:{back}; color:{fore}; font-weight:600">'
            f"{html.escape(text[s:e])}</span>"
        )
        pos = e
    out.append(html.escape(text[pos:]))
    return "".join(out)


def passage_index(chunks: Sequence[ChunkHit], passage: Passage) -> int:
    """Return the index of ``passage`` among ``chunks`` (by id, else by span); 0 if absent."""
    for i, c in enumerate(chunks):
        if c.chunk_id == passage.chunk_id:
            return i
    for i, c in enumerate(chunks):
        if c.start <= passage.start < c.end:
            return i
    return 0


def context_html(
    chunks: Sequence[ChunkHit],
    hit: int,
    query: str,
    palette: QPalette,
    paged: bool,
    context: int = CONTEXT_CHUNKS,
    ocr: OcrNote | None = None,
) -> tuple[str, int, int]:
    """Render the chunks around ``chunks[hit]`` as HTML; returns (html, first, last) shown.

    The hit chunk is tinted and carries the anchor :data:`HIT_ANCHOR`; the
    query's words are marked; a page label precedes each new page of a PDF,
    saying "OCR" for a page whose text ``ocr`` says was recognised.
    """
    first = max(0, hit - context)
    last = min(len(chunks) - 1, hit + context)
    stems = parse_query(query).stems
    back, fore = theme.highlight_colors(palette)
    tint = theme.passage_background(palette).name()
    dim = palette.color(QPalette.ColorRole.PlaceholderText).name()
    # One pre-wrapped block with inline spans: a chunk boundary inside a line
    # must not become a line break.
    parts: list[str] = []
    if first > 0:
        parts.append(f'<span style="color:{dim}">… {first} earlier passages</span>\n\n')
    prev_end = -1
    prev_page: int | None = None
    for i in range(first, last + 1):
        c = chunks[i]
        text = c.text
        # Drop the overlap with the previous chunk when the text is an exact span.
        if prev_end > c.start and len(text) == c.end - c.start:
            text = text[prev_end - c.start :]
        elif prev_end >= 0 and c.start > prev_end:
            text = "\n" + text  # a gap in the spans (e.g. a page break)
        prev_end = max(prev_end, c.end)
        if paged and c.page is not None and c.page != prev_page:
            sep = "" if i == first else "\n"
            how = " · OCR" if ocr is not None and ocr.covers(c.page) else ""
            parts.append(f'{sep}<span style="color:{dim}">— page {c.page}{how} —</span>\n')
            prev_page = c.page
        body = _marked(text, stems, back.name(), fore.name())
        if i == hit:
            parts.append(
                f'<a name="{HIT_ANCHOR}"></a><span style="background-color:{tint}">{body}</span>'
            )
        else:
            parts.append(body)
    if last < len(chunks) - 1:
        parts.append(
            f'\n\n<span style="color:{dim}">… {len(chunks) - 1 - last} later passages</span>'
        )
    parts = ['<div style="white-space:pre-wrap">', *parts, "</div>"]
    return "".join(parts), first, last


class PreviewPane(QWidget):
    """Header (name, folder, page, actions) above the passage in context."""

    open_clicked = Signal()
    show_folder_clicked = Signal()
    copy_path_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Preview")
        self.result: FileResult | None = None
        self.passage: Passage | None = None
        self.hit_text = ""
        self._shown: tuple[FileResult, Passage, Sequence[ChunkHit], str] | None = None

        self.title = QLabel()
        self.title.setAccessibleName("Previewed file")
        font = self.title.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.title.setFont(font)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.where = QLabel()
        self.where.setAccessibleName("Folder and page")
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.where.setWordWrap(True)
        self.where.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.open_button = QPushButton("Open")
        self.open_button.setAccessibleName("Open in default application")
        self.open_button.setToolTip("Open in the default application (Enter)")
        self.folder_button = QPushButton("Show in folder")
        self.folder_button.setAccessibleName("Show in folder")
        self.folder_button.setToolTip("Show in the file manager (Ctrl+Shift+R)")
        self.copy_button = QPushButton("Copy path")
        self.copy_button.setAccessibleName("Copy path")
        self.copy_button.setToolTip("Copy the file's path (Ctrl+Shift+C)")
        self.open_button.clicked.connect(self.open_clicked)
        self.folder_button.clicked.connect(self.show_folder_clicked)
        self.copy_button.clicked.connect(self.copy_path_clicked)

        self.body = QTextBrowser()
        self.body.setAccessibleName("Passage in context")
        self.body.setOpenLinks(False)
        self.body.setPlaceholderText("Select a result to see its passage in context.")

        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        for b in (self.open_button, self.folder_button, self.copy_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addWidget(self.where)
        layout.addLayout(buttons)
        layout.addWidget(self.body, 1)
        self.clear()

    def clear(self) -> None:
        """Show nothing (no result selected)."""
        self.result = None
        self.passage = None
        self.hit_text = ""
        self._shown = None
        self.title.setText("")
        self.where.setText("")
        self.body.clear()
        for w in (self.title, self.where, self.open_button, self.folder_button, self.copy_button):
            w.hide()

    def show_header(self, result: FileResult, passage: Passage | None) -> None:
        """Show the file's name, folder, date and page while its text loads."""
        self.result = result
        self.passage = passage
        self.title.setText(os.path.basename(result.path))
        bits = [home_relative(result.folder), f"modified {format_date(result.mtime)}"]
        if passage is not None and passage.page is not None:
            bits.append(f"page {passage.page}")
        if passage is not None and result.from_ocr(passage):
            bits.append("text recognised by OCR: may hold misread words")
        self.where.setText("  ·  ".join(bits))
        self.where.setToolTip(result.path)
        for w in (self.title, self.where, self.open_button, self.folder_button, self.copy_button):
            w.show()

    def show_context(
        self, result: FileResult, passage: Passage, chunks: Sequence[ChunkHit], query: str
    ) -> None:
        """Render ``passage`` within ``chunks`` (the file's, in order), scrolled to it."""
        self.show_header(result, passage)
        self._shown = (result, passage, chunks, query)
        if not chunks:
            # The file changed since the search ran: show what the result carried.
            back, fore = theme.highlight_colors(self.palette())
            stems = parse_query(query).stems
            self.body.setHtml(
                '<div style="white-space:pre-wrap">'
                + _marked(passage.text, stems, back.name(), fore.name())
                + "</div>"
            )
            self.hit_text = passage.text
            return
        hit = passage_index(chunks, passage)
        self.hit_text = chunks[hit].text
        paged = result.ext.lower() == "pdf"
        doc_html, _first, _last = context_html(
            chunks, hit, query, self.palette(), paged, ocr=result.ocr
        )
        self.body.setHtml(doc_html)
        # Layout is lazy: scroll once the document has been laid out.
        QTimer.singleShot(0, self._scroll_to_hit)

    def changeEvent(self, event: QEvent) -> None:
        """Re-render with the new colours when the system switches light/dark."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self._shown is not None:
            bar = self.body.verticalScrollBar().value()
            self.show_context(*self._shown)
            QTimer.singleShot(0, lambda: self.body.verticalScrollBar().setValue(bar))

    def _scroll_to_hit(self) -> None:
        self.body.scrollToAnchor(HIT_ANCHOR)
        bar = self.body.verticalScrollBar()
        # Leave a little of the preceding text visible above the passage.
        bar.setValue(max(0, bar.value() - self.body.fontMetrics().height() * 2))
