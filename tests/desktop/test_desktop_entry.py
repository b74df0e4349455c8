"""The applications menu entry: installed by `make run` and `sr3desk desktop install`,
valid, starting the window with this installation's sr3desk, and removed whole."""

from __future__ import annotations

import doctest
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from configparser import ConfigParser
from pathlib import Path

from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication
from xdgdirs import XdgDirs

from sr3desk.desktop import entry
from sr3desk.desktop.autostart import autostart_path, install_autostart
from sr3desk.gui.single import notify_running

ROOT = Path(__file__).resolve().parents[2]
SR3DESK = Path(sys.executable).parent / "sr3desk"


def read_entry(path: Path) -> dict[str, str]:
    """The keys of a desktop entry's main group."""
    parser = ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return dict(parser["Desktop Entry"])


def exec_argv(value: str) -> list[str]:
    """The argv of an Exec value (string unescaping, then the spec's quoting)."""
    return shlex.split(value.replace("\\\\", "\\").replace("%%", "%"))


def catches(pid: int, sig: signal.Signals) -> bool:
    """True when process ``pid`` has a handler for ``sig`` (/proc's SigCgt mask)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def test_doctests() -> None:
    assert doctest.testmod(entry).failed == 0


def test_make_run_installs_the_entry_before_it_opens_the_window() -> None:
    out = subprocess.run(
        ["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    install = next(i for i, line in enumerate(lines) if "sr3desk desktop install" in line)
    gui = next(i for i, line in enumerate(lines) if line.endswith("sr3desk gui"))
    assert install < gui, out


def test_installed_entry_is_valid_and_its_exec_starts_the_window(
    xdg: XdgDirs, validate: Callable[[Path], None], tmp_path: Path, qapp: QApplication
) -> None:
    # What `make run` runs: this venv's script, as a separate process.
    subprocess.run([str(SR3DESK), "desktop", "install"], check=True, capture_output=True)
    path = xdg.data / "applications" / "sr3desk.desktop"
    validate(path)
    keys = read_entry(path)
    assert keys["Name"] == entry.APP_NAME and keys["Icon"] == entry.ICON_NAME
    assert keys["StartupWMClass"] == path.stem == entry.APP_ID
    argv = exec_argv(keys["Exec"])
    assert argv == [str(SR3DESK.absolute()), "gui"] and os.path.isabs(argv[0])
    for n in entry.ICON_SIZES:
        png = QImage(str(xdg.data / f"icons/hicolor/{n}x{n}/apps/sr3desk.png"))
        assert (png.width(), png.height()) == (n, n)
    assert (xdg.data / "icons/hicolor/scalable/apps/sr3desk.svg").read_bytes() == (
        entry.ICON_SVG.read_bytes()
    )
    # The Exec line, run as a launcher runs it, opens the window: it answers on the
    # single-instance socket of its data directory, and once the window is up (it
    # catches SIGTERM then) it closes on SIGTERM.
    home = tmp_path / "data"
    env = dict(os.environ, SR3DESK_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not notify_running(home):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the window did not come up"
            time.sleep(0.2)
        while not catches(proc.pid, signal.SIGTERM):
            assert time.monotonic() < deadline, "the window did not come up"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_uninstall_removes_every_file_install_wrote(
    xdg: XdgDirs, validate: Callable[[Path], None], tmp_path: Path
) -> None:
    before = xdg.files()
    written = entry.install()
    home = tmp_path / "data"
    home.mkdir()
    install_autostart(home)
    assert set(written) | {autostart_path()} == xdg.files() - before
    out = subprocess.run(
        [str(SR3DESK), "desktop", "uninstall", "--db", str(home)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert xdg.files() == before
    assert {Path(line.removeprefix("Removed ")) for line in out.splitlines()} == set(written) | {
        autostart_path()
    }
    assert not (xdg.data / "icons/hicolor/48x48").exists()  # emptied folders go too


def test_an_exec_path_with_spaces_and_percent_is_quoted(
    tmp_path: Path, validate: Callable[[Path], None]
) -> None:
    odd = '/opt/my apps/100% "sr3"/bin/sr3desk'
    path = tmp_path / "odd.desktop"
    path.write_text(entry.entry_text([odd]))
    validate(path)
    assert exec_argv(read_entry(path)["Exec"]) == [odd, "gui"]
