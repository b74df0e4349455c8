"""An indexing run started in the background, detached, and stopped when unwanted.

After a model switch (:mod:`sr3desk.tuning`) the new default model's generation is
built at once by ``sr3desk index``, run as a detached process while the old
generation serves. :func:`start_background_index` remembers it in
``<data dir>/tune-index.json`` (its pid and command line, its output in
``tune-index.log``) so that the next switch, or going back, can stop it with
:func:`stop_background_index`: its model is then no longer wanted.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

INDEX_LOG = "tune-index.log"  # the output of the re-embedding a switch starts
INDEX_PROCESS = "tune-index.json"  # that re-embedding's pid and command line
STOP_TIMEOUT_S = 10.0  # the longest a killed re-embedding takes to be gone

# The re-embeddings this process started, by pid: kept so that they are reaped (the
# window outlives them) and never garbage-collected while they run.
_started: dict[int, subprocess.Popen[bytes]] = {}


class BackgroundSettings(Protocol):
    """The settings a background run is started from (``sr3desk.settings.Settings``
    has them)."""

    @property
    def folders(self) -> list[str]: ...

    @property
    def model_path(self) -> str | None: ...


def start_background_index(home: Path, settings: BackgroundSettings) -> int | None:
    """Start ``sr3desk index`` over the remembered ``settings.folders`` with the default
    model ``settings.model_path``, detached, so that its generation is built while the
    old one serves; returns its pid (None: no folder or no default model). One an
    earlier switch started is stopped first. Its output goes to
    ``<home>/tune-index.log``; its pid and command line to ``tune-index.json``, for
    :func:`stop_background_index`."""
    stop_background_index(home)
    # A folder gone from the disk would fail the whole run; the indexer still reads
    # every remembered one that exists (they are its rebuild roots).
    folders = [f for f in settings.folders if os.path.exists(f)]
    if not folders or not settings.model_path:
        return None
    # The model is named: `index` would prefer $SR3DESK_MODEL to the new default.
    command = [sys.executable, "-m", "sr3desk", "index", "--db", str(home)]
    command += ["--model", settings.model_path, *folders]
    with (home / INDEX_LOG).open("ab") as logfile:
        proc = subprocess.Popen(
            command,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    for pid in [pid for pid, child in _started.items() if child.poll() is not None]:
        del _started[pid]
    _started[proc.pid] = proc
    tmp = home / f".{INDEX_PROCESS}.part"
    tmp.write_text(json.dumps({"pid": proc.pid, "command": command}), encoding="utf-8")
    os.replace(tmp, home / INDEX_PROCESS)
    log.info("re-embedding for %s started (pid %d)", settings.model_path, proc.pid)
    return proc.pid


def stop_background_index(home: Path) -> bool:
    """Kill the re-embedding :func:`start_background_index` started in ``home`` (its
    whole process group) if it still runs, and wait until it is gone; returns True when
    it was running. The index is made to survive a kill at any instant; a gentler stop
    would still commit its last vectors and could complete the unwanted generation."""
    record = home / INDEX_PROCESS
    try:
        raw = json.loads(record.read_text(encoding="utf-8"))
        pid, command = int(raw["pid"]), [str(a) for a in raw["command"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    running = _runs(pid, command)
    if running:
        log.info("stopping the re-embedding (pid %d)", pid)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            running = False
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    child = _started.pop(pid, None)
    if child is not None and running:
        try:
            child.wait(STOP_TIMEOUT_S)  # reaped: our own child
        except subprocess.TimeoutExpired:
            log.warning("the re-embedding (pid %d) did not end when killed", pid)
    record.unlink(missing_ok=True)
    return running


def _runs(pid: int, command: list[str]) -> bool:
    """True when ``pid`` is alive and runs ``command`` (not a process that got the pid
    of one long gone). Only Linux's /proc tells; elsewhere nothing is killed."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return _alive(pid) and cmdline.split(b"\0")[:-1] == [os.fsencode(a) for a in command]


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and has not exited (a zombie waiting to be reaped by
    its parent has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])
