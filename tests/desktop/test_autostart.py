"""Background indexing's service: the autostart entry written and removed, and the
watcher it starts: low priority, one per data directory, waiting for the index lock."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from configparser import ConfigParser
from pathlib import Path

from xdgdirs import XdgDirs

from sr3desk.desktop.autostart import (
    autostart_path,
    install_autostart,
    remove_autostart,
    watcher_command,
)
from sr3desk.desktop.priority import IOPRIO_CLASS_IDLE, io_class
from sr3desk.index import watchstatus
from sr3desk.index.lock import WriterLock
from sr3desk.index.store import Store
from sr3desk.settings import Settings


def wait_status(home: Path, ok: Callable[[watchstatus.WatchStatus], bool], timeout: float = 120):
    """The watcher's status once ``ok`` holds for it (polling its file)."""
    deadline = time.monotonic() + timeout
    while True:
        status = watchstatus.read_status(home)
        if status is not None and ok(status):
            return status
        assert time.monotonic() < deadline, f"status now: {status}"
        time.sleep(0.05)


def test_service_file_is_written_valid_and_removed(
    xdg: XdgDirs, validate: Callable[[Path], None], tmp_path: Path
) -> None:
    home = tmp_path / "my data"
    home.mkdir()
    path = install_autostart(home)
    assert path == xdg.config / "autostart" / "sr3desk-watch.desktop"
    validate(path)
    parser = ConfigParser(interpolation=None)
    parser.read(path)
    argv = shlex.split(parser["Desktop Entry"]["Exec"].replace("\\\\", "\\"))
    assert argv == watcher_command(home)
    assert argv[-4:] == ["watch", "--background", "--db", str(home.resolve())]
    assert remove_autostart() == path
    assert not path.exists() and remove_autostart() is None


def test_the_services_watcher_is_polite_single_and_waits_for_the_lock(
    xdg: XdgDirs, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "otters.md").write_text("Otters hold hands while they sleep.\n")
    home = tmp_path / "data"
    home.mkdir()
    Settings(folders=[str(docs)], threads=1, first_run_done=True).save(home)
    install_autostart(home)
    parser = ConfigParser(interpolation=None)
    parser.read(autostart_path())
    argv = shlex.split(parser["Desktop Entry"]["Exec"])
    # The window's indexer holds the index: the service waits instead of failing.
    held = WriterLock(home)
    held.acquire()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status = wait_status(home, lambda s: s.state == watchstatus.WAITING)
        assert f"(pid {held_pid(home)})" in status.message
        pid = status.pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(fields[16]) == 19  # nice
        assert io_class(pid) == IOPRIO_CLASS_IDLE
        # A second start (a login while it runs, the window) leaves at once.
        second = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0 and "already runs" in second.stdout
        held.release()
        wait_status(home, lambda s: s.state == watchstatus.WATCHING)
        with Store.open(home) as store:
            assert store.keyword_search("otters", 1)
        (docs / "beavers.md").write_text("Beavers build dams of branches.\n")
        status = wait_status(home, lambda s: s.updates >= 1 and s.update["indexed"] >= 1)
        with Store.open(home) as store:
            assert store.keyword_search("beavers", 1)[0].path == str(docs / "beavers.md")
        # Pause and resume arrive as signals and show in the status.
        proc_signal(pid, signal.SIGUSR1)
        wait_status(home, lambda s: s.paused)
        proc_signal(pid, signal.SIGUSR2)
        wait_status(home, lambda s: not s.paused)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert watchstatus.read_status(home).state == watchstatus.STOPPED  # type: ignore[union-attr]
        assert watchstatus.live_status(home) is None
    finally:
        held.release()
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in (proc.stdout.read() if proc.stdout else "")


def held_pid(home: Path) -> int:
    """The pid written in the index lock (this test's process holds it)."""
    return int((home / "index.lock").read_text())


def proc_signal(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid``, as the window does."""
    os.kill(pid, sig)


def test_status_moves_only_along_its_table(tmp_path: Path) -> None:
    writer = watchstatus.StatusWriter(tmp_path, ["/x"], background=True)
    writer.transition(watchstatus.INDEXING)
    try:
        writer.transition(watchstatus.WAITING)
    except ValueError as exc:
        assert "indexing -> waiting" in str(exc)
    else:
        raise AssertionError("indexing -> waiting was allowed")
    writer.transition(watchstatus.WATCHING)
    status = watchstatus.live_status(tmp_path)
    assert status is not None and status.state == watchstatus.WATCHING
    writer.transition(watchstatus.STOPPED)
    assert watchstatus.live_status(tmp_path) is None
    assert json.loads((tmp_path / watchstatus.STATUS_FILE).read_text())["state"] == "stopped"
