"""Reporting a crash of the native library (llama.cpp) in one line.

A fault inside llama.cpp kills the process that loaded it: Python cannot catch
it, and the shell would print a bare "Segmentation fault". So work that loads a
model runs in a child process (the CLI through :func:`supervise`, the window's
indexing through its own child), and the parent turns the child's death by a
signal into one line naming the native library, the model, the exit code and
what to try.

How the parent knows the model: the child is given a note file in
``SR3DESK_CRASH_NOTE``, and every model load (:func:`note_model`, called by
``sr3desk.model.native.load_model``) writes the model's path there first.

This module imports nothing heavy: the supervising parent stays a small process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

NOTE_ENV = "SR3DESK_CRASH_NOTE"
SUPERVISED_ENV = "SR3DESK_SUPERVISED"
REPACK_ENV = "SR3DESK_LLAMA_REPACK"
_PR_SET_PDEATHSIG = 1
_SI_KERNEL = 0x80  # si_code of a signal the terminal sent (Ctrl-C), not kill()
# Passed on to the child: stop (INT, TERM) and `sr3desk watch`'s controls (HUP: look for
# changes now; USR1/USR2: pause/resume), so the supervisor's pid can be signalled too.
FORWARDED = frozenset(
    {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2}
)


def note_model(path: str | os.PathLike[str]) -> None:
    """Record that ``path`` is being loaded, for a crash report by the parent."""
    note = os.environ.get(NOTE_ENV)
    if not note:
        return
    # Best effort: a report without the model name is still a report.
    with contextlib.suppress(OSError), open(note, "a", encoding="utf-8") as f:
        f.write(f"{os.fspath(path)}\n")


def read_note(note: str | os.PathLike[str] | None) -> str | None:
    """The last model the child noted in ``note`` (a path), or None."""
    if note is None:
        return None
    try:
        lines = Path(note).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return lines[-1] if lines else None


def signal_name(signum: int) -> str:
    """``SIGSEGV`` for 11, and so on; ``signal N`` for numbers Python does not name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def crash_message(signum: int, model: str | None, what: str) -> str:
    """One line for a child that ``what`` names (e.g. "sr3desk embed") killed by ``signum``.

    Returns the text the user sees; the exit code given is the shell's, 128 + signum.
    """
    name = signal_name(signum)
    if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        # Killed from outside (out of memory, logout, kill): not a native fault.
        return f"{what} was stopped by {name} (exit code {128 + signum})"
    subject = f"with model {model}" if model else "before loading a model"
    return (
        f"{what} crashed in the native library llama.cpp {subject} ({name}, exit code "
        f"{128 + signum}). Try {REPACK_ENV}=off (keeps llama.cpp's repacked/AMX weight "
        "buffers off) or the model's F16 file, and report it with the output of -vv"
    )


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    if sys.platform.startswith("linux"):
        # The child dies with its parent: killing the command kills the work.
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def supervise(argv: Sequence[str], what: str, program: Sequence[str] | None = None) -> int:
    """Run ``python -m sr3desk ARGV`` as a child and report a native crash in one line.

    Takes the command-line arguments, a name for messages and the program to run
    them with (default: this interpreter with ``-m sr3desk``); returns the exit code
    to exit with: the child's own, or 128 + the signal that killed it (with the line
    written to stderr). The :data:`FORWARDED` signals sent with kill() are passed on;
    a Ctrl-C or hangup from the terminal reaches the child directly (same process
    group) and is not sent twice.
    """
    fd, note = tempfile.mkstemp(prefix="sr3desk-crash-", suffix=".txt")
    os.close(fd)
    env = dict(os.environ, **{NOTE_ENV: note, SUPERVISED_ENV: "1"})
    watched = {*FORWARDED, signal.SIGCHLD}
    # Blocked before the child starts, so no signal is lost between spawn and wait.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    old_chld = signal.signal(signal.SIGCHLD, _ignore)
    try:
        child = subprocess.Popen(
            [*(program or (sys.executable, "-m", "sr3desk")), *argv],
            env=env,
            preexec_fn=_child_setup,  # safe: the parent has no other threads
        )
        code = _wait(child)
    finally:
        signal.signal(signal.SIGCHLD, old_chld)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        model = read_note(note)
        with contextlib.suppress(OSError):
            os.unlink(note)
    if code >= 0:
        return code
    sys.stderr.write(f"sr3desk: error: {crash_message(-code, model, what)}\n")
    return 128 - code


def _ignore(signum: int, frame: FrameType | None) -> None:
    return None


def _wait(child: subprocess.Popen[bytes]) -> int:
    watched = [*FORWARDED, signal.SIGCHLD]
    while True:
        code = child.poll()
        if code is not None:
            return code
        info = signal.sigtimedwait(watched, 0.5)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        if info.si_code == _SI_KERNEL:
            continue  # Ctrl-C or hangup: the terminal sent it to the child as well
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(info.si_signo)


__all__ = [
    "FORWARDED",
    "NOTE_ENV",
    "REPACK_ENV",
    "SUPERVISED_ENV",
    "crash_message",
    "note_model",
    "read_note",
    "signal_name",
    "supervise",
]
