"""Fixtures of the desktop-integration tests: a temporary HOME and XDG folders (never
the user's own menu, icons or autostart), and desktop-file-validate."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from xdgdirs import XdgDirs


@pytest.fixture(autouse=True)
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> XdgDirs:
    """Point HOME and the XDG folders at empty temporary ones (child processes too)."""
    dirs = XdgDirs(tmp_path / "userhome", tmp_path / "xdg-data", tmp_path / "xdg-config")
    for d in (dirs.home, dirs.data, dirs.config):
        d.mkdir()
    monkeypatch.setenv("HOME", str(dirs.home))
    monkeypatch.setenv("XDG_DATA_HOME", str(dirs.data))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(dirs.config))
    return dirs


@pytest.fixture(scope="session")
def validate() -> Callable[[Path], None]:
    """A function that fails the test unless desktop-file-validate accepts a file
    without an error, a warning or a hint."""
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        pytest.fail(
            "desktop-file-validate is missing: install Debian's desktop-file-utils "
            "(make test does)",
            pytrace=False,
        )

    def check(path: Path) -> None:
        result = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr

    return check
