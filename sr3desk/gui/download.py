"""Downloading the official Search-R3 model in the background, with progress and cancel.

The work is the runtime's ``fetch_model`` (download, convert, quantize); this
only runs it on a thread and turns its progress into signals. Offline, the
fetch fails at once with an :class:`OfflineError`, which is shown as it is.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from sr3desk.errors import OfflineError, Sr3Error
from sr3desk.gui import message
from sr3desk.model.fetch import DEFAULT_REPO, FetchCancelled, FetchProgress, fetch_model
from sr3desk.settings import models_dir

log = logging.getLogger(__name__)


def describe_fetch_progress(p: FetchProgress) -> tuple[str, float]:
    """Turn one :class:`FetchProgress` into (text, fraction done or -1 when unknown)."""
    text = p.message or p.stage.capitalize()
    if p.stage == "download" and p.done is not None:
        if p.total:
            frac = max(0.0, min(1.0, p.done / p.total))
            return f"Downloading: {p.done / 1e6:,.0f} of {p.total / 1e6:,.0f} MB", frac
        return f"Downloading: {p.done / 1e6:,.0f} MB", -1.0
    if p.stage == "done":
        return text, 1.0
    return text, -1.0


class ModelDownload(QObject):
    """One fetch of the official model into ``<home>/models``."""

    progress = Signal(str, float)  # what it does, fraction done (-1: unknown)
    finished = Signal(str)  # path of the ready GGUF
    failed = Signal(str)  # one-line reason (offline, disk full, ...)
    cancelled = Signal()

    def __init__(self, home: Path, repo: str | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.home = home
        self.repo = repo
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.result: str | None = None

    @property
    def running(self) -> bool:
        """True while the fetch runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start fetching (no-op when already running)."""
        if self.running:
            return
        self._cancel.clear()
        self._thread = threading.Thread(target=self._main, name="sr3desk-fetch", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the fetch to stop; :attr:`cancelled` follows."""
        self._cancel.set()

    def _main(self) -> None:
        def report(p: FetchProgress) -> None:
            text, frac = describe_fetch_progress(p)
            self.progress.emit(text, frac)

        try:
            path = fetch_model(
                self.repo or DEFAULT_REPO,
                models_dir(self.home),
                progress=report,
                cancel=self._cancel,
            )
        except FetchCancelled:
            self.cancelled.emit()
            return
        except OfflineError as exc:
            self.failed.emit(f"{exc}. You can also choose a model file, or search by keywords.")
            return
        except Exception as exc:
            if self._cancel.is_set():
                self.cancelled.emit()
            else:
                self.failed.emit(message.describe(exc, "downloading the model"))
                if not isinstance(exc, Sr3Error):
                    log.error("Model download failed", exc_info=exc)
            return
        if self._cancel.is_set():
            self.cancelled.emit()
            return
        self.result = str(path)
        self.finished.emit(str(path))
