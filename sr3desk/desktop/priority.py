"""Lowering a process's priority: nice 19 and the idle I/O class.

The background watcher calls :func:`lower_priority` first thing, before it starts
any thread or child process, so that every thread (llama.cpp's included) and the
extraction worker inherit it: its reading and embedding then yield the CPU and the
disk to whatever the user is doing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

NICE = 19
IOPRIO_CLASS_IDLE = 3
_IOPRIO_CLASS_SHIFT = 13
_IOPRIO_WHO_PROCESS = 1
# ioprio_set / ioprio_get syscall numbers (glibc has no wrapper).
_SYSCALLS = {
    "x86_64": (251, 252),
    "aarch64": (30, 31),
    "i686": (289, 290),
    "i386": (289, 290),
    "armv7l": (314, 315),
    "riscv64": (30, 31),
    "ppc64le": (273, 274),
}


def lower_priority() -> None:
    """Make the calling process as polite as an unprivileged one can be: CPU nice
    19 and the idle I/O scheduling class. Takes nothing and returns nothing; what
    cannot be done (an unknown architecture) is logged, not raised."""
    current = os.nice(0)
    if current < NICE:
        os.nice(NICE - current)
    if not _set_io_idle():
        log.info("Cannot set the idle I/O class on %s; running at nice %d only", _arch(), NICE)
        return
    log.info("Running at low priority: nice %d, idle I/O class", os.nice(0))


def io_class(pid: int = 0) -> int | None:
    """Return the I/O scheduling class of process ``pid`` (0: this one), e.g.
    :data:`IOPRIO_CLASS_IDLE`; None when it cannot be read here."""
    numbers = _SYSCALLS.get(_arch())
    if numbers is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    value = int(libc.syscall(numbers[1], _IOPRIO_WHO_PROCESS, pid))
    if value < 0:
        return None
    return value >> _IOPRIO_CLASS_SHIFT


def _set_io_idle() -> bool:
    numbers = _SYSCALLS.get(_arch())
    if numbers is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    ioprio = IOPRIO_CLASS_IDLE << _IOPRIO_CLASS_SHIFT
    if libc.syscall(numbers[0], _IOPRIO_WHO_PROCESS, 0, ioprio) != 0:
        log.info("ioprio_set failed: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


def _arch() -> str:
    return platform.machine()
