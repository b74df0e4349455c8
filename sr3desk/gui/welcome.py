"""The first-run dialog: which folders to search and which model to use.

Model choices: the installed default (the configured model, which ``make run``
installs), a GGUF file from disk, a download of the official Search-R3 model
(runs in the background, with progress and cancel; keyword search works
meanwhile), or no model for now (keyword search only).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from sr3desk.gui import theme
from sr3desk.gui.download import ModelDownload
from sr3desk.gui.settings_dialog import FolderEditor, ModelChooser
from sr3desk.settings import Settings

CHOICE_INSTALLED, CHOICE_FILE, CHOICE_DOWNLOAD, CHOICE_NONE = range(4)


def suggested_folders() -> list[str]:
    """Return the folders to suggest: the user's Documents folder when it exists."""
    from PySide6.QtCore import QStandardPaths

    docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    candidates = [docs] if docs else []
    candidates.append(str(Path.home() / "Documents"))
    for c in candidates:
        if c and Path(c).is_dir():
            return [str(Path(c).resolve())]
    return []


class WelcomeDialog(QDialog):
    """Asks for folders and a model; :meth:`result_settings` returns the choice."""

    def __init__(
        self,
        settings: Settings,
        download: ModelDownload,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Welcome to sr3desk")
        self.setAccessibleName("Welcome")
        self.resize(640, 620)
        self._settings = settings
        self.download = download

        title, intro = _header()
        folders_box = QGroupBox("Folders to search")
        self.folders = FolderEditor()
        self.folders.list.set_folders(list(settings.folders) or suggested_folders())
        fl = QVBoxLayout(folders_box)
        fl.addWidget(self.folders)
        model_box = self._model_box()

        self.buttons = QDialogButtonBox()
        self.start_button = self.buttons.addButton(
            "Start searching", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.start_button.setAccessibleName("Start searching")
        self.start_button.setDefault(True)
        self.buttons.accepted.connect(self.accept)

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(intro)
        layout.addWidget(folders_box, 1)
        layout.addWidget(model_box)
        layout.addWidget(self.buttons)

        self.choice.idToggled.connect(self._update)
        self.file_chooser.validity_changed.connect(lambda _v: self._update())
        self.installed_check.validity_changed.connect(self._installed_checked)
        self.fetch_button.clicked.connect(self._start_download)
        self.cancel_button.clicked.connect(download.cancel)
        download.progress.connect(self._fetch_progress)
        download.failed.connect(self._fetch_failed)
        download.cancelled.connect(self._fetch_cancelled)
        download.finished.connect(self._fetch_finished)

        if settings.model_path:
            self.installed_details.setText("Checking the installed model…")
            self.installed_check.set_path(settings.model_path)
            self.installed.setChecked(True)
        else:
            self.installed.setEnabled(False)
            self.installed_details.setText("No model is installed yet.")
            self.from_file.setChecked(True)
        self._fetch_idle()
        self._update()

    def _model_box(self) -> QGroupBox:
        """The Model group: installed, file, download (with its progress) or none."""
        model_box = QGroupBox("Model")
        self.choice = QButtonGroup(self)
        self.installed = QRadioButton("Use the installed model")
        self.installed.setAccessibleName("Use the installed model")
        self.installed_details = QLabel()
        self.installed_details.setAccessibleName("Installed model details")
        self.installed_details.setWordWrap(True)
        self.installed_check = ModelChooser(allow_empty=False)
        self.installed_check.hide()  # only used to inspect the installed file
        self.from_file = QRadioButton("Use a model file (GGUF) on this computer")
        self.from_file.setAccessibleName("Use a model file on this computer")
        self.file_chooser = ModelChooser(allow_empty=False)
        self.fetch = QRadioButton("Download the official Search-R3 model")
        self.fetch.setAccessibleName("Download the official model")
        fetch_note = QLabel(
            "About 3 GB to download; converted and compressed to about 1 GB on this "
            "computer. Keyword search works while it downloads."
        )
        fetch_note.setWordWrap(True)
        self.fetch_button = QPushButton("Download")
        self.fetch_button.setAccessibleName("Start download")
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.setAccessibleName("Cancel download")
        # Enter starts searching, whatever has focus.
        self.fetch_button.setAutoDefault(False)
        self.cancel_button.setAutoDefault(False)
        self.fetch_bar = QProgressBar()
        self.fetch_bar.setAccessibleName("Download progress")
        self.fetch_status = QLabel()
        self.fetch_status.setAccessibleName("Download status")
        self.fetch_status.setWordWrap(True)
        self.none = QRadioButton("No model for now: keyword search only")
        self.none.setAccessibleName("No model for now")
        for i, b in enumerate((self.installed, self.from_file, self.fetch, self.none)):
            self.choice.addButton(b, i)

        fetch_row = QHBoxLayout()
        fetch_row.addWidget(self.fetch_button)
        fetch_row.addWidget(self.cancel_button)
        fetch_row.addWidget(self.fetch_bar, 1)
        fetch_row.addStretch(0)
        for button in (self.fetch_button, self.cancel_button):
            button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        ml = QVBoxLayout(model_box)
        ml.addWidget(self.installed)
        ml.addWidget(_indented(self.installed_details))
        ml.addWidget(self.from_file)
        ml.addWidget(_indented(self.file_chooser))
        ml.addWidget(self.fetch)
        ml.addWidget(_indented(fetch_note))
        ml.addWidget(_indented_layout(fetch_row))
        ml.addWidget(_indented(self.fetch_status))
        ml.addWidget(self.none)
        return model_box

    # -- model choice -------------------------------------------------------------------

    def _installed_checked(self, valid: bool) -> None:
        info = self.installed_check.info
        if valid and info is not None:
            from sr3desk.gui.settings_dialog import describe_model

            self.installed_details.setText(describe_model(info))
            self.installed_details.setStyleSheet("")
        elif self.installed_check.details.text() != "Checking the model…":
            self.installed_details.setText(self.installed_check.details.text())
            self.installed_details.setStyleSheet(f"color: {theme.error_color().name()};")
            if self.installed.isChecked():
                self.from_file.setChecked(True)
        self._update()

    def choice_id(self) -> int:
        """Return the chosen model option (CHOICE_*)."""
        return self.choice.checkedId()

    def _update(self, *_args: object) -> None:
        choice = self.choice_id()
        self.file_chooser.setEnabled(choice == CHOICE_FILE)
        fetch = choice == CHOICE_DOWNLOAD
        self.fetch_button.setEnabled(fetch and not self.download.running)
        ok = {
            CHOICE_INSTALLED: self.installed_check.valid,
            CHOICE_FILE: self.file_chooser.valid,
            CHOICE_DOWNLOAD: True,
            CHOICE_NONE: True,
        }.get(choice, False)
        self.start_button.setEnabled(ok)

    def result_settings(self) -> Settings:
        """Return the settings the user chose (first run marked done)."""
        choice = self.choice_id()
        model = self._settings.model_path
        if choice == CHOICE_FILE:
            model = self.file_chooser.path()
        elif choice == CHOICE_DOWNLOAD:
            model = self.download.result  # None until the download is done
        elif choice == CHOICE_NONE:
            model = None
        return replace(
            self._settings,
            folders=self.folders.list.folders(),
            model_path=model,
            first_run_done=True,
        )

    # -- download -------------------------------------------------------------------------

    def _start_download(self) -> None:
        self.fetch_status.setStyleSheet("")
        self.fetch_status.setText("Starting the download…")
        self.fetch_bar.setRange(0, 0)
        self.fetch_bar.show()
        self.fetch_button.setEnabled(False)
        self.cancel_button.show()
        self.download.start()

    def _fetch_idle(self) -> None:
        running = self.download.running
        self.fetch_bar.setVisible(running)
        self.cancel_button.setVisible(running)

    def _fetch_progress(self, text: str, frac: float) -> None:
        self.fetch_status.setText(text)
        if frac < 0:
            self.fetch_bar.setRange(0, 0)
        else:
            self.fetch_bar.setRange(0, 1000)
            self.fetch_bar.setValue(int(frac * 1000))

    def _fetch_failed(self, text: str) -> None:
        self.fetch_status.setText(text)
        self.fetch_status.setStyleSheet(f"color: {theme.error_color().name()};")
        self._fetch_idle()
        self._update()

    def _fetch_cancelled(self) -> None:
        self.fetch_status.setText("Download cancelled.")
        self._fetch_idle()
        self._update()

    def _fetch_finished(self, path: str) -> None:
        self.fetch_status.setText(f"Model ready: {path}")
        self._fetch_idle()
        self._update()


def _header() -> tuple[QLabel, QLabel]:
    """The dialog's title (large, bold) and its one-paragraph introduction."""
    title = QLabel("Welcome to sr3desk")
    font = title.font()
    font.setPointSizeF(font.pointSizeF() * 1.5)
    font.setBold(True)
    title.setFont(font)
    intro = QLabel(
        "Find things in your documents by what they mean, not only by their words. "
        "Everything stays on this computer."
    )
    intro.setWordWrap(True)
    return title, intro


def _indented(widget: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(24, 0, 0, 0)
    layout.addWidget(widget, 1)
    return box


def _indented_layout(inner: QHBoxLayout) -> QWidget:
    box = QWidget()
    inner.setContentsMargins(24, 0, 0, 0)
    box.setLayout(inner)
    return box


__all__ = ["WelcomeDialog", "suggested_folders"]
