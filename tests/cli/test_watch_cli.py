"""`sr3desk watch`: indexes, honours --max-mb, follows changes, stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sr3desk.index.store import Store


def test_watch_follows_changes_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "first.md").write_text("The first note mentions otters.\n")
    (docs / "big.md").write_text("Walruses. " * 3000)  # 30 KB: over the limit below
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sr3desk", "watch", str(docs), "--db", str(home),
         "--debounce", "0.2", "--max-mb", "0.02"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Watching for changes"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(180), "".join(lines)
        assert lines[0].startswith("Indexed 1 file (1 chunks") and "1 skipped" in lines[0]
        assert f"  {docs / 'big.md'}: exceeds " in "".join(lines)
        (docs / "second.md").write_text("The second note mentions beavers.\n")
        deadline = time.monotonic() + 60
        with Store.open(home) as store:
            while not store.keyword_search("beavers", 1):
                assert time.monotonic() < deadline, "".join(lines)
                time.sleep(0.1)
            assert store.keyword_search("beavers", 1)[0].path == str(docs / "second.md")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    assert any(line.startswith("Updated: 1 read") for line in lines), lines
    assert lines[-1] == "Stopped watching.\n"
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
