"""Single instance: a second launch for the same data directory raises the first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pytestqt.qtbot import QtBot

from sr3desk.gui.single import SingleInstance, notify_running, server_name


def test_second_launch_raises_the_first(qtbot: QtBot, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    first = SingleInstance(home)
    assert first.listen()
    try:
        # The second launch is a real second process, as when the user starts the app again.
        code = (
            "import sys; from pathlib import Path\n"
            "from PySide6.QtCore import QCoreApplication\n"
            "from sr3desk.gui.single import notify_running\n"
            "app = QCoreApplication([])\n"
            "sys.exit(0 if notify_running(Path(sys.argv[1])) else 3)\n"
        )
        with qtbot.waitSignal(first.activated, timeout=10000):
            proc = subprocess.Popen([sys.executable, "-c", code, str(home)])
        assert proc.wait(10) == 0
    finally:
        first.close()
    # Nobody listens any more: a new launch becomes the first instance.
    assert not notify_running(home)


def test_names_differ_per_data_directory(tmp_path: Path) -> None:
    assert server_name(tmp_path / "a") != server_name(tmp_path / "b")
    assert server_name(tmp_path / "a") == server_name(tmp_path / "a")


def test_socket_left_by_a_crashed_app_is_taken_over(tmp_path: Path) -> None:
    code = (
        "import os, sys; from pathlib import Path\n"
        "from PySide6.QtCore import QCoreApplication\n"
        "from sr3desk.gui.single import SingleInstance\n"
        "app = QCoreApplication([])\n"
        "assert SingleInstance(Path(sys.argv[1])).listen()\n"
        "os._exit(0)  # crash: the socket file stays behind\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=30)
    assert not notify_running(tmp_path)
    again = SingleInstance(tmp_path)
    assert again.listen()
    again.close()
