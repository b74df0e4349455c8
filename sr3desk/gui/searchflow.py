"""Search as you type, and deep search: which request runs when, and what is shown.

Each keystroke starts a new *generation*; after a short pause its keyword search
runs (no model needed, answers at once) and, with a model, its hybrid search
(which waits for the query's embedding). A response is shown only if it belongs
to the current generation and is not an earlier *stage* than what is shown:
keyword < hybrid < reasoned < deep.

Enter (and the Deep search button) runs the instant searches, then re-ranks
their best files with the cross-encoder (:mod:`sr3desk.search.deep`) in the
engine's deep lane; the list updates in place when that finishes, and typing
meanwhile cancels it. The model reasons about the query first only where its
figures say its reasoning helps (:mod:`sr3desk.search.reasoning`); Think forces
reasoning and is enabled only for such a model.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton

from sr3desk.gui import message
from sr3desk.gui.engine import Engine
from sr3desk.gui.filters import FilterBar
from sr3desk.gui.preview import PreviewPane
from sr3desk.gui.results import ResultsModel, ResultsView
from sr3desk.gui.status import format_count
from sr3desk.gui.widgets import ReasoningPanel, SearchField
from sr3desk.gui.workers import Debouncer
from sr3desk.search import SearchRequest, SearchResponse
from sr3desk.search.rerank import Cancelled

DEBOUNCE_MS = 150  # typing pause before a search starts
RESULTS_K = 30
STAGE_KEYWORD, STAGE_HYBRID, STAGE_REASONED, STAGE_DEEP = 1, 2, 3, 4
MODE_LABELS = {"keyword": "keyword", "hybrid": "keyword + meaning", "vector": "meaning"}


class SearchFlow(QObject):
    """Runs the searches of the search field and shows their responses."""

    results_shown = Signal(int)  # stage of the response now shown
    deep_search_done = Signal()

    def __init__(
        self,
        engine: Engine,
        search: SearchField,
        deep_button: QPushButton,
        think_button: QPushButton,
        filters: FilterBar,
        model: ResultsModel,
        results: ResultsView,
        preview: PreviewPane,
        summary: QLabel,
        reasoning: ReasoningPanel,
    ) -> None:
        super().__init__(search)
        self.engine = engine
        self.search = search
        self.deep_button = deep_button
        self.think_button = think_button
        self.filters = filters
        self.model = model
        self.results = results
        self.preview = preview
        self.summary = summary
        self.reasoning = reasoning
        self.gen = 0
        self.stage = 0
        self.query = ""
        self.last_response: SearchResponse | None = None
        self._cancel: threading.Event | None = None  # set while a re-ranking runs
        self._said_no_deep = False
        self.debounce = Debouncer(DEBOUNCE_MS, self.run_search, self)
        search.textChanged.connect(self.text_changed)
        search.think.connect(self.deep_search)
        deep_button.clicked.connect(self.deep_search)
        think_button.clicked.connect(self.think)
        filters.changed.connect(self.filters_changed)

    def refresh(self) -> None:
        """Run the current query again (more is indexed, or the model is ready)."""
        # A deep or reasoned list stays: the user asked for it, and it took seconds.
        if self.query and self.stage < STAGE_REASONED and not self.reranking:
            self.stage = min(self.stage, STAGE_KEYWORD)
            self.run_search()

    def text_changed(self, text: str) -> None:
        """The field changed: start over (after the debounce delay)."""
        self.gen += 1
        self.stage = 0
        self.query = text.strip()
        self.cancel_rerank()
        # The reasoning shown belongs to the previous query.
        self.reasoning.stop()
        self.deep_button.setEnabled(True)
        if not self.query:
            self.debounce.cancel()
            self.clear()
            return
        self.debounce.trigger()

    @property
    def reranking(self) -> bool:
        """True while the cross-encoder re-ranks the list shown."""
        return self._cancel is not None

    def cancel_rerank(self) -> None:
        """Stop the running re-ranking, if any (its result would be for an old query)."""
        if self._cancel is not None:
            self._cancel.set()
            self._cancel = None

    def filters_changed(self) -> None:
        """A filter changed: search again at once."""
        if self.query:
            self.cancel_rerank()
            self.gen += 1
            self.stage = 0
            self.run_search()

    def run_search(self) -> None:
        """Search for the field's text: keywords at once, then the hybrid search."""
        query = self.query
        if not query:
            return
        gen = self.gen
        filters = self.filters.filters()
        self.engine.search(
            SearchRequest(query, mode="keyword", k=RESULTS_K, filters=filters),
            lambda resp: self._show(gen, STAGE_KEYWORD, resp),
            lambda exc: self._search_failed(gen, exc),
        )
        if self.engine.settings.model_path and self.engine.model_loaded:
            # Reasoning while typing, where asked for, only for a model it helps.
            reason = self.engine.settings.reason_default and self.engine.reasoning().helps
            if reason:
                self.reasoning.show_thinking(query)
            self.engine.search(
                SearchRequest(query, mode="hybrid", k=RESULTS_K, filters=filters, reason=reason),
                lambda resp: self._show(gen, STAGE_REASONED if reason else STAGE_HYBRID, resp),
                lambda exc: self._search_failed(gen, exc),
            )

    def deep_search(self) -> None:
        """Enter / Deep search: the instant results, then re-ranked by the cross-encoder;
        the model reasons first only where its reasoning is measured to help."""
        self._deep(reason=self.engine.model_loaded and self.engine.reasoning().helps)

    def think(self) -> None:
        """Think: a deep search in which the model reasons first (a model it helps)."""
        verdict = self.engine.reasoning()
        if not (self.engine.model_loaded and verdict.helps):
            why = verdict.describe() if self.engine.model_loaded else "no model is loaded"
            message.info(f"Think is off: {why}; running a deep search without it")
        self._deep(reason=self.engine.model_loaded and verdict.helps)

    def _deep(self, reason: bool) -> None:
        self.debounce.cancel()
        query = self.search.text().strip()
        if not query:
            self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
            return
        self.cancel_rerank()
        self.gen += 1
        self.stage = 0
        self.query = query
        gen = self.gen
        filters = self.filters.filters()
        why_not = self.engine.deep_unavailable()
        if why_not is not None and not self._said_no_deep:
            self._said_no_deep = True
            message.info(f"Enter shows the instant results: {why_not}")
        with_model = bool(self.engine.settings.model_path and self.engine.model_loaded)
        if self.engine.settings.model_path and not self.engine.model_loaded:
            message.info("The model is still loading; deep search uses keyword results meanwhile")
        if reason:
            self.reasoning.show_thinking(query)
        self.deep_button.setEnabled(False)

        def first_done(stage: int, resp: SearchResponse | None) -> None:
            if gen != self.gen:
                return
            self._show(gen, stage, resp)
            if resp is None or why_not is not None or not resp.results:
                self._deep_finished(gen)
                return
            self._rerank(gen, resp)

        def failed(exc: BaseException) -> None:
            self.reasoning.stop()
            self._search_failed(gen, exc)
            if gen == self.gen:
                self._deep_finished(gen)

        # Keyword results right away, so the list is never empty while the model works.
        self.engine.search(
            SearchRequest(query, mode="keyword", k=RESULTS_K, filters=filters),
            (lambda resp: self._show(gen, STAGE_KEYWORD, resp))
            if with_model
            else (lambda resp: first_done(STAGE_KEYWORD, resp)),
            failed,
        )
        if with_model:
            stage = STAGE_REASONED if reason else STAGE_HYBRID
            self.engine.search(
                SearchRequest(query, mode="hybrid", k=RESULTS_K, filters=filters, reason=reason),
                lambda resp: first_done(stage, resp),
                failed,
            )

    def _rerank(self, gen: int, first: SearchResponse) -> None:
        cancel = threading.Event()
        self._cancel = cancel
        self.summary.setText(self.summary.text() + " · re-ranking…")

        def done(resp: SearchResponse) -> None:
            if gen != self.gen or cancel.is_set():
                return
            self._show(gen, STAGE_DEEP, resp)
            self._deep_finished(gen)

        def failed(exc: BaseException) -> None:
            if isinstance(exc, Cancelled) or gen != self.gen:
                return
            self._search_failed(gen, exc)
            self._show(gen, STAGE_DEEP, first)  # the instant results stand
            self._deep_finished(gen)

        self.engine.rerank(first, cancel, done, failed)

    def _deep_finished(self, gen: int) -> None:
        if gen != self.gen:
            return
        self._cancel = None
        self.deep_button.setEnabled(True)
        self.deep_search_done.emit()

    def _show(self, gen: int, stage: int, resp: SearchResponse | None) -> None:
        if resp is None or gen != self.gen or stage < self.stage:
            return
        self.stage = stage
        self.last_response = resp
        # The row the user moved to stays selected; the first one follows the new list.
        row = self.results.currentIndex().row()
        current = self.model.result(row) if row > 0 else None
        keep = current.path if current is not None else None
        self.model.set_results(resp.results, resp.mode)
        row = self.model.row_of(keep) if keep else -1
        if self.model.rowCount():
            self.results.setCurrentIndex(self.model.index(max(row, 0), 0))
        else:
            self.preview.clear()
        n = len(resp.results)
        label = MODE_LABELS.get(resp.mode, resp.mode) + (", re-ranked" if resp.deep else "")
        self.summary.setText(
            f"{n} file{'s' if n != 1 else ''} · {resp.took_ms:.0f} ms · {label}" if n else ""
        )
        self.summary.setToolTip("\n".join(resp.notes))
        if resp.reasoning is not None and stage >= STAGE_REASONED:
            self.reasoning.show_reasoning(resp.reasoning, resp.forced)
        self.update_placeholder()
        self.results_shown.emit(stage)

    def _search_failed(self, gen: int, exc: BaseException) -> None:
        if gen == self.gen:
            message.from_exception(exc, f"searching for “{self.query}”")

    def clear(self) -> None:
        """Empty the list, the preview and the summary."""
        self.model.set_results([])
        self.preview.clear()
        self.summary.clear()
        self.last_response = None
        self.update_placeholder()

    def update_placeholder(self) -> None:
        """Say what an empty list means: no match, no folders yet, or how to start."""
        settings = self.engine.settings
        status = self.engine.last_status
        if self.query and self.stage:
            text = f"Nothing found for “{self.query}”."
            if self.engine.indexing:
                text += "\nIndexing is still running: more files become searchable as it goes."
            if not self.filters.filters().empty:
                text += "\nSome filters are on: try Search → Clear filters."
        elif not settings.folders:
            text = (
                "No folders to search yet.\n\n"
                "Drop a folder on this window, or use File → Add folder…"
            )
        elif status is not None and status.files:
            text = (
                f"Type to search {format_count(status.files)} file"
                f"{'s' if status.files != 1 else ''} in {len(settings.folders)} folder"
                f"{'s' if len(settings.folders) != 1 else ''}.\n\n"
                "Enter runs a deep search: the best results are read again with your question."
            )
        else:
            text = "Type to search. Your folders are being indexed."
        self.results.set_placeholder(text)
