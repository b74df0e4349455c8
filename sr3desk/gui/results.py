"""The result list: one row per file, painted by :class:`ResultDelegate`.

A row shows a type badge, the file name, its folder, the modified date, a score
bar (relative to the best result of the list) and the best passage's snippet
with the query's terms highlighted and its page. The model holds the
``FileResult`` objects of a ``SearchResponse`` as they are.
"""

from __future__ import annotations

import html
import os
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QRectF,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QColor,
    QFont,
    QFontMetrics,
    QKeyEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from sr3desk.gui import theme

if TYPE_CHECKING:
    from sr3desk.search import FileResult, Passage

ResultRole = Qt.ItemDataRole.UserRole + 1
_AnyIndex = QModelIndex | QPersistentModelIndex


def format_date(mtime: float, now: float | None = None) -> str:
    """Return a short modified date: "14:05" today, "Mar 3" this year, else "2021-03-03"."""
    now = time.time() if now is None else now
    t, n = time.localtime(mtime), time.localtime(now)
    if t.tm_year == n.tm_year and t.tm_yday == n.tm_yday:
        return time.strftime("%H:%M", t)
    if t.tm_year == n.tm_year:
        return time.strftime("%b %d", t).replace(" 0", " ")
    return time.strftime("%Y-%m-%d", t)


def highlighted_html(text: str, spans: list[tuple[int, int]], back: QColor, fore: QColor) -> str:
    """Return ``text`` as HTML with ``spans`` (sorted, non-overlapping) marked."""
    out: list[str] = []
    pos = 0
    style = f"background-color:{back.name()}; color:{fore.name()}; font-weight:600;"
    for start, end in sorted(spans):
        if start < pos or end <= start:
            continue
        out.append(html.escape(text[pos:start]))
        out.append(f'<span style="{style}">{html.escape(text[start:end])}</span>')
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out).replace("\n", " ")


class ResultsModel(QAbstractListModel):
    """The rows of one search response (a list of ``FileResult``)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[FileResult] = []
        self.top_score = 0.0
        self.mode = "keyword"

    def set_results(self, results: list[FileResult], mode: str = "keyword") -> None:
        """Replace the rows; ``mode`` says how to read their scores."""
        self.beginResetModel()
        self._rows = list(results)
        self.mode = mode
        self.top_score = max((r.score for r in self._rows), default=0.0)
        self.endResetModel()

    def score_fraction(self, r: FileResult) -> float:
        """How full the score bar is: hybrid and vector scores are already in [0, 1];
        BM25 has no scale, so keyword scores are shown relative to the best."""
        if self.mode in ("hybrid", "vector"):
            return max(0.0, min(1.0, r.score))
        top = self.top_score
        return max(0.0, min(1.0, r.score / top)) if top > 0 else 0.0

    def result(self, row: int) -> FileResult | None:
        """Return the result at ``row`` or None."""
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def results(self) -> list[FileResult]:
        """Return all rows, best first."""
        return list(self._rows)

    def row_of(self, path: str) -> int:
        """Return the row of the file at ``path``, or -1."""
        for i, r in enumerate(self._rows):
            if r.path == path:
                return i
        return -1

    def rowCount(self, parent: _AnyIndex = QModelIndex()) -> int:  # noqa: B008 - Qt API
        """Number of files (no children: a flat list)."""
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: _AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Qt data roles: display (name), tooltip (path), accessible text, the result."""
        r = self.result(index.row()) if index.isValid() else None
        if r is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return os.path.basename(r.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            return r.path
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return accessible_text(r)
        if role == ResultRole:
            return r
        return None


def accessible_text(r: FileResult) -> str:
    """What a screen reader says for a row: name, folder, date, page and passage."""
    parts = [os.path.basename(r.path), f"in {r.folder}", f"modified {format_date(r.mtime)}"]
    if r.passages:
        p = r.passages[0]
        if p.page is not None:
            parts.append(f"page {p.page}")
        if r.from_ocr(p):
            parts.append("text by OCR")
        parts.append(p.snippet)
    return ", ".join(parts)


class ResultDelegate(QStyledItemDelegate):
    """Paints a result row; all sizes are logical pixels, so HiDPI scales them."""

    PAD = 10
    BADGE = 36
    BAR_W = 56

    def sizeHint(self, option: QStyleOptionViewItem, index: _AnyIndex) -> QSize:
        """Rows are the same height: title, folder, two lines of passage."""
        fm = QFontMetrics(option.font)
        line = fm.height()
        return QSize(200, self.PAD * 2 + line + 2 + line + 6 + fm.lineSpacing() * 2 + 4)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _AnyIndex) -> None:
        """Draw the row (badge, name, date, score bar, folder, snippet)."""
        r: FileResult | None = index.data(ResultRole)
        if r is None:
            return
        painter.save()
        pal: QPalette = option.palette
        dark = theme.is_dark(pal)
        rect: QRect = option.rect
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        self._paint_frame(painter, option, dark)
        x0 = rect.left() + self.PAD
        y = rect.top() + self.PAD
        theme.badge_icon(r.ext, dark, self.BADGE).paint(
            painter, QRect(x0, y, self.BADGE, self.BADGE)
        )
        # The text column, right of the badge.
        column = _Column(
            x0 + self.BADGE + self.PAD, rect.right() - self.PAD, QFont(option.font), pal
        )
        model = index.model()
        frac = model.score_fraction(r) if isinstance(model, ResultsModel) else 0.0
        y = self._paint_title(painter, column, r, frac, y)
        y = self._paint_location(painter, column, r, y)
        if r.passages:
            _paint_snippet(painter, column, r.passages[0], y)
        painter.restore()

    def _paint_frame(self, painter: QPainter, option: QStyleOptionViewItem, dark: bool) -> None:
        """The selection's background and focus edge, and the hairline below the row."""
        pal: QPalette = option.palette
        rect: QRect = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        focused = bool(option.state & QStyle.StateFlag.State_HasFocus)
        # Background: a soft tint for the selection so highlights stay readable.
        if selected:
            sel = QColor(pal.color(QPalette.ColorRole.Highlight))
            sel.setAlpha(70 if dark else 45)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(sel)
            painter.drawRoundedRect(QRectF(rect).adjusted(3, 2, -3, -2), 6, 6)
            if focused:
                edge = QColor(pal.color(QPalette.ColorRole.Highlight))
                painter.setPen(edge)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(QRectF(rect).adjusted(3.5, 2.5, -3.5, -2.5), 6, 6)
        # Hairline between rows.
        line_color = QColor(pal.color(QPalette.ColorRole.Mid))
        line_color.setAlpha(60)
        painter.setPen(line_color)
        painter.drawLine(
            rect.left() + self.PAD, rect.bottom(), rect.right() - self.PAD, rect.bottom()
        )

    def _paint_title(
        self, painter: QPainter, column: _Column, r: FileResult, frac: float, y: int
    ) -> int:
        """Line 1: the name (bold) ... the date, the score bar (``frac`` full); returns
        the top of the next line."""
        pal, x, right = column.palette, column.left, column.right
        fm = QFontMetrics(column.font)
        line = fm.height()
        bar = QRectF(right - self.BAR_W, y + line / 2 - 3, self.BAR_W, 6)
        painter.setPen(Qt.PenStyle.NoPen)
        track = QColor(pal.color(QPalette.ColorRole.Mid))
        track.setAlpha(70)
        painter.setBrush(track)
        painter.drawRoundedRect(bar, 3, 3)
        fill = QColor(pal.color(QPalette.ColorRole.Highlight))
        painter.setBrush(fill)
        painter.drawRoundedRect(QRectF(bar.x(), bar.y(), max(6.0, bar.width() * frac), 6), 3, 3)

        date = format_date(r.mtime)
        date_w = fm.horizontalAdvance(date)
        date_x = int(bar.left()) - 10 - date_w
        painter.setFont(column.font)
        painter.setPen(column.dim)
        painter.drawText(QRect(date_x, y, date_w, line), Qt.AlignmentFlag.AlignVCenter, date)

        bold = QFont(column.font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(column.text_color)
        name = QFontMetrics(bold).elidedText(
            os.path.basename(r.path), Qt.TextElideMode.ElideMiddle, date_x - 10 - x
        )
        painter.drawText(QRect(x, y, date_x - 10 - x, line), Qt.AlignmentFlag.AlignVCenter, name)
        return y + line + 2

    def _paint_location(self, painter: QPainter, column: _Column, r: FileResult, y: int) -> int:
        """Line 2 (dim, small): folder and heading ... page, OCR, extra passages; returns
        the top of the next line."""
        x, right = column.left, column.right
        small = QFont(column.font)
        small.setPointSizeF(max(7.0, column.font.pointSizeF() * 0.9))
        sfm = QFontMetrics(small)
        painter.setFont(small)
        painter.setPen(column.dim)
        best: Passage | None = r.passages[0] if r.passages else None
        tail: list[str] = []
        if best is not None and best.page is not None:
            tail.append(f"page {best.page}")
        if best is not None and r.from_ocr(best):
            tail.append("text by OCR")
        if len(r.passages) > 1:
            tail.append(f"+{len(r.passages) - 1} more")
        tail_text = "  ·  ".join(tail)
        tail_w = sfm.horizontalAdvance(tail_text)
        folder = home_relative(r.folder)
        if best is not None and best.heading:
            folder = f"{folder}  ›  {best.heading}"
        avail = right - x - (tail_w + 12 if tail_text else 0)
        painter.drawText(
            QRect(x, y, avail, sfm.height()),
            Qt.AlignmentFlag.AlignVCenter,
            sfm.elidedText(folder, Qt.TextElideMode.ElideMiddle, avail),
        )
        if tail_text:
            painter.drawText(
                QRect(right - tail_w, y, tail_w, sfm.height()),
                Qt.AlignmentFlag.AlignVCenter,
                tail_text,
            )
        return y + sfm.height() + 6


class _Column(NamedTuple):
    """The text column of a row: its left and right edges, base font and palette."""

    left: int
    right: int
    font: QFont
    palette: QPalette

    @property
    def text_color(self) -> QColor:
        """The colour of names and snippets."""
        return self.palette.color(QPalette.ColorRole.Text)

    @property
    def dim(self) -> QColor:
        """The colour of dates, folders and other secondary text."""
        return QColor(self.palette.color(QPalette.ColorRole.PlaceholderText))


def _paint_snippet(painter: QPainter, column: _Column, best: Passage, y: int) -> None:
    """Lines 3-4: the snippet with the query's terms highlighted, clipped to two lines.

    Leaves the painter translated to the snippet and clipped: the caller restores it.
    """
    x, right, text_color = column.left, column.right, column.text_color
    back, fore = theme.highlight_colors(column.palette)
    doc = QTextDocument()
    doc.setDocumentMargin(0)
    doc.setDefaultFont(column.font)
    doc.setHtml(
        f'<div style="color:{text_color.name()}">'
        + highlighted_html(best.snippet, list(best.highlights), back, fore)
        + "</div>"
    )
    doc.setTextWidth(right - x)
    # Clip at the bottom of the second line as laid out (not a guessed height).
    clip_h = float(QFontMetrics(column.font).lineSpacing() * 2)
    doc.size()  # lays the text out: the block's lines exist only after this
    block_layout = doc.firstBlock().layout()
    if block_layout is not None and block_layout.lineCount() >= 2:
        second = block_layout.lineAt(1)
        clip_h = block_layout.position().y() + second.y() + second.height()
    clip = QRectF(0, 0, right - x, clip_h)
    painter.translate(x, y)
    painter.setClipRect(clip)
    ctx = QAbstractTextDocumentLayout.PaintContext()
    ctx.clip = clip
    ctx.palette.setColor(QPalette.ColorRole.Text, text_color)
    doc.documentLayout().draw(painter, ctx)


def home_relative(folder: str) -> str:
    """Return ``folder`` with the user's home directory shown as ``~``."""
    home = os.path.expanduser("~")
    if folder == home:
        return "~"
    if folder.startswith(home + os.sep):
        return "~" + folder[len(home) :]
    return folder


class ResultsView(QListView):
    """The list of results; Enter opens, Up on the first row returns to the search field.

    Draws ``placeholder`` centred when there are no rows.
    """

    open_requested = Signal(int)
    leave_top = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.placeholder = ""
        self.setItemDelegate(ResultDelegate(self))
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setMouseTracking(True)
        self.setAccessibleName("Results")
        self.setAccessibleDescription("Files that match the search, best first")
        self.doubleClicked.connect(lambda idx: self.open_requested.emit(idx.row()))

    def set_placeholder(self, text: str) -> None:
        """Set the text shown when the list is empty."""
        self.placeholder = text
        self.viewport().update()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Enter/Return opens the current result; Up at the top leaves the list."""
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self.open_requested.emit(self.currentIndex().row())
            return
        if key == Qt.Key.Key_Up and self.currentIndex().row() <= 0:
            self.leave_top.emit()
            return
        super().keyPressEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        """Paint the rows, or the placeholder when there are none."""
        super().paintEvent(event)
        model = self.model()
        if self.placeholder and (model is None or model.rowCount() == 0):
            p = QPainter(self.viewport())
            p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            r = self.viewport().rect().adjusted(24, 24, -24, -24)
            p.drawText(
                r,
                Qt.AlignmentFlag.AlignHCenter
                | Qt.AlignmentFlag.AlignTop
                | Qt.TextFlag.TextWordWrap,
                self.placeholder,
            )
            p.end()
