"""One writer per data directory: an fcntl lock on ``<home>/index.lock`` (and the
same kind of lock on ``<home>/tune.lock`` for one tune at a time).

The kernel drops the lock when its process dies, even by SIGKILL, so a killed
indexer never leaves a stale lock behind. The holder writes its pid into the
file so that a second indexer can say who is running.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from types import TracebackType

from sr3desk.errors import IndexAccessError

log = logging.getLogger(__name__)

LOCK_FILE = "index.lock"


class WriterLock:
    """An exclusive, non-blocking lock on the index of one data directory.

    ``name`` is the lock file in ``home``; ``holder`` names what holds it in the
    error a second one gets (e.g. "sr3desk indexer", "sr3desk tune").
    """

    def __init__(self, home: Path, name: str = LOCK_FILE, holder: str = "sr3desk indexer") -> None:
        self.path = Path(home) / name
        self.holder = holder
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise IndexAccessError naming the process that holds it."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_pid(fd)
            os.close(fd)
            who = f" (pid {other})" if other else ""
            raise IndexAccessError(
                f"Another {self.holder}{who} is writing to {self.path.parent}: "
                "wait for it to finish or stop it, then try again"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise IndexAccessError(f"Cannot lock {self.path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        log.debug("Took the writer lock %s", self.path)

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(raw) if raw else None
    except (OSError, ValueError):
        return None
