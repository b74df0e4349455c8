"""Waiting on a Qt signal outside a test function (module fixtures have no qtbot)."""

from __future__ import annotations

from PySide6.QtCore import QEventLoop, QTimer


def wait_for(signal: object, timeout_s: float) -> list[object]:
    """Spin the event loop until ``signal`` fires; returns its arguments."""
    loop = QEventLoop()
    got: list[list[object]] = []

    def fired(*args: object) -> None:
        got.append(list(args))
        loop.quit()

    signal.connect(fired)  # type: ignore[attr-defined]
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    timer.start(int(timeout_s * 1000))
    loop.exec()
    signal.disconnect(fired)  # type: ignore[attr-defined]
    if not got:
        raise TimeoutError(f"{signal} did not fire within {timeout_s} s")
    return got[0]
