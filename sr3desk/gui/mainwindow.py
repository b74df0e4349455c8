"""The main window: search first, results grouped by file, preview, status.

The search flow is :class:`sr3desk.gui.searchflow.SearchFlow`; every search,
preview and index call goes through :class:`sr3desk.gui.engine.Engine`, off the
GUI thread.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from sr3desk import __version__
from sr3desk.gui import message, opener
from sr3desk.gui.download import ModelDownload
from sr3desk.gui.engine import Engine
from sr3desk.gui.filters import FilterBar
from sr3desk.gui.preview import PreviewPane
from sr3desk.gui.problems import ProblemsDialog
from sr3desk.gui.results import ResultsModel, ResultsView
from sr3desk.gui.searchflow import STAGE_HYBRID, SearchFlow
from sr3desk.gui.settings_dialog import SettingsDialog, describe_model
from sr3desk.gui.status import IndexStatusWidget, format_count
from sr3desk.gui.tune import TuneDialog
from sr3desk.gui.welcome import CHOICE_DOWNLOAD, WelcomeDialog
from sr3desk.gui.widgets import Banner, ReasoningPanel, SearchField
from sr3desk.gui.workers import settle_heap, start_job
from sr3desk.index.types import ChunkHit, IndexStatus, Progress, Summary
from sr3desk.search import FileResult
from sr3desk.settings import Settings

if TYPE_CHECKING:
    from sr3desk.model.ggufinfo import ModelInfo

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """What the window needs of its tray icon (:class:`sr3desk.gui.tray.Tray`)."""

    def notify(self, text: str) -> None:
        """Show ``text`` as a passing message; returns nothing."""


class MainWindow(QMainWindow):
    """The app's window over one data directory."""

    results_shown = Signal(int)  # stage of the response now shown
    preview_shown = Signal(str)  # path of the file now previewed
    deep_search_done = Signal()

    def __init__(self, home: Path, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.engine = Engine(home, settings, self)
        self.setWindowTitle("sr3desk")
        self.setAccessibleName("sr3desk")
        self.setAcceptDrops(True)
        self.problems: ProblemsDialog | None = None
        self.welcome: WelcomeDialog | None = None
        self.tune: TuneDialog | None = None
        self.tray: Notifier | None = None  # set by the app where the desktop has a tray
        self._quitting = False
        self.download = ModelDownload(home, parent=self)
        self._build()
        self._actions()
        self._connect()
        self._restore_geometry()
        self.searching.update_placeholder()

    # -- construction ----------------------------------------------------------------

    def _build(self) -> None:
        """Create the widgets: search row, filter row, banner, results, status bar."""
        top = self._build_search_row()
        row = self._build_filter_row()
        self.banner = Banner()
        self.reasoning = ReasoningPanel()
        self._build_results()

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(10, 10, 10, 4)
        layout.addLayout(top)
        layout.addLayout(row)
        layout.addWidget(self.banner)
        layout.addWidget(self.reasoning)
        layout.addWidget(self.split, 1)
        self.setCentralWidget(central)

        self._build_status_bar()
        self.searching = SearchFlow(
            self.engine,
            self.search,
            self.deep_button,
            self.think_button,
            self.filters,
            self.model,
            self.results,
            self.preview,
            self.summary,
            self.reasoning,
        )
        self._set_tab_order()

    def _build_search_row(self) -> QHBoxLayout:
        """The top row: the search field, Deep search, Think and the settings gear."""
        self.search = SearchField()
        self.deep_button = QPushButton("Deep search")
        self.deep_button.setAccessibleName("Deep search")
        self.deep_button.setToolTip(
            "Deep search (Enter): the best results are read again together with your "
            "query by a cross-encoder and re-ranked"
        )
        self.think_button = QPushButton("Think")
        self.think_button.setAccessibleName("Think: deep search with reasoning")
        self.think_button.setEnabled(False)
        self.think_button.setToolTip("Think: no model is loaded")
        self.settings_button = QToolButton()
        self.settings_button.setText("⚙")
        self.settings_button.setAccessibleName("Settings")
        self.settings_button.setToolTip("Folders and settings (Ctrl+,)")
        self.settings_button.setAutoRaise(True)
        gear = self.settings_button.font()
        gear.setPointSizeF(gear.pointSizeF() * 1.6)
        self.settings_button.setFont(gear)
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.deep_button)
        top.addWidget(self.think_button)
        top.addWidget(self.settings_button)
        return top

    def _build_filter_row(self) -> QHBoxLayout:
        """The second row: the filters and the search summary."""
        self.filters = FilterBar()
        self.filters.set_folders(self.engine.settings.folders)
        self.summary = QLabel()
        self.summary.setAccessibleName("Search summary")
        self.summary.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        row = QHBoxLayout()
        row.addWidget(self.filters, 1)
        row.addWidget(self.summary)
        return row

    def _build_results(self) -> None:
        """The results list beside the preview, in a splitter."""
        self.model = ResultsModel(self)
        self.results = ResultsView()
        self.results.setModel(self.model)
        self.preview = PreviewPane()
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.setAccessibleName("Results and preview")
        self.split.addWidget(self.results)
        self.split.addWidget(self.preview)
        self.split.setStretchFactor(0, 5)
        self.split.setStretchFactor(1, 4)
        self.split.setChildrenCollapsible(False)

    def _build_status_bar(self) -> None:
        """The status bar: the last message, the model download, the index status."""
        self.info_label = QLabel()
        self.info_label.setAccessibleName("Last message")
        self.index_status = IndexStatusWidget()
        self.fetch_bar = QProgressBar()
        self.fetch_bar.setAccessibleName("Model download progress")
        self.fetch_bar.setMaximumWidth(120)
        self.fetch_bar.setMaximumHeight(14)
        self.fetch_bar.setTextVisible(False)
        self.fetch_cancel = QPushButton("Cancel download")
        self.fetch_cancel.setAccessibleName("Cancel model download")
        self.fetch_cancel.setFlat(True)
        bar = self.statusBar()
        bar.addWidget(self.info_label, 1)
        bar.addPermanentWidget(self.fetch_bar)
        bar.addPermanentWidget(self.fetch_cancel)
        bar.addPermanentWidget(self.index_status)
        self.fetch_bar.hide()
        self.fetch_cancel.hide()
        self._info_timer = QTimer(self)
        self._info_timer.setSingleShot(True)
        self._info_timer.timeout.connect(self.info_label.clear)

    def _set_tab_order(self) -> None:
        """Tab goes from the search field through the filters to the results."""
        self.setTabOrder(self.search, self.deep_button)
        self.setTabOrder(self.deep_button, self.think_button)
        self.setTabOrder(self.think_button, self.filters.folder)
        self.setTabOrder(self.filters.folder, self.filters.type)
        self.setTabOrder(self.filters.type, self.filters.date)
        self.setTabOrder(self.filters.date, self.results)
        self.setTabOrder(self.results, self.preview.open_button)

    def _action(
        self, text: str, keys: list[str | QKeySequence.StandardKey], slot: object
    ) -> QAction:
        act = QAction(text, self)
        seqs = [QKeySequence(k) for k in keys]
        if seqs:
            act.setShortcuts(seqs)
        act.triggered.connect(slot)
        self.addAction(act)
        return act

    def _actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.act_add = self._action("&Add folder…", [], self.add_folder_dialog)
        self.act_settings = self._action("&Settings…", ["Ctrl+,"], self.open_settings)
        self.act_quit = self._action("&Quit", [QKeySequence.StandardKey.Quit], self.quit_app)
        for a in (self.act_add, self.act_settings):
            file_menu.addAction(a)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)

        search_menu = menu.addMenu("&Search")
        self.act_focus = self._action("&Find", ["Ctrl+K", "Ctrl+F"], self.focus_search)
        self.act_deep = self._action("&Deep search", [], self.searching.deep_search)
        self.act_think = self._action(
            "&Think (deep search with reasoning)", ["Ctrl+Return"], self.searching.think
        )
        self.act_think.setEnabled(False)
        self.act_clear_filters = self._action("&Clear filters", [], self.filters.reset)
        for a in (self.act_focus, self.act_deep, self.act_think, self.act_clear_filters):
            search_menu.addAction(a)

        result_menu = menu.addMenu("&Result")
        self.act_open = self._action("&Open", ["Ctrl+O"], self.open_current)
        self.act_reveal = self._action("Show in &folder", ["Ctrl+Shift+R"], self.reveal_current)
        self.act_copy = self._action("&Copy path", ["Ctrl+Shift+C"], self.copy_current)
        for a in (self.act_open, self.act_reveal, self.act_copy):
            result_menu.addAction(a)

        index_menu = menu.addMenu("&Index")
        self.act_pause = self._action("&Pause indexing", ["Ctrl+Shift+P"], self.toggle_pause)
        self.act_reindex = self._action("&Update now", ["F5"], self.engine.update_now)
        self.act_problems = self._action("P&roblems…", [], self.show_problems)
        self.act_tune = self._action("&Tune the model to my documents…", [], self.open_tune)
        for a in (self.act_pause, self.act_reindex, self.act_problems):
            index_menu.addAction(a)
        index_menu.addSeparator()
        index_menu.addAction(self.act_tune)

        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self._action("&Keyboard shortcuts", ["F1"], self.show_shortcuts))
        help_menu.addAction(self._action("&About sr3desk", [], self.show_about))

    def _connect(self) -> None:
        self.searching.results_shown.connect(self.results_shown)
        self.searching.deep_search_done.connect(self.deep_search_done)
        self.search.down.connect(self.focus_results)
        self.settings_button.clicked.connect(self.open_settings)
        self.results.leave_top.connect(self.focus_search)
        self.results.open_requested.connect(lambda _row: self.open_current())
        sel = self.results.selectionModel()
        sel.currentRowChanged.connect(lambda cur, _prev: self._show_preview(cur.row()))
        self.preview.open_clicked.connect(self.open_current)
        self.preview.show_folder_clicked.connect(self.reveal_current)
        self.preview.copy_path_clicked.connect(self.copy_current)
        self.index_status.pause_toggled.connect(self._pause_toggled)
        self.index_status.problems_clicked.connect(self.show_problems)
        self.banner.action_clicked.connect(self.open_settings)
        message.bus().shown.connect(self._message)
        e = self.engine
        e.progress.connect(self._progress)
        e.indexing_finished.connect(self._indexing_finished)
        e.status_changed.connect(self._status_changed)
        e.model_ready.connect(self._model_ready)
        e.model_failed.connect(self._model_failed)
        e.watching.connect(lambda _on: self._update_idle_status())
        e.updated.connect(self._watched_change)
        e.waiting.connect(self._watcher_waiting)
        d = self.download
        d.progress.connect(self._fetch_progress)
        d.finished.connect(self._fetch_finished)
        d.failed.connect(self._fetch_failed)
        d.cancelled.connect(self._fetch_cancelled)
        self.fetch_cancel.clicked.connect(d.cancel)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the engine (index, model) and focus the search field."""
        settle_heap()
        self.engine.start()
        self.focus_search()

    def bring_forward(self) -> None:
        """Raise the window (a second launch asked for it); not once it quits."""
        if self._quitting:
            return
        if self.isMinimized():
            self.showNormal()
        self.show()
        self.raise_()
        self.activateWindow()
        self.focus_search()

    def quit_app(self) -> None:
        """Quit: close the window for good, even where closing would keep it in the
        tray (background indexing, if on, goes on in its own process)."""
        self._quitting = True
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Save the window's geometry; the app stops the engine after the loop ends.

        With background indexing on and a tray, closing hides the window to the
        tray instead, and says so the first time.
        """
        if self.tray is not None and not self._quitting and self.engine.following is not None:
            event.ignore()
            self.hide()
            self._note_background(
                "sr3desk keeps your folders indexed in the background; it is here in the "
                "tray. Quit ends the window, not the indexing (Settings turns that off)."
            )
            return
        if self.engine.following is not None:
            log.info("Closing; background indexing (pid %s) goes on", self.engine.following.pid)
        self._window_state().setValue("geometry", self.saveGeometry())
        self._window_state().setValue("splitter", self.split.saveState())
        self._window_state().sync()
        self.searching.debounce.cancel()
        for dialog in (self.problems, self.welcome):
            if dialog is not None:
                dialog.close()
        super().closeEvent(event)

    def _window_state(self) -> QSettings:
        # Kept in the data directory so that tests and other data dirs never share it.
        return QSettings(str(self.home / "window.ini"), QSettings.Format.IniFormat)

    def _restore_geometry(self) -> None:
        state = self._window_state()
        geometry = state.value("geometry")
        if isinstance(geometry, QByteArray) and self.restoreGeometry(geometry):
            splitter = state.value("splitter")
            if isinstance(splitter, QByteArray):
                self.split.restoreState(splitter)
            return
        self.resize(1180, 760)
        self.split.setSizes([640, 520])

    # -- search -----------------------------------------------------------------------

    def focus_search(self) -> None:
        """Put the cursor in the search field, its text selected."""
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def focus_results(self) -> None:
        """Move the keyboard into the result list (first row if none is current)."""
        if self.model.rowCount() == 0:
            return
        self.results.setFocus(Qt.FocusReason.OtherFocusReason)
        if not self.results.currentIndex().isValid():
            self.results.setCurrentIndex(self.model.index(0, 0))

    # -- preview and actions ----------------------------------------------------------

    def current_result(self) -> FileResult | None:
        """Return the selected result, or None."""
        return self.model.result(self.results.currentIndex().row())

    def _show_preview(self, row: int) -> None:
        result = self.model.result(row)
        if result is None:
            self.preview.clear()
            return
        passage = result.passages[0] if result.passages else None
        self.preview.show_header(result, passage)
        if passage is None:
            return
        query = self.searching.query

        def done(chunks: list[ChunkHit]) -> None:
            if self.preview.result is not result:
                return
            self.preview.show_context(result, passage, chunks, query)
            self.preview_shown.emit(result.path)

        def failed(exc: BaseException) -> None:
            message.from_exception(exc, f"showing {os.path.basename(result.path)}")

        self.engine.file_chunks(result.file_id, done, failed)

    def open_current(self) -> None:
        """Open the selected file in its default application, at the passage's page."""
        result = self.current_result()
        if result is None:
            return
        path = result.path
        page = result.passages[0].page if result.passages else None
        name = os.path.basename(path)
        if not os.path.exists(path):
            message.warning(f"Cannot open {name}: it was moved or deleted since it was indexed")
            return

        def plan() -> opener.OpenPlan:
            desktop = opener.default_pdf_app() if page is not None else None
            return opener.plan_open(path, page, desktop)

        def go(p: opener.OpenPlan) -> None:
            if not opener.execute(p, path):
                message.warning(f"Cannot open {name}: no application is set up for this type")
            elif page is not None and not p.at_page:
                message.info(f"Opened {name}; the passage is on page {page}")
            else:
                message.info(f"Opened {name}" + (f" at page {page}" if page else ""))

        def failed(exc: BaseException) -> None:
            message.from_exception(exc, f"opening {name}")

        start_job(self, plan, go, failed)

    def reveal_current(self) -> None:
        """Show the selected file in the file manager."""
        result = self.current_result()
        if result is not None:
            opener.show_in_folder(result.path, self)

    def copy_current(self) -> None:
        """Copy the selected file's path to the clipboard."""
        result = self.current_result()
        if result is not None:
            opener.copy_path(result.path)
            message.info(f"Copied {result.path}")

    # -- indexing ---------------------------------------------------------------------

    def _progress(self, p: Progress) -> None:
        self.index_status.show_progress(p)
        # Pause applies to the folder scan; a watched change is brief and not paused.
        self.index_status.pause_button.setVisible(self.engine.indexing)
        self.index_status.set_paused(p.paused or self.engine.paused)
        self.act_pause.setText("&Resume indexing" if self.engine.paused else "&Pause indexing")

    def _pause_toggled(self, pause: bool) -> None:
        if pause:
            self.engine.pause()
        else:
            self.engine.resume()
        self.act_pause.setText("&Resume indexing" if pause else "&Pause indexing")
        last = self.index_status.last
        if last is not None:
            self.index_status.show_progress(replace(last, paused=pause))

    def toggle_pause(self) -> None:
        """Pause or resume indexing."""
        if self.engine.indexing:
            self.index_status.pause_button.toggle()

    def _indexing_finished(self, summary: Summary) -> None:
        self._update_idle_status()
        # What was typed before the index was complete may find more now.
        self.searching.refresh()

    def _watched_change(self, summary: Summary) -> None:
        changed = summary.indexed + summary.removed + summary.renamed
        if changed:
            n = changed
            message.info(f"Brought {n} changed file{'s' if n != 1 else ''} into the index")

    def _status_changed(self, status: IndexStatus) -> None:
        self.index_status.set_problems(len(status.skipped))
        if self.problems is not None and self.problems.isVisible():
            self.problems.set_problems(status.skipped)
        if not self.engine.indexing:
            self._update_idle_status()
        self.searching.update_placeholder()

    def _note_background(self, text: str) -> None:
        """Say ``text`` (that background indexing outlives the window) once ever:
        in the tray when there is one, else in the status bar."""
        settings = self.engine.settings
        if settings.background_noted:
            return
        if self.tray is not None:
            self.tray.notify(text)
        else:
            message.info(text)
        settings.background_noted = True
        settings.save(self.home)

    def set_paused(self, pause: bool) -> None:
        """Pause or resume indexing (the window's own, or the background watcher's)."""
        self.index_status.set_paused(pause)
        self._pause_toggled(pause)

    def _watcher_waiting(self, why: str) -> None:
        self.index_status.show_idle(f"Background indexing waits: {why}")

    def _update_idle_status(self) -> None:
        if self.engine.indexing:
            return
        status = self.engine.last_status
        bits = []
        if status is not None:
            bits.append(f"{format_count(status.files)} files indexed")
            if status.pending:
                bits.append(f"{format_count(status.pending)} passages waiting for the model")
        if self.engine.following is not None:
            bits.append("kept current in the background")
        info = self.engine.model_info
        if info is not None:
            bits.append(info.name)
        elif not self.engine.settings.model_path:
            bits.append("keyword search only")
        self.index_status.show_idle(" · ".join(bits))

    def _model_ready(self, info: ModelInfo | None) -> None:
        settle_heap()  # the model's metadata is loaded for good
        self._update_think(info)
        self._update_idle_status()
        if self.searching.stage < STAGE_HYBRID:
            self.searching.refresh()

    def _update_think(self, info: ModelInfo | None) -> None:
        """Think is on only for a model whose reasoning is measured to help; its
        tooltip gives the figures either way."""
        verdict = self.engine.reasoning()
        helps = info is not None and verdict.helps
        self.think_button.setEnabled(helps)
        self.act_think.setEnabled(helps)
        if info is None:
            tip = "Think: no model is loaded"
        elif helps:
            tip = f"Think: {info.name} reasons about your query first; {verdict.describe()}"
        else:
            tip = f"Think is off for {info.name}: {verdict.describe()}"
        self.think_button.setToolTip(tip)

    def _model_failed(self, text: str) -> None:
        self.banner.show_message(message.error(text), action="Settings…")
        self._update_idle_status()

    def show_problems(self) -> None:
        """Open the list of files that could not be indexed."""
        if self.problems is None:
            self.problems = ProblemsDialog(self)
            self.problems.show_in_folder.connect(lambda p: opener.show_in_folder(p, self))
        status = self.engine.last_status
        self.problems.set_problems(status.skipped if status is not None else [])
        self.problems.show()
        self.problems.raise_()
        self.engine.refresh_status()

    # -- folders and settings -----------------------------------------------------------

    def add_folders(self, folders: list[str]) -> None:
        """Add folders to the watched ones, save, and index them."""
        current = list(self.engine.settings.folders)
        added = []
        for f in folders:
            p = Path(f).expanduser()
            if p.is_file():
                p = p.parent
            if not p.is_dir():
                message.warning(f"Cannot add {f}: it is not a folder")
                continue
            path = str(p.resolve())
            if path not in current:
                current.append(path)
                added.append(path)
        if added:
            self.apply_settings(replace(self.engine.settings, folders=current))
            message.info(f"Added {', '.join(os.path.basename(a) for a in added)}; indexing")

    def add_folder_dialog(self) -> None:
        """Ask for a folder to add."""
        from PySide6.QtWidgets import QFileDialog

        dialog = QFileDialog(self, "Add a folder to search")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.setDirectory(str(Path.home()))
        dialog.fileSelected.connect(lambda f: self.add_folders([f]))
        dialog.open()

    def apply_settings(self, settings: Settings, home: Path | None = None) -> None:
        """Save and use new settings (and data directory)."""
        turned_on = settings.background_indexing and not self.engine.settings.background_indexing
        self.engine.apply(settings, home)
        if turned_on and self.tray is None:
            self._note_background(
                "Your folders stay indexed after you close the window: sr3desk watch runs "
                "at login, at low priority (Settings turns it off)"
            )
        self.home = self.engine.home
        self.filters.set_folders(settings.folders)
        self.searching.update_placeholder()
        self._update_idle_status()

    def open_settings(self) -> SettingsDialog:
        """Open the settings dialog (non-modal); returns it."""
        dialog = SettingsDialog(self.engine.settings, self.home, self)
        dialog.accepted.connect(
            lambda: self.apply_settings(dialog.result_settings(), dialog.result_home())
        )
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()
        return dialog

    def open_tune(self) -> TuneDialog:
        """Open the "tune the model" dialog (non-modal), or the one whose run goes on;
        returns it. A tuned model it makes the default is applied here, which indexes."""
        if self.tune is None or not self.tune.running:
            if self.tune is not None:
                self.tune.deleteLater()

            def use(path: str | None) -> None:
                self.apply_settings(replace(self.engine.settings, model_path=path, model_auto=None))

            self.tune = TuneDialog(
                self.home, self.engine.settings.model_path, self, apply_model=use
            )
        self.tune.show()
        self.tune.raise_()
        return self.tune

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Accept folders dragged onto the window."""
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        """Add dropped folders to the watched ones."""
        folders = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if folders:
            self.add_folders(folders)
            event.acceptProposedAction()

    # -- first run and model download ---------------------------------------------------

    def show_welcome(self) -> WelcomeDialog:
        """Open the first-run dialog (non-modal); returns it."""
        dialog = WelcomeDialog(self.engine.settings, self.download, self)
        self.welcome = dialog
        dialog.accepted.connect(lambda: self.apply_settings(dialog.result_settings()))
        dialog.finished.connect(lambda _result: self._welcome_closed(dialog))
        dialog.open()
        return dialog

    def _welcome_closed(self, dialog: WelcomeDialog) -> None:
        self.welcome = None
        if self.download.running:
            message.info("The model keeps downloading; keyword search works meanwhile")
        elif self.download.result and dialog.choice_id() == CHOICE_DOWNLOAD:
            self._fetch_finished(self.download.result)
        dialog.deleteLater()

    def _fetch_progress(self, text: str, frac: float) -> None:
        self.fetch_bar.show()
        self.fetch_cancel.show()
        if frac < 0:
            self.fetch_bar.setRange(0, 0)
        else:
            self.fetch_bar.setRange(0, 1000)
            self.fetch_bar.setValue(int(frac * 1000))
        self.fetch_bar.setToolTip(text)

    def _fetch_over(self) -> None:
        self.fetch_bar.hide()
        self.fetch_cancel.hide()

    def _fetch_finished(self, path: str) -> None:
        self._fetch_over()
        if self.welcome is not None or self.engine.settings.model_path == path:
            return  # the open dialog's choice applies it
        self.apply_settings(replace(self.engine.settings, model_path=path))
        message.info(f"Model ready: {os.path.basename(path)}; adding meaning to your index")

    def _fetch_failed(self, text: str) -> None:
        self._fetch_over()
        if self.welcome is None:
            message.error(text)

    def _fetch_cancelled(self) -> None:
        self._fetch_over()
        if self.welcome is None:
            message.info("Model download cancelled")

    # -- messages and help ------------------------------------------------------------

    def _message(self, msg: message.Message) -> None:
        if msg.level >= message.Level.WARNING:
            self.banner.show_message(msg)
        else:
            self.info_label.setText(msg.text)
            self._info_timer.start(8000)

    def show_shortcuts(self) -> None:
        """List the keyboard shortcuts."""
        text = (
            "Ctrl+K / Ctrl+F\tsearch field\n"
            "Enter\tdeep search (the best results re-ranked)\n"
            "Ctrl+Enter\tthink: deep search with reasoning (a model it helps)\n"
            "Down / Up\tmove between the search field and the results\n"
            "Enter (in results)\topen the file at the passage's page\n"
            "Ctrl+O\topen the selected file\n"
            "Ctrl+Shift+R\tshow in folder\n"
            "Ctrl+Shift+C\tcopy path\n"
            "Escape\tclear the search\n"
            "Ctrl+Shift+P\tpause or resume indexing\n"
            "F5\tlook for changes now\n"
            "Ctrl+,\tsettings"
        )
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts", text, parent=self)
        box.setAccessibleName("Keyboard shortcuts")
        box.open()

    def show_about(self) -> None:
        """Say what this is and which model it uses."""
        info = self.engine.model_info
        model_line = describe_model(info) if info is not None else "No model: keyword search only"
        box = QMessageBox(
            QMessageBox.Icon.NoIcon,
            "About sr3desk",
            f"sr3desk {__version__}\nOffline semantic search over your documents "
            f"with the Search-R3 embedding model.\n\nModel: {model_line}\nData: {self.home}",
            parent=self,
        )
        box.setAccessibleName("About sr3desk")
        box.open()
