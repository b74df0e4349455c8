"""One window per data directory: a second launch raises the first.

The first instance listens on a local socket (QLocalServer) whose name is
derived from the user and the data directory. A later launch connects, sends
``raise`` and exits; the first instance emits :attr:`SingleInstance.activated`
and brings its window forward. Two launches on different data directories are
independent apps.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

RAISE = b"raise\n"
CONNECT_TIMEOUT_MS = 500


def server_name(home: Path) -> str:
    """Return the local socket name for the data directory ``home``."""
    key = f"{getpass.getuser()}\0{home.resolve()}".encode()
    return "sr3desk-" + hashlib.blake2b(key, digest_size=8).hexdigest()


class SingleInstance(QObject):
    """The listening side of single-instance; see :func:`notify_running` for the other.

    Call :meth:`listen` once the app knows it is the first instance.
    """

    activated = Signal()

    def __init__(self, home: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = server_name(home)
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._server.newConnection.connect(self._accept)
        self._clients: list[QLocalSocket] = []

    def listen(self) -> bool:
        """Start listening; returns False (and logs) when the name cannot be taken."""
        if self._server.listen(self.name):
            return True
        # A crashed instance leaves its socket file behind: remove it and retry.
        QLocalServer.removeServer(self.name)
        if self._server.listen(self.name):
            return True
        log.warning(
            "Single-instance socket %s unavailable: %s", self.name, self._server.errorString()
        )
        return False

    def close(self) -> None:
        """Stop listening (the socket file is removed)."""
        self._server.close()
        self._clients.clear()

    @Slot()
    def _accept(self) -> None:
        # Sockets stay children of the server (freed with it); closed ones are
        # dropped here rather than with deleteLater, which races the server's
        # own teardown.
        self._clients = [c for c in self._clients if c.state() == c.LocalSocketState.ConnectedState]
        while self._server.hasPendingConnections():
            sock = self._server.nextPendingConnection()
            if sock is None:
                break
            self._clients.append(sock)
            sock.readyRead.connect(self._read_ready)
            if sock.bytesAvailable():
                self._read(sock)

    @Slot()
    def _read_ready(self) -> None:
        for sock in self._clients:
            if sock.bytesAvailable():
                self._read(sock)

    def _read(self, sock: QLocalSocket) -> None:
        data = bytes(sock.readAll().data())
        if RAISE.strip() in data:
            log.info("Another launch asked this window to come forward")
            self.activated.emit()


def notify_running(home: Path) -> bool:
    """Ask a running instance for ``home`` to raise its window.

    Returns True when one answered (the caller should then exit), False when none
    runs. Blocks for at most about a second: it runs before any window exists.
    """
    sock = QLocalSocket()
    sock.connectToServer(server_name(home))
    if not sock.waitForConnected(CONNECT_TIMEOUT_MS):
        return False
    sock.write(RAISE)
    sock.flush()
    sock.waitForBytesWritten(CONNECT_TIMEOUT_MS)
    sock.disconnectFromServer()
    if sock.state() != QLocalSocket.LocalSocketState.UnconnectedState:
        sock.waitForDisconnected(CONNECT_TIMEOUT_MS)
    return True
