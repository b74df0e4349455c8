"""The result list, the preview pane and the status line, on real text.

The passages are cut from a real document (the Python docs' json page) the way
the store hands them out: overlapping chunks with character spans.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPainter
from pytestqt.qtbot import QtBot

from sr3desk.gui.opener import plan_open
from sr3desk.gui.preview import HIT_ANCHOR, PreviewPane, context_html, passage_index
from sr3desk.gui.results import ResultDelegate, ResultsModel, ResultsView, format_date
from sr3desk.gui.status import describe_progress, format_eta
from sr3desk.index.types import ChunkHit, Progress
from sr3desk.search import FileResult, Passage
from sr3desk.search.snippets import make_snippet
from sr3desk.search.text import parse_query


def chunks_of(path: Path, size: int = 600, overlap: int = 80) -> list[ChunkHit]:
    """Cut ``path``'s text into overlapping spans, as the index stores them."""
    text = path.read_text(encoding="utf-8")
    out: list[ChunkHit] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        out.append(
            ChunkHit(
                chunk_id=f"c{len(out)}",
                file_id="f1",
                path=str(path),
                ext="txt",
                mtime=path.stat().st_mtime,
                size=path.stat().st_size,
                page=None,
                start=start,
                end=end,
                heading="json",
                text=text[start:end],
                ordinal=len(out),
            )
        )
        if end == len(text):
            break
        start = end - overlap
    return out


def result_for(chunks: list[ChunkHit], hit: int, query: str) -> FileResult:
    c = chunks[hit]
    snip = make_snippet(c.text, parse_query(query))
    passage = Passage(
        chunk_id=c.chunk_id,
        text=c.text,
        snippet=snip.text,
        highlights=snip.highlights,
        page=c.page,
        start=c.start,
        end=c.end,
        heading=c.heading,
        score=1.0,
    )
    return FileResult(
        path=c.path,
        file_id=c.file_id,
        ext="txt",
        folder=str(Path(c.path).parent),
        mtime=c.mtime,
        size=c.size,
        score=0.8,
        passages=[passage],
    )


@pytest.fixture(scope="module")
def json_doc(python_docs_sources: Path) -> Path:
    return python_docs_sources / "library" / "json.rst.txt"


def test_result_rows_paint_and_describe_themselves(qtbot: QtBot, json_doc: Path) -> None:
    chunks = chunks_of(json_doc)
    hit = next(i for i, c in enumerate(chunks) if "indent" in c.text)
    results = [result_for(chunks, hit, "indent pretty print")]
    model = ResultsModel()
    model.set_results(results)
    view = ResultsView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.resize(600, 400)
    view.show()
    assert model.rowCount() == 1
    spoken = model.data(model.index(0, 0), Qt.ItemDataRole.AccessibleTextRole)
    assert "json.rst.txt" in spoken and "indent" in spoken.lower()
    # Paint the row into an image: the delegate must draw without Qt complaints.
    img = QImage(600, 120, QImage.Format.Format_ARGB32)
    img.fill(0)
    painter = QPainter(img)
    view.itemDelegate().paint(painter, _option(view), model.index(0, 0))
    painter.end()
    assert isinstance(view.itemDelegate(), ResultDelegate)
    assert len({img.pixel(x, y) for x in range(0, 600, 7) for y in range(0, 120, 5)}) > 5
    view.grab()


def _option(view: ResultsView):  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QStyleOptionViewItem

    opt = QStyleOptionViewItem()
    opt.initFrom(view)
    opt.rect = view.visualRect(view.model().index(0, 0))
    opt.font = view.font()
    return opt


def test_preview_shows_the_passage_in_context(qtbot: QtBot, json_doc: Path) -> None:
    chunks = chunks_of(json_doc)
    hit = len(chunks) // 2
    query = " ".join(chunks[hit].text.split()[5:7])
    result = result_for(chunks, hit, query)
    pane = PreviewPane()
    qtbot.addWidget(pane)
    pane.resize(500, 400)
    pane.show()
    assert passage_index(chunks, result.passages[0]) == hit
    pane.show_context(result, result.passages[0], chunks, query)
    text = pane.body.toPlainText()
    # The passage is there exactly once (the overlap with its neighbours is dropped)
    # and so is the text before it.
    tail = chunks[hit].text[100:300]
    assert text.count(tail) == 1
    assert chunks[hit - 1].text[:200] in text
    html = pane.body.toHtml()
    assert HIT_ANCHOR in html
    qtbot.waitUntil(lambda: pane.body.verticalScrollBar().value() > 0, timeout=3000)
    assert pane.title.text() == "json.rst.txt"


def test_context_html_labels_pages_and_windows(qtbot: QtBot, json_doc: Path) -> None:
    chunks = chunks_of(json_doc)
    for i, c in enumerate(chunks):
        c.page = 1 + i // 3
    pane = PreviewPane()
    qtbot.addWidget(pane)
    html, first, last = context_html(chunks, 10, "json", pane.palette(), paged=True, context=2)
    assert (first, last) == (8, 12)
    assert "— page 4 —" in html and "— page 5 —" in html
    assert "8 earlier passages" in html


def test_status_lines() -> None:
    p = Progress(phase="embed", files_done=12, files_total=40, current="/x/report.pdf",
                 chunks_embedded=300, chunks_total=900, tokens_per_s=812.0, eta_s=125)  # fmt: skip
    line = describe_progress(p)
    assert "12 of 40 files" in line and "report.pdf" in line
    assert "812 tokens/s" in line and "about 2 min left" in line
    assert "paused" in describe_progress(Progress(phase="extract", paused=True)).lower()
    assert format_eta(None) == ""
    now = time.time()
    assert ":" in format_date(now, now)


def test_open_plans() -> None:
    assert plan_open("/a/b.txt", 3, "org.gnome.Evince.desktop").program is None
    assert not plan_open("/a/b.pdf", None, "org.gnome.Evince.desktop").at_page
    assert not plan_open("/a/b.pdf", 3, "unknown-viewer.desktop").at_page
