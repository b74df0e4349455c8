"""Errors a user can act on.

Every error that reaches the user is an :class:`Sr3Error`: its message is one line
that names the thing and the reason and, where there is one, what to do. The CLI
prints it without a traceback; the GUI shows it in a dialog or the problems view.
"""

from __future__ import annotations


class Sr3Error(Exception):
    """Base of all user-facing errors; ``str(err)`` is the one-line message."""

    exit_code = 2


class ModelError(Sr3Error):
    """A model file cannot be used (missing, not GGUF, truncated, no embed token)."""


class MissingExtraError(Sr3Error):
    """An optional dependency group is not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs the '{extra}' extra: pip install 'sr3desk[{extra}]'")
        self.extra = extra


class ExtractError(Sr3Error):
    """A file was skipped; ``reason`` is short and shown in status/problems."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"Cannot read {path}: {reason}")
        self.path = path
        self.reason = reason


class IndexAccessError(Sr3Error):
    """The index cannot be opened or written."""


class ModelRequiredError(Sr3Error):
    """A search mode needs an embedding model and none is configured."""


class OfflineError(Sr3Error):
    """A download was asked for and the network cannot be reached."""
