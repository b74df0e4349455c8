"""SIGTERM and SIGINT close the window, even when they come while it is starting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
