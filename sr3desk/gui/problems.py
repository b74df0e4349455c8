"""The "problems" view: files the indexer skipped, each with its reason."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


class ProblemsDialog(QDialog):
    """A non-modal list of (file, reason); double-click shows the file in its folder."""

    show_in_folder = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Files that could not be indexed")
        self.setAccessibleName("Problems")
        self.resize(760, 380)
        self.summary = QLabel()
        self.summary.setAccessibleName("Problems summary")
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, 2)
        self.table.setAccessibleName("Skipped files")
        self.table.setHorizontalHeaderLabels(["File", "Reason"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.table.setColumnWidth(0, 360)
        self.table.cellDoubleClicked.connect(self._double_clicked)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)

    def set_problems(self, skipped: list[tuple[str, str]]) -> None:
        """Show ``skipped`` as (path, reason) rows, sorted by path."""
        rows = sorted(skipped)
        self.table.setRowCount(len(rows))
        for i, (path, reason) in enumerate(rows):
            name = QTableWidgetItem(os.path.basename(path))
            name.setToolTip(path)
            name.setData(Qt.ItemDataRole.UserRole, path)
            self.table.setItem(i, 0, name)
            self.table.setItem(i, 1, QTableWidgetItem(reason))
        if rows:
            self.summary.setText(
                f"{len(rows)} file{'s' if len(rows) != 1 else ''} could not be indexed. "
                "The rest of your files are searchable; fix or remove these and they are "
                "picked up again. Double-click a row to show the file in its folder."
            )
        else:
            self.summary.setText("Every file was indexed.")

    def rows(self) -> list[tuple[str, str]]:
        """Return the (path, reason) rows shown."""
        out = []
        for i in range(self.table.rowCount()):
            name, reason = self.table.item(i, 0), self.table.item(i, 1)
            if name is not None and reason is not None:
                out.append((str(name.data(Qt.ItemDataRole.UserRole)), reason.text()))
        return out

    def _double_clicked(self, row: int, _col: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.show_in_folder.emit(str(item.data(Qt.ItemDataRole.UserRole)))
