"""Filters under the search field: folder, file type and modified date."""

from __future__ import annotations

import os
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from sr3desk.gui import theme
from sr3desk.index.types import Filters

# (label, seconds back); None: any time.
DATE_CHOICES: list[tuple[str, float | None]] = [
    ("Any time", None),
    ("Past day", 86400.0),
    ("Past week", 7 * 86400.0),
    ("Past month", 31 * 86400.0),
    ("Past year", 366 * 86400.0),
]


class FilterBar(QWidget):
    """Three combo boxes; :attr:`changed` fires when any of them changes."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder = QComboBox()
        self.folder.setAccessibleName("Folder filter")
        self.folder.setToolTip("Only files in this folder")
        self.folder.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.folder.setMaximumWidth(320)
        self.type = QComboBox()
        self.type.setAccessibleName("File type filter")
        self.type.addItem("Any type", ())
        for group, exts in theme.TYPE_GROUPS.items():
            self.type.addItem(group, exts)
        self.date = QComboBox()
        self.date.setAccessibleName("Modified date filter")
        for text, back in DATE_CHOICES:
            self.date.addItem(text, back)
        self.set_folders([])
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for caption, box in (("&In", self.folder), ("T&ype", self.type), ("&Modified", self.date)):
            label = QLabel(caption)
            label.setBuddy(box)
            layout.addWidget(label)
            layout.addWidget(box)
        layout.addStretch(1)
        for box in (self.folder, self.type, self.date):
            box.currentIndexChanged.connect(self._changed)

    def set_folders(self, folders: list[str]) -> None:
        """Offer the watched folders (keeps the choice when it is still offered)."""
        current = self.folder.currentData()
        self.folder.blockSignals(True)
        self.folder.clear()
        self.folder.addItem("All folders", "")
        for f in folders:
            self.folder.addItem(os.path.basename(f.rstrip(os.sep)) or f, f)
            self.folder.setItemData(self.folder.count() - 1, f, Qt.ItemDataRole.ToolTipRole)
        i = self.folder.findData(current) if current else 0
        self.folder.setCurrentIndex(max(0, i))
        self.folder.blockSignals(False)
        if current and i < 0:
            self.changed.emit()

    def filters(self, now: float | None = None) -> Filters:
        """Return the :class:`Filters` the boxes describe."""
        folder = self.folder.currentData() or ""
        exts = tuple(self.type.currentData() or ())
        back = self.date.currentData()
        after = None
        if back is not None:
            after = (time.time() if now is None else now) - float(back)
        return Filters(folders=(folder,) if folder else (), exts=exts, modified_after=after)

    def reset(self) -> None:
        """Back to no filtering."""
        for box in (self.folder, self.type, self.date):
            box.setCurrentIndex(0)

    def _changed(self, _index: int) -> None:
        self.changed.emit()
