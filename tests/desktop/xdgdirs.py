"""The temporary HOME and XDG folders of a desktop-integration test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class XdgDirs:
    """The temporary HOME, $XDG_DATA_HOME and $XDG_CONFIG_HOME of one test."""

    home: Path
    data: Path
    config: Path

    def files(self) -> set[Path]:
        """Every file under the three folders."""
        return {p for root in (self.home, self.data, self.config) for p in root.rglob("*")
                if p.is_file()}  # fmt: skip
