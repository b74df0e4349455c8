"""The one place that tells the user something.

Every message is logged and shown at once, so a user's report and the log say
the same thing. Messages name the thing and the reason ("Cannot read report.pdf:
the file is encrypted"). The main window listens to :data:`bus` and shows
information in the status bar and warnings and errors in a dismissible banner;
nothing here opens a modal dialog, so no message can stall the event loop.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from sr3desk.errors import Sr3Error

log = logging.getLogger(__name__)


class Level(enum.IntEnum):
    """How much a message matters; also decides where it is shown."""

    INFO = logging.INFO
    WARNING = logging.WARNING
    ERROR = logging.ERROR


@dataclass(frozen=True)
class Message:
    """One message: its level and its one-line text."""

    level: Level
    text: str


class MessageBus(QObject):
    """Carries messages from any thread to whatever shows them (queued signals)."""

    shown = Signal(object)  # Message

    def __init__(self) -> None:
        super().__init__()
        self.history: list[Message] = []

    def emit_message(self, level: Level, text: str, exc: BaseException | None = None) -> Message:
        """Log ``text`` at ``level`` (with ``exc``'s traceback when given) and send it
        to the listeners; returns the message."""
        msg = Message(level, text)
        log.log(int(level), "%s", text, exc_info=exc)
        # Keep a short history so a test or an "about" box can show what happened.
        self.history.append(msg)
        del self.history[:-50]
        self.shown.emit(msg)
        return msg


_bus: MessageBus | None = None


def bus() -> MessageBus:
    """Return the process-wide message bus (created on first use, in the GUI thread)."""
    global _bus
    if _bus is None:
        _bus = MessageBus()
    return _bus


def info(text: str) -> Message:
    """Show a passing note (status bar) and log it."""
    return bus().emit_message(Level.INFO, text)


def warning(text: str) -> Message:
    """Show a warning (banner) and log it."""
    return bus().emit_message(Level.WARNING, text)


def error(text: str) -> Message:
    """Show an error (banner) and log it."""
    return bus().emit_message(Level.ERROR, text)


def describe(exc: BaseException, doing: str) -> str:
    """Return the user-facing line for ``exc`` raised while ``doing`` something.

    An :class:`Sr3Error` already names the thing and the reason, so its text is
    used as is; anything else is a bug, and the line says what failed and how.
    """
    if isinstance(exc, Sr3Error):
        return str(exc)
    reason = str(exc) or type(exc).__name__
    return f"{doing[:1].upper()}{doing[1:]} failed: {reason}"


def from_exception(exc: BaseException, doing: str) -> Message:
    """Show ``exc`` (raised while ``doing`` something) as an error.

    Unexpected exceptions are logged with their traceback; user errors are not.
    """
    trace = None if isinstance(exc, Sr3Error) else exc
    return bus().emit_message(Level.ERROR, describe(exc, doing), trace)
