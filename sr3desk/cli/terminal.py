"""One self-updating line on a terminal, for the commands' progress bars."""

from __future__ import annotations

import os
from typing import IO


class TerminalLine:
    """Redraws one line of ``stream`` in place (cut to the terminal's width);
    :meth:`clear` erases it, :meth:`close` ends it with a newline."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.shown = False

    def draw(self, text: str) -> None:
        """Replace the line with ``text``."""
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            columns = 100
        self.stream.write("\r\x1b[K" + text[: columns - 1])
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erase the line (before other output)."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def close(self) -> None:
        """Keep the last text and move to the next line."""
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False
