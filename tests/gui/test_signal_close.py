"""SIGTERM and SIGINT close the window, even when they come while it is starting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from sr3desk.gui.app import create_window
from sr3desk.settings import Settings

# run()'s order: the handler is installed, the window shown, then the loop runs. The
# signal is sent in between, as a logout or `kill` may do while the window starts.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from PySide6.QtCore import QTimer
    from sr3desk.gui.app import SignalWaker, create_window, make_app
    from sr3desk.settings import Settings

    app = make_app([sys.argv[0]])
    window = create_window(Path(sys.argv[1]), Settings(first_run_done=True))
    waker = SignalWaker(window)
    os.kill(os.getpid(), getattr(signal, sys.argv[2]))
    window.show()
    QTimer.singleShot(20000, lambda: app.exit(3))  # the signal was lost
    code = app.exec()
    waker.restore()
    print("visible" if window.isVisible() else "closed", flush=True)
    os._exit(code)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_the_event_loop_runs_still_closes_the_window(
    sig: signal.Signals, tmp_path: Path
) -> None:
    home = tmp_path / "data"
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(home), sig.name],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert (done.returncode, done.stdout.strip()) == (0, "closed"), done.stderr[-2000:]


def test_a_second_launch_does_not_bring_back_a_window_that_quits(
    qtbot: QtBot, tmp_path: Path
) -> None:
    w = create_window(tmp_path, Settings(first_run_done=True))
    qtbot.addWidget(w)
    w.show()
    w.bring_forward()
    assert w.isVisible()
    # A launch's "come forward" that arrives while the window quits (as a launcher's
    # probe did in the tests) would show it again and cancel the automatic quit.
    w.quit_app()
    w.bring_forward()
    assert not w.isVisible()
