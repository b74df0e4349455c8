"""Search as you type, and deep search: which request runs when, and what is shown.

Each keystroke starts a new *generation*; after a short pause its keyword search
runs (no model needed, answers at once) and, with a model, its hybrid search
(which waits for the query's embedding). A response is shown only if it belongs
to the current generation and is not an earlier *stage* than what is shown:
keyword < hybrid < deep. Enter or Think runs a deep search: the model reasons
about the query first, and its reasoning is shown above the results.
"""

from __future__ import annotations

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

DEBOUNCE_MS = 150  # typing pause before a search starts
RESULTS_K = 30
STAGE_KEYWORD, STAGE_HYBRID, STAGE_DEEP = 1, 2, 3
MODE_LABELS = {"keyword": "keyword", "hybrid": "keyword + meaning", "vector": "meaning"}


class SearchFlow(QObject):
    """Runs the searches of the search field and shows their responses."""

    results_shown = Signal(int)  # stage of the response now shown
    deep_search_done = Signal()

    def __init__(
        self,
        engine: Engine,
        search: SearchField,
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
        self.debounce = Debouncer(DEBOUNCE_MS, self.run_search, self)
        search.textChanged.connect(self.text_changed)
        search.think.connect(self.deep_search)
        think_button.clicked.connect(self.deep_search)
        filters.changed.connect(self.filters_changed)

    def refresh(self) -> None:
        """Run the current query again (more is indexed, or the model is ready)."""
        if self.query and not self.reasoning.isVisible():
            self.stage = min(self.stage, STAGE_KEYWORD)
            self.run_search()

    def text_changed(self, text: str) -> None:
        """The field changed: start over (after the debounce delay)."""
        self.gen += 1
        self.stage = 0
        self.query = text.strip()
        # The reasoning shown belongs to the previous query.
        self.reasoning.stop()
        self.think_button.setEnabled(True)
        if not self.query:
            self.debounce.cancel()
            self.clear()
            return
        self.debounce.trigger()

    def filters_changed(self) -> None:
        """A filter changed: search again at once."""
        if self.query:
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
            reason = self.engine.settings.reason_default
            if reason:
                self.reasoning.show_thinking(query)
            self.engine.search(
                SearchRequest(query, mode="hybrid", k=RESULTS_K, filters=filters, reason=reason),
                lambda resp: self._show(gen, STAGE_DEEP if reason else STAGE_HYBRID, resp),
                lambda exc: self._search_failed(gen, exc),
            )

    def deep_search(self) -> None:
        """Enter / Think: a hybrid search in which the model reasons first."""
        self.debounce.cancel()
        query = self.search.text().strip()
        if not query:
            self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
            return
        if not self.engine.model_loaded:
            if self.engine.settings.model_path:
                message.info("The model is still loading; showing keyword results meanwhile")
            else:
                message.warning(
                    "Deep search needs a model: choose one in Settings (keyword results shown)"
                )
            self.query = query
            self.run_search()
            return
        self.gen += 1
        self.stage = 0
        self.query = query
        gen = self.gen
        filters = self.filters.filters()
        self.reasoning.show_thinking(query)
        self.think_button.setEnabled(False)

        def done(resp: SearchResponse | None) -> None:
            self.think_button.setEnabled(True)
            if gen != self.gen:
                return
            self._show(gen, STAGE_DEEP, resp)
            self.deep_search_done.emit()

        def failed(exc: BaseException) -> None:
            self.think_button.setEnabled(True)
            self.reasoning.stop()
            self._search_failed(gen, exc)

        # Keyword results right away, so the list is never empty while the model thinks.
        self.engine.search(
            SearchRequest(query, mode="keyword", k=RESULTS_K, filters=filters),
            lambda resp: self._show(gen, STAGE_KEYWORD, resp),
            lambda exc: self._search_failed(gen, exc),
        )
        self.engine.search(
            SearchRequest(query, mode="hybrid", k=RESULTS_K, filters=filters, reason=True),
            done,
            failed,
        )

    def _show(self, gen: int, stage: int, resp: SearchResponse | None) -> None:
        if resp is None or gen != self.gen or stage < self.stage:
            return
        self.stage = stage
        self.last_response = resp
        current = self.model.result(self.results.currentIndex().row())
        keep = current.path if current is not None else None
        self.model.set_results(resp.results, resp.mode)
        row = self.model.row_of(keep) if keep else -1
        if self.model.rowCount():
            self.results.setCurrentIndex(self.model.index(max(row, 0), 0))
        else:
            self.preview.clear()
        n = len(resp.results)
        label = MODE_LABELS.get(resp.mode, resp.mode)
        self.summary.setText(
            f"{n} file{'s' if n != 1 else ''} · {resp.took_ms:.0f} ms · {label}" if n else ""
        )
        self.summary.setToolTip("\n".join(resp.notes))
        if stage == STAGE_DEEP:
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
                "Enter or Think lets the model reason about your question first."
            )
        else:
            text = "Type to search. Your folders are being indexed."
        self.results.set_placeholder(text)
