"""Progress of an indexing run: what is done, how fast, how long is left.

:class:`Tracker` builds the :class:`~sr3desk.index.types.Progress` reports of
one run and estimates the time left from measurements only. It sends every
report; a consumer that draws them (a terminal line, the window's child
process) wraps its callback in :class:`Throttle`, the one place where reports
are paced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sr3desk.index.types import PHASE_DONE, PHASE_EXTRACT, PHASE_SCAN, Progress

log = logging.getLogger(__name__)

ProgressFn = Callable[[Progress], None]

DRAW_INTERVAL_S = 0.1  # what a person can follow: ten reports a second


class Throttle:
    """Passes on at most one report per ``interval`` seconds, plus every change of
    phase or pause and the final report."""

    def __init__(self, emit: ProgressFn, interval: float = DRAW_INTERVAL_S) -> None:
        self._emit = emit
        self._interval = interval
        self._last = 0.0
        self._key: tuple[str, bool] | None = None

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        key = (p.phase, p.paused)
        if key != self._key:
            log.debug("Index phase %s%s", p.phase, " (paused)" if p.paused else "")
        if key != self._key or now - self._last >= self._interval or p.phase == PHASE_DONE:
            self._key, self._last = key, now
            self._emit(p)


class Tracker:
    """Builds Progress reports, measures speed and estimates the time left.

    ``prior_rate``: the embedding speed an earlier run with this model measured
    (None: no model, or never measured); it gives the reading phase a whole ETA.
    """

    def __init__(self, callback: ProgressFn | None, prior_rate: float | None = None) -> None:
        self.callback = callback
        self.state = Progress(PHASE_SCAN)
        self.embed_started: float | None = None
        self.tokens_done = 0
        self.tokens_left = 0
        self.read_started: float | None = None
        self.bytes_read = 0
        self.bytes_left = 0
        self.tokens_read = 0  # tokens of the chunks read in this run (all to embed)
        self.ocr_seconds = 0.0
        self.prior_rate = prior_rate

    def phase(self, phase: str, **fields: Any) -> None:
        """Enter ``phase`` and report it."""
        self.state.phase = phase
        self.emit(**fields)

    def emit(self, **fields: Any) -> None:
        """Update ``fields`` of the state and report it."""
        for key, value in fields.items():
            setattr(self.state, key, value)
        if self.callback is None:
            return
        self.state.tokens_per_s = self.rate()
        self.state.eta_s = self.eta()
        self.callback(replace(self.state))

    def start_reading(self, n_files: int, n_bytes: int) -> None:
        """The reading phase begins with ``n_files`` files of ``n_bytes`` in all."""
        self.bytes_left = n_bytes
        self.read_started = time.monotonic()
        self.phase(PHASE_EXTRACT, files_total=n_files, files_done=0)

    def file_read(self, size: int, tokens: int) -> None:
        """One file of ``size`` bytes was read into chunks of ``tokens`` tokens."""
        self.bytes_read += size
        self.bytes_left -= size
        self.tokens_read += tokens

    def ocr_read(self, pages: int, seconds: float) -> None:
        """One file's ``pages`` were read by OCR in ``seconds``."""
        self.ocr_seconds += seconds
        self.state.ocr_pages += pages
        if self.ocr_seconds > 0:
            self.state.ocr_pages_per_s = self.state.ocr_pages / self.ocr_seconds

    def embedded(self, tokens: int) -> None:
        """``tokens`` more tokens were embedded."""
        self.tokens_done += tokens
        self.tokens_left = max(0, self.tokens_left - tokens)

    def rate(self) -> float:
        """Tokens embedded per wall-clock second of the embedding phase so far."""
        if self.embed_started is None or self.tokens_done == 0:
            return 0.0
        elapsed = time.monotonic() - self.embed_started
        return self.tokens_done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left, from measurements only: the bytes still to read at the
        reading speed so far, plus the tokens still to embed (while reading:
        those read so far and the rest estimated from tokens per byte) at the
        embedding speed of this run or of the last one. None until measured."""
        total = 0.0
        tokens = self.tokens_left
        if self.state.phase == PHASE_EXTRACT:
            if self.read_started is None or self.bytes_read == 0:
                return None
            elapsed = time.monotonic() - self.read_started
            total += self.bytes_left * elapsed / self.bytes_read
            if self.prior_rate is None:
                return total  # nothing will be embedded (no model)
            tokens = self.tokens_read + int(self.bytes_left * self.tokens_read / self.bytes_read)
        if tokens:
            rate = self.rate() or self.prior_rate or 0.0
            if rate <= 0:
                return None
            total += tokens / rate
        return total
