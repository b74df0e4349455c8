"""The indexing part of the status bar: progress, current file, rate, ETA, pause, problems."""

from __future__ import annotations

import os
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from sr3desk.index.types import (
    PHASE_DONE,
    PHASE_EMBED,
    PHASE_EXTRACT,
    PHASE_OPTIMIZE,
    PHASE_SCAN,
    Progress,
)


def format_eta(seconds: float | None) -> str:
    """Return a rough time left: "about 3 min left"; "" when unknown.

    >>> format_eta(30), format_eta(200), format_eta(7300)
    ('less than a minute left', 'about 3 min left', 'about 2 h 2 min left')
    """
    if seconds is None or seconds < 0:
        return ""
    if seconds < 60:
        return "less than a minute left"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60} min left"


def format_count(n: int) -> str:
    """Return ``n`` with thousands separators: 12,345."""
    return f"{n:,}"


class RateMeter:
    """Files per second over the current phase (the indexer reports tokens/s itself)."""

    def __init__(self) -> None:
        self._phase = ""
        self._t0 = 0.0
        self._n0 = 0

    def files_per_s(self, p: Progress, now: float | None = None) -> float:
        """Return the reading rate since the phase began (0 until measurable)."""
        now = time.monotonic() if now is None else now
        if p.phase != self._phase:
            self._phase, self._t0, self._n0 = p.phase, now, p.files_done
            return 0.0
        dt = now - self._t0
        return (p.files_done - self._n0) / dt if dt > 0.5 else 0.0


def describe_progress(p: Progress, files_per_s: float = 0.0) -> str:
    """Return the status line for a progress report (files, current file, rate, ETA)."""
    current = os.path.basename(p.current) if p.current else ""
    files = f"{format_count(p.files_done)} of {format_count(p.files_total)} files"
    if p.paused:
        return f"Indexing paused · {files}"
    if p.phase == PHASE_SCAN:
        return "Looking for new and changed files…"
    if p.phase == PHASE_EXTRACT:
        bits = [f"Reading {files}"]
        if current:
            bits.append(current)
        if files_per_s > 0:
            bits.append(f"{files_per_s:.1f} files/s")
        if p.ocr_pages:
            bits.append(f"OCR {p.ocr_pages_per_s:.2f} pages/s")
        if p.files_total and files_per_s > 0:
            left = (p.files_total - p.files_done) / files_per_s
            bits.append(format_eta(left))
        return " · ".join(bits)
    if p.phase == PHASE_EMBED:
        bits = [
            files,
            f"embedding {format_count(p.chunks_embedded)} of "
            f"{format_count(p.chunks_total)} passages",
        ]
        if current:
            bits.append(current)
        if p.tokens_per_s > 0:
            bits.append(f"{p.tokens_per_s:,.0f} tokens/s")
        eta = format_eta(p.eta_s)
        if eta:
            bits.append(eta)
        return " · ".join(bits)
    if p.phase == PHASE_OPTIMIZE:
        return "Optimising the index…"
    if p.phase == PHASE_DONE:
        return "Index up to date"
    return p.phase


class IndexStatusWidget(QWidget):
    """Shows the indexer's progress; Pause/Resume and Problems buttons."""

    pause_toggled = Signal(bool)  # True: pause
    problems_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel("")
        self.label.setAccessibleName("Indexing status")
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setMinimumWidth(120)
        self.bar = QProgressBar()
        self.bar.setAccessibleName("Indexing progress")
        self.bar.setMaximumWidth(140)
        self.bar.setMaximumHeight(14)
        self.bar.setTextVisible(False)
        self.bar.hide()
        self.pause_button = QPushButton("Pause")
        self.pause_button.setAccessibleName("Pause indexing")
        self.pause_button.setCheckable(True)
        self.pause_button.setFlat(True)
        self.pause_button.toggled.connect(self._toggled)
        self.pause_button.hide()
        self.problems_button = QPushButton("Problems")
        self.problems_button.setAccessibleName("Show files that could not be indexed")
        self.problems_button.setFlat(True)
        self.problems_button.clicked.connect(self.problems_clicked)
        self.problems_button.hide()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.bar)
        layout.addWidget(self.pause_button)
        layout.addWidget(self.problems_button)
        self._rate = RateMeter()
        self.last: Progress | None = None

    def show_progress(self, p: Progress) -> None:
        """Update from a progress report."""
        self.last = p
        self.label.setText(describe_progress(p, self._rate.files_per_s(p)))
        self.label.setToolTip(p.current or "")
        active = p.phase not in (PHASE_DONE,)
        self.pause_button.setVisible(active)
        if p.phase == PHASE_EMBED and p.chunks_total:
            self.bar.setRange(0, p.chunks_total)
            self.bar.setValue(p.chunks_embedded)
            self.bar.show()
        elif p.phase == PHASE_EXTRACT and p.files_total:
            self.bar.setRange(0, p.files_total)
            self.bar.setValue(p.files_done)
            self.bar.show()
        elif active:
            self.bar.setRange(0, 0)  # busy
            self.bar.show()
        else:
            self.bar.hide()

    def show_idle(self, text: str) -> None:
        """Show a resting state ("Up to date · 512 files")."""
        self.label.setText(text)
        self.label.setToolTip("")
        self.bar.hide()
        self.pause_button.hide()
        self.set_paused(False)

    def set_paused(self, paused: bool) -> None:
        """Reflect the pause state without emitting :attr:`pause_toggled`."""
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(paused)
        self.pause_button.blockSignals(False)
        self._label_button(paused)

    def set_problems(self, n: int) -> None:
        """Show the number of skipped files (hidden when there are none)."""
        self.problems_button.setText(f"Problems ({n})")
        self.problems_button.setVisible(n > 0)

    def _label_button(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.setAccessibleName("Resume indexing" if paused else "Pause indexing")

    def _toggled(self, checked: bool) -> None:
        self._label_button(checked)
        self.pause_toggled.emit(checked)
