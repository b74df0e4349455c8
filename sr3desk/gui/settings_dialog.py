"""Folders and settings: watched folders (dialog and drag-and-drop), exclusions,
the model file (checked and described in place), threads, GPU layers, reasoning
default and the data directory."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from sr3desk.gui import message, theme
from sr3desk.gui.workers import start_job
from sr3desk.settings import Settings

if TYPE_CHECKING:
    from sr3desk.model.ggufinfo import ModelInfo


def format_size(n: int) -> str:
    """Return a byte count as "1.2 GB", "138 MB", "12 KB"."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return (
                f"{size:.0f} {unit}" if unit in ("B", "KB") or size >= 10 else f"{size:.1f} {unit}"
            )
        size /= 1000
    return f"{size:.1f} GB"


STAGES = {"base": "not fine-tuned", "sft": "fine-tuned", "rl": "fine-tuned with RL"}


def describe_model(info: ModelInfo) -> str:
    """Return the one-line description of a model: name, size, width, quantization."""
    bits = [
        info.name,
        format_size(info.size_bytes),
        f"{info.dim}-d vectors",
        info.quantization,
    ]
    if info.stage:
        bits.append(STAGES.get(info.stage, f"stage {info.stage}"))
    text = " · ".join(str(b) for b in bits if b)
    ev = info.eval or {}
    ndcg = ev.get("ndcg@10")
    if isinstance(ndcg, int | float):
        bm25 = ev.get("bm25_ndcg@10")
        text += f"\nMeasured nDCG@10 {ndcg:.3f}"
        if isinstance(bm25, int | float):
            text += f" (keyword search alone: {bm25:.3f})"
    return text


class FolderList(QListWidget):
    """Watched folders; folders dropped on it are added (files' folders too)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Watched folders")
        self.setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)

    def folders(self) -> list[str]:
        """Return the folders, in order."""
        out = []
        for i in range(self.count()):
            item = self.item(i)
            if item is not None:
                out.append(str(item.data(Qt.ItemDataRole.UserRole)))
        return out

    def add_folder(self, path: str) -> bool:
        """Add ``path`` (resolved) unless present or not a folder; returns whether added."""
        p = Path(path).expanduser()
        if p.is_file():
            p = p.parent
        if not p.is_dir():
            message.warning(f"Cannot add {path}: it is not a folder")
            return False
        folder = str(p.resolve())
        if folder in self.folders():
            return False
        item = QListWidgetItem(folder)
        item.setData(Qt.ItemDataRole.UserRole, folder)
        item.setToolTip(folder)
        self.addItem(item)
        self.changed.emit()
        return True

    def set_folders(self, folders: list[str]) -> None:
        """Replace the list (no checks: these come from saved settings)."""
        self.clear()
        for f in folders:
            item = QListWidgetItem(f)
            item.setData(Qt.ItemDataRole.UserRole, f)
            item.setToolTip(f)
            self.addItem(item)
        self.changed.emit()

    def remove_selected(self) -> None:
        """Remove the selected folders."""
        for item in self.selectedItems():
            self.takeItem(self.row(item))
        self.changed.emit()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Accept drags that carry local files or folders."""
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        """Keep accepting while the drag moves over the list."""
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        """Add every dropped local folder."""
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if not urls:
            super().dropEvent(event)
            return
        for url in urls:
            self.add_folder(url.toLocalFile())
        event.acceptProposedAction()


class FolderEditor(QWidget):
    """A :class:`FolderList` with Add and Remove buttons."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = FolderList()
        add = QPushButton("Add folder…")
        add.setAccessibleName("Add folder")
        # Enter in a dialog means its main button, not whichever helper has focus.
        add.setAutoDefault(False)
        add.clicked.connect(self._choose)
        self.remove = QPushButton("Remove")
        self.remove.setAccessibleName("Remove selected folders")
        self.remove.setAutoDefault(False)
        self.remove.clicked.connect(self.list.remove_selected)
        self.remove.setEnabled(False)
        self.list.itemSelectionChanged.connect(
            lambda: self.remove.setEnabled(bool(self.list.selectedItems()))
        )
        hint = QLabel("Drop folders here, or add them with the button.")
        hint.setEnabled(False)
        buttons = QVBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(self.remove)
        buttons.addStretch(1)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.list, 1)
        row.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(hint)

    def _choose(self) -> None:
        dialog = QFileDialog(self, "Add a folder to search")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.setDirectory(str(Path.home()))
        dialog.fileSelected.connect(self.list.add_folder)
        dialog.open()


class ModelChooser(QWidget):
    """A GGUF path with Browse…, checked with ``inspect_gguf`` in a worker.

    Shows the model's name, size, vector width and quantization, or the
    validation error, in place. ``valid`` is true for an accepted file or an
    empty path (keyword search only) when ``allow_empty``.
    """

    validity_changed = Signal(bool)

    def __init__(self, allow_empty: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.allow_empty = allow_empty
        self.info: ModelInfo | None = None
        self.valid = allow_empty
        self._checking = 0
        self.path_edit = QLineEdit()
        self.path_edit.setAccessibleName("Model file")
        self.path_edit.setPlaceholderText(
            "No model: keyword search only" if allow_empty else "Path of a .gguf model file"
        )
        self.path_edit.editingFinished.connect(self._check)
        browse = QPushButton("Choose…")
        browse.setAccessibleName("Choose model file")
        browse.setAutoDefault(False)
        browse.clicked.connect(self._browse)
        self.details = QLabel()
        self.details.setAccessibleName("Model details")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.details)

    def path(self) -> str | None:
        """Return the chosen path, or None for no model."""
        text = self.path_edit.text().strip()
        return text or None

    def set_path(self, path: str | None) -> None:
        """Set the path and check it."""
        self.path_edit.setText(path or "")
        self._check()

    def _browse(self) -> None:
        dialog = QFileDialog(self, "Choose a Search-R3 model (GGUF)")
        dialog.setNameFilters(["GGUF models (*.gguf)", "All files (*)"])
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        current = self.path()
        dialog.setDirectory(str(Path(current).parent) if current else str(Path.home()))
        dialog.fileSelected.connect(self.set_path)
        dialog.open()

    def _check(self) -> None:
        path = self.path()
        self._checking += 1
        ticket = self._checking
        if path is None:
            self.info = None
            self._set_valid(self.allow_empty)
            self.details.setText(
                "Without a model, search finds words, not meaning."
                if self.allow_empty
                else "Choose a model file."
            )
            return
        self._set_valid(False)
        self.details.setText("Checking the model…")

        def inspect() -> ModelInfo:
            from sr3desk.model.ggufinfo import inspect_gguf

            return inspect_gguf(Path(path).expanduser())

        def done(info: ModelInfo) -> None:
            if ticket != self._checking:
                return
            self.info = info
            self._set_valid(True)
            self.details.setText(describe_model(info))

        def failed(exc: BaseException) -> None:
            if ticket != self._checking:
                return
            self.info = None
            self._set_valid(False)
            self.details.setText(message.describe(exc, f"checking {os.path.basename(path)}"))
            self.details.setStyleSheet(f"color: {theme.error_color().name()};")

        start_job(self, inspect, done, failed, name="inspect-model")

    def _set_valid(self, valid: bool) -> None:
        self.details.setStyleSheet("")
        self.valid = valid
        self.validity_changed.emit(valid)


class SettingsDialog(QDialog):
    """Edit a copy of the settings; :meth:`result_settings` returns it on accept."""

    def __init__(self, settings: Settings, home: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("sr3desk settings")
        self.setAccessibleName("Settings")
        self.resize(640, 480)
        self._settings = settings
        self.home = home

        tabs = QTabWidget()
        tabs.setAccessibleName("Settings sections")
        tabs.addTab(self._folders_tab(settings), "Folders")
        tabs.addTab(self._model_tab(settings), "Model")
        tabs.addTab(self._storage_tab(home), "Storage")

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.model.validity_changed.connect(self._update_ok)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs, 1)
        layout.addWidget(self.buttons)
        self._update_ok(self.model.valid)

    def _folders_tab(self, settings: Settings) -> QWidget:
        """The Folders tab: folders, exclusions, size limit, OCR, background indexing."""
        folders_tab = QWidget()
        self.folders = FolderEditor()
        self.folders.list.set_folders(list(settings.folders))
        self.exclude = QPlainTextEdit("\n".join(settings.exclude))
        self.exclude.setAccessibleName("Exclusion patterns")
        self.exclude.setPlaceholderText("One pattern a line, e.g.  *.log  or  drafts/**")
        self.exclude.setMaximumHeight(90)
        self.max_mb = QDoubleSpinBox()
        self.max_mb.setAccessibleName("Largest file to index, in MB")
        self.max_mb.setRange(0.1, 4096)
        self.max_mb.setSuffix(" MB")
        self.max_mb.setValue(settings.max_file_mb)
        self.max_mb.setMaximumWidth(140)
        form = QFormLayout(folders_tab)
        form.addRow("Folders to search:", self.folders)
        form.addRow("Skip files matching:", self.exclude)
        form.addRow("Skip files larger than:", self.max_mb)
        self.ocr = QCheckBox("Read scanned PDFs and images by OCR")
        self.ocr.setAccessibleName("Read scanned PDFs and images by OCR")
        self.ocr.setToolTip(
            "Pages without a text layer and image files are read by Tesseract (about a "
            "second a page); off: they are listed as having no text layer"
        )
        self.ocr.setChecked(settings.ocr)
        self.ocr_languages = QLineEdit(settings.ocr_languages)
        self.ocr_languages.setAccessibleName("OCR languages")
        self.ocr_languages.setToolTip(_ocr_languages_tip())
        self.ocr_languages.setMaximumWidth(140)
        self.ocr.toggled.connect(self.ocr_languages.setEnabled)
        self.ocr_languages.setEnabled(settings.ocr)
        form.addRow("", self.ocr)
        form.addRow("OCR languages:", self.ocr_languages)
        self.background = QCheckBox("Keep my folders indexed in the background")
        self.background.setAccessibleName("Keep my folders indexed in the background")
        self.background.setToolTip(
            "Runs sr3desk watch at login, at low priority, so files saved while the window "
            "is closed are found at once; the window then shows its progress"
        )
        self.background.setChecked(settings.background_indexing)
        form.addRow("", self.background)
        return folders_tab

    def _model_tab(self, settings: Settings) -> QWidget:
        """The Model tab: model file, threads, GPU layers, reasoning, deep search."""
        model_tab = QWidget()
        self.model = ModelChooser(allow_empty=True)
        self.model.set_path(settings.model_path)
        self.threads = QSpinBox()
        self.threads.setAccessibleName("Model threads")
        self.threads.setRange(0, os.cpu_count() or 64)
        self.threads.setSpecialValueText("Automatic")
        self.threads.setValue(settings.threads or 0)
        self.threads.setMaximumWidth(140)
        self.threads.setToolTip("Threads llama.cpp uses; Automatic: one per physical core")
        self.gpu_layers = QSpinBox()
        self.gpu_layers.setAccessibleName("Layers on the GPU")
        self.gpu_layers.setRange(-1, 999)
        self.gpu_layers.setSpecialValueText("All")
        self.gpu_layers.setValue(settings.gpu_layers)
        self.gpu_layers.setMaximumWidth(140)
        self.gpu_layers.setToolTip("Model layers run on a GPU: 0 uses the CPU only")
        self.reason = QCheckBox("Let the model reason on every search (slower)")
        self.reason.setAccessibleName("Reason by default")
        self.reason.setToolTip(
            "Think always reasons; this makes search-as-you-type reason too, for a model "
            "whose reasoning is measured to help"
        )
        self.reason.setChecked(settings.reason_default)
        self.deep = QCheckBox("Deep search on Enter: re-rank the best results (about a second)")
        self.deep.setAccessibleName("Deep search on Enter")
        self.deep.setToolTip(
            "Enter reads the best results again together with your query (a cross-encoder) "
            "and re-ranks them; off: Enter shows the instant results"
        )
        self.deep.setChecked(settings.deep_search)
        mform = QFormLayout(model_tab)
        mform.addRow("Model file:", self.model)
        mform.addRow("Threads:", self.threads)
        mform.addRow("GPU layers:", self.gpu_layers)
        mform.addRow("", self.reason)
        mform.addRow("", self.deep)
        return model_tab

    def _storage_tab(self, home: Path) -> QWidget:
        """The Storage tab: the data directory."""
        data_tab = QWidget()
        self.data_dir = QLineEdit(str(home))
        self.data_dir.setAccessibleName("Data directory")
        browse = QPushButton("Choose…")
        browse.setAccessibleName("Choose data directory")
        browse.setAutoDefault(False)
        browse.clicked.connect(self._browse_data_dir)
        row = QHBoxLayout()
        row.addWidget(self.data_dir, 1)
        row.addWidget(browse)
        note = QLabel(
            "The index, settings and downloaded models live here. A new directory starts "
            "a new index; the old one is kept."
        )
        note.setWordWrap(True)
        dform = QFormLayout(data_tab)
        dform.addRow("Data directory:", row)
        dform.addRow("", note)
        return data_tab

    def _update_ok(self, valid: bool) -> None:
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        if ok is not None:
            ok.setEnabled(valid)

    def _browse_data_dir(self) -> None:
        dialog = QFileDialog(self, "Choose the data directory")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setDirectory(self.data_dir.text())
        dialog.fileSelected.connect(self.data_dir.setText)
        dialog.open()

    def result_settings(self) -> Settings:
        """Return the settings as edited."""
        patterns = [
            line.strip() for line in self.exclude.toPlainText().splitlines() if line.strip()
        ]
        return replace(
            self._settings,
            folders=self.folders.list.folders(),
            exclude=patterns,
            max_file_mb=float(self.max_mb.value()),
            model_path=self.model.path(),
            threads=self.threads.value() or None,
            gpu_layers=self.gpu_layers.value(),
            reason_default=self.reason.isChecked(),
            deep_search=self.deep.isChecked(),
            ocr=self.ocr.isChecked(),
            background_indexing=self.background.isChecked(),
            ocr_languages=_ocr_languages(self.ocr_languages.text(), self._settings.ocr_languages),
        )

    def result_home(self) -> Path:
        """Return the data directory as edited (absolute)."""
        return Path(self.data_dir.text().strip() or str(self.home)).expanduser().resolve()


def _ocr_languages_tip() -> str:
    """The OCR languages field's tooltip: the format and the languages installed."""
    from sr3desk.extract.ocr import installed_languages

    found = installed_languages()
    have = ", ".join(found) if found else "none (install tesseract-ocr-eng)"
    return (
        "Tesseract language codes joined by '+', e.g. eng+deu; each needs its data "
        f"(Debian: tesseract-ocr-<code>). Installed: {have}"
    )


def _ocr_languages(text: str, previous: str) -> str:
    """The languages typed, tidied ("eng + deu" -> "eng+deu"); ``previous`` when the
    text is not a valid list of codes."""
    codes = [c.strip() for c in text.split("+") if c.strip()]
    if not codes or not all(c.replace("_", "").isalnum() for c in codes):
        return previous
    return "+".join(codes)
