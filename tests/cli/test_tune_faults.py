"""After a winning `sr3desk tune`: the re-embedding it starts, killed or undone mid-way.

The switch makes the tuned model the default; ``sr3desk index``, started detached,
builds its generation while the previous one serves. Search must serve the previous
generation with the previous model until the new one is complete, then the new one;
a SIGKILL of the re-embedding mid-way must leave the previous generation serving and
let the next index run finish the new one; ``tune --undo`` mid-way must return to the
previous model at once. Real processes: the tiny Qwen2 model, a few SFT steps, the
app's indexer; the re-embedding has the Python HOWTOs (some 800 passages) to embed, so
that it is seen mid-way, between its commits of vectors, for seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from corpora import TUNE_DOCS as DOCS
from test_tune import served_by

from sr3desk.cli import main
from sr3desk.index.background import INDEX_LOG, INDEX_PROCESS, start_background_index
from sr3desk.index.generations import META_FILE
from sr3desk.index.lock import LOCK_FILE
from sr3desk.index.store import INDEX_DIR, Store
from sr3desk.index.types import IndexStatus
from sr3desk.model.ggufinfo import inspect_gguf
from sr3desk.settings import Settings

MORE = "howto"  # remembered after the first index: only the new generation reads it
MORE_TERM = "curses"  # in the HOWTOs (curses.rst), in none of the tutorial pages
TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, python_docs_sources: Path
) -> Path:
    """``docs/``: 8 tutorial pages, indexed in ``home/`` by the tiny model (the default);
    ``more/``: the Python HOWTOs, not indexed."""
    root = tmp_path_factory.mktemp("tune-faults")
    (root / "docs").mkdir()
    for name in DOCS:
        src = python_docs_sources / "tutorial" / f"{name}.rst.txt"
        shutil.copy(src, root / "docs" / src.name)
    shutil.copytree(python_docs_sources / MORE, root / "more")
    home = root / "home"
    home.mkdir()
    Settings(threads=1, model_path=str(tiny_gguf)).save(home)
    assert main(["index", str(root / "docs"), "--db", str(home)]) == 0
    return root


@pytest.fixture(scope="module")
def switched(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory after a winning tune that started no re-embedding: the tuned
    model is the default, the index serves the tiny model's generation."""
    home = tmp_path_factory.mktemp("switched") / "home"
    shutil.copytree(corpus / "home", home)
    # Any tuned model clears a margin of -1 (as in test_tune): the winning branch.
    tune = ["tune", "--db", str(home), "--no-teacher", "--no-index", "--margin", "-1"]
    assert main([*tune, "--steps", "3"]) == 0
    assert Path(Settings.load(home).model_path or "").is_relative_to(home / "models")
    return home


def copy_home(src: Path, dst: Path, corpus: Path) -> Path:
    """``src`` copied to ``dst``, remembering both folders of ``corpus``, its default
    model (when ``src`` holds it) named at its new place; returns ``dst``."""
    shutil.copytree(src, dst)
    settings = Settings.load(dst)
    settings.folders = [str(corpus / "docs"), str(corpus / "more")]
    model = Path(settings.model_path or "")
    if model.is_relative_to(src):
        settings.model_path = str(dst / model.relative_to(src))
    settings.save(dst)
    return dst


def running(pid: int) -> bool:
    """True while the child ``pid`` runs (it is reaped once it has ended)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == 0
    except ChildProcessError:  # reaped already
        return False


def wait_ended(pid: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while running(pid):
        assert time.monotonic() < deadline, f"pid {pid} still runs after {TIMEOUT_S:.0f} s"
        time.sleep(0.1)


def wait_mid_way(home: Path, pid: int) -> IndexStatus:
    """Wait until the generation being built has some but not all of its passages
    embedded (committed); returns the index status then."""
    deadline = time.monotonic() + TIMEOUT_S
    with Store.open(home) as reader:
        while True:
            status = reader.status()
            if status.building and 0 < status.building_embedded < status.building_chunks:
                return status
            log = (home / INDEX_LOG).read_text(errors="replace")
            assert running(pid), f"the re-embedding ended before it was half way:\n{log}"
            assert time.monotonic() < deadline, f"not half way in {TIMEOUT_S:.0f} s:\n{log}"
            time.sleep(0.1)


def served_part(status: IndexStatus) -> tuple[object, ...]:
    """What ``status`` says of the generation that serves."""
    return (status.model, status.files, status.chunks, status.embedded, status.pending)


def status_json(home: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["status", "--db", str(home), "--json"]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def keyword_paths(home: Path, term: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Paths ``sr3desk search --mode keyword`` finds for ``term``, best first."""
    assert main(["search", term, "--db", str(home), "--mode", "keyword", "--json"]) == 0
    return [r["path"] for r in json.loads(capsys.readouterr().out)["results"]]


def test_tune_starts_reembedding_and_the_old_generation_serves_until_it_completes(
    corpus: Path, tiny_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = copy_home(corpus / "home", tmp_path / "home", corpus)
    tune = ["tune", "--db", str(home), "--no-teacher", "--margin", "-1", "--steps", "3"]
    assert main(tune) == 0
    assert "its vectors are being built" in capsys.readouterr().out
    tuned = Path(Settings.load(home).model_path or "")
    old_id, tuned_id = inspect_gguf(tiny_gguf).model_id, inspect_gguf(tuned).model_id
    pid = json.loads((home / INDEX_PROCESS).read_text())["pid"]
    try:
        wait_mid_way(home, pid)
        # Its indexer frozen mid-way, so that these queries cannot race its swap. That
        # is the process holding the writer lock: `python -m sr3desk index` runs it as a
        # child and reports its crashes (sr3desk.model.crash).
        writer = int((home / LOCK_FILE).read_text())
        os.kill(writer, signal.SIGSTOP)
        status = status_json(home, capsys)
        assert (status["model"], status["building"]) == (old_id, tuned_id)
        assert str(tiny_gguf) in served_by(home, tiny_gguf, capsys)  # "still served by"
        assert keyword_paths(home, "interpreter", capsys)  # keywords serve too
        assert keyword_paths(home, MORE_TERM, capsys) == []  # more/ is not in it
        os.kill(writer, signal.SIGCONT)
        wait_ended(pid)
    finally:
        if running(pid):
            os.killpg(pid, signal.SIGKILL)
    assert "Indexed" in (home / INDEX_LOG).read_text()
    status = status_json(home, capsys)
    assert (status["model"], status["building"], status["pending"]) == (tuned_id, None, 0)
    assert status["files"] == len(DOCS) + len(list((corpus / "more").iterdir()))
    assert "served by" not in served_by(home, tuned, capsys)
    assert keyword_paths(home, MORE_TERM, capsys)[0].startswith(str(corpus / "more"))

    # Undo after the swap: the previous model's vectors were kept, so they serve again
    # at once, with nothing to embed (what changed on disk since waits for the next run).
    assert main(["tune", "--db", str(home), "--undo"]) == 0
    capsys.readouterr()
    status = status_json(home, capsys)
    assert (status["model"], status["building"], status["pending"]) == (old_id, None, 0)
    assert "served by" not in served_by(home, tiny_gguf, capsys)
    assert not (home / INDEX_PROCESS).exists() or not running(
        json.loads((home / INDEX_PROCESS).read_text())["pid"]
    )


def test_killed_reembedding_leaves_the_old_generation_and_the_next_run_finishes(
    switched: Path,
    corpus: Path,
    tiny_gguf: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = copy_home(switched, tmp_path / "home", corpus)
    tuned = Path(Settings.load(home).model_path or "")
    with Store.open(home) as reader:
        before = reader.status()
    pid = start_background_index(home, Settings.load(home))
    assert pid is not None
    try:
        wait_mid_way(home, pid)
    finally:
        os.killpg(pid, signal.SIGKILL)
        wait_ended(pid)
    with Store.open(home) as reader:
        killed = reader.status()
    # It died mid-way; the served generation is untouched and whole.
    assert killed.building == inspect_gguf(tuned).model_id
    assert 0 < killed.building_embedded < killed.building_chunks
    assert served_part(killed) == served_part(before)
    assert killed.embedded == killed.chunks and killed.pending == 0
    assert str(tiny_gguf) in served_by(home, tiny_gguf, capsys)
    assert Settings.load(home).model_path == str(tuned)

    # The next index run resumes: it embeds only what the killed one had not committed.
    assert main(["index", *Settings.load(home).folders, "--db", str(home)]) == 0
    out = capsys.readouterr().out
    found = re.search(r"\((\d+) chunks, (\d+) embedded\)", out)
    assert found is not None, out
    assert int(found[2]) == killed.building_chunks - killed.building_embedded
    status = status_json(home, capsys)
    assert (status["model"], status["building"], status["pending"]) == (killed.building, None, 0)
    assert status["chunks"] == killed.building_chunks
    assert "served by" not in served_by(home, tuned, capsys)


def test_undo_mid_reembedding_returns_to_the_previous_model_at_once(
    switched: Path,
    corpus: Path,
    tiny_gguf: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = copy_home(switched, tmp_path / "home", corpus)
    with Store.open(home) as reader:
        before = reader.status()
    pid = start_background_index(home, Settings.load(home))
    assert pid is not None
    try:
        wait_mid_way(home, pid)
        assert main(["tune", "--undo", "--db", str(home)]) == 0
        # The re-embedding is gone when undo returns: it can no longer swap its
        # generation in behind the previous model.
        assert not running(pid)
    finally:
        if running(pid):
            os.killpg(pid, signal.SIGKILL)
    assert capsys.readouterr().out == f"default model: {tiny_gguf}\n"
    assert Settings.load(home).model_path == str(tiny_gguf)
    assert status_json(home, capsys)["model"] == before.model
    assert "served by" not in served_by(home, tiny_gguf, capsys)  # the default serves

    # The next index run with the previous model drops the unfinished generation and
    # has nothing to embed in the one that serves.
    assert main(["index", str(corpus / "docs"), "--db", str(home)]) == 0
    assert "(0 chunks, 0 embedded)" in capsys.readouterr().out
    with Store.open(home) as reader:
        after = reader.status()
    assert after.building is None and served_part(after) == served_part(before)
    meta = json.loads((home / INDEX_DIR / META_FILE).read_text())
    assert meta["building"] is None and list(meta["gens"]) == [meta["active"]]
