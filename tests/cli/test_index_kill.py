"""`sr3desk index` killed with SIGKILL at random moments ends as a clean index would.

The indexer runs as a real subprocess on a real corpus (the Python tutorial's
reST sources) with the tiny model. It is killed at a random moment of its work
at least 20 times and restarted each time; between some runs the tree changes
(edits, a rename, a deletion, a new file) so that there is always work to
interrupt. Then one run finishes, and the result is compared with a clean index
of the final tree built from scratch: same files, same chunks, no duplicates,
every chunk with exactly one vector, the same vectors.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sr3desk.index.store import Store
from sr3desk.index.types import IndexStatus

KILLS = 20
SR3DESK = [sys.executable, "-m", "sr3desk"]
# The indexer logs this (with -v) once the store and the model are open and the
# walk begins: kills are timed from there, so that they land in the work itself.
STARTED = "Indexing "
MAX_DELAY = 4.0  # seconds of work before the kill, drawn uniformly


def make_home(path: Path) -> Path:
    """A data directory whose settings keep llama.cpp to one thread."""
    path.mkdir(parents=True)
    (path / "settings.json").write_text(json.dumps({"threads": 1}))
    return path


def index_cmd(home: Path, model: Path, tree: Path) -> list[str]:
    return [*SR3DESK, "-v", "index", str(tree), "--db", str(home), "--model", str(model)]


def run_and_kill(cmd: list[str], delay: float, timeout: float = 300.0) -> tuple[bool, float]:
    """Start ``cmd``; SIGKILL it ``delay`` s after it starts working.

    Returns (killed, seconds it worked); killed is False when it finished first.
    """
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace"
    )
    started = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if STARTED in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not started.wait(timeout):
        proc.kill()
        pytest.fail("the indexer did not start:\n" + "".join(lines[-20:]))
    t0 = time.monotonic()
    try:
        proc.wait(delay)
        worked = time.monotonic() - t0
        reader.join(5)
        assert proc.returncode == 0, "".join(lines[-30:])
        return False, worked
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        reader.join(5)
        assert proc.returncode == -signal.SIGKILL
        return True, delay


def mutate(tree: Path, spare: list[Path], rng: random.Random, step: int) -> None:
    """Change the tree a little: edit two files, and add, rename or delete one."""
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    for path in rng.sample(files, k=min(2, len(files))):
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"\n\nEdit {step}: a paragraph about interrupted indexing number {step}.\n")
        later = max(time.time(), path.stat().st_mtime + 1)
        os.utime(path, (later, later))
    action = step % 3
    if action == 0 and spare:
        source = spare.pop()
        shutil.copy(source, tree / source.name)
    elif action == 1:
        victim = rng.choice(files)
        (tree / "moved").mkdir(exist_ok=True)
        victim.rename(tree / "moved" / f"{step}-{victim.name}")
    elif action == 2 and len(files) > 8:
        rng.choice(files).unlink()


@dataclass
class Snapshot:
    """What a finished index is compared on."""

    files: dict[str, tuple[str, str, str, int]]
    chunks: list[tuple[str, int, str]]
    ids: list[str]
    vectors: dict[tuple[str, int], np.ndarray]
    status: IndexStatus


def snapshot(home: Path) -> Snapshot:
    """Files, chunks and vectors of the index in ``home``."""
    with Store.open(home) as store:
        files = {r.path: (r.status, r.reason, r.content_hash, r.n_chunks) for r in store.files()}
        chunks: list[tuple[str, int, str]] = []
        ids: list[str] = []
        where: dict[str, tuple[str, int]] = {}
        for rec in store.files():
            for hit in store.file_chunks(rec.file_id):
                chunks.append((hit.path, hit.ordinal, hit.text))
                ids.append(hit.chunk_id)
                where[hit.chunk_id] = (hit.path, hit.ordinal)
        vectors = {where[cid]: vec for cid, vec in store.chunk_vectors(ids).items()}
        status = store.status()
    return Snapshot(files, chunks, ids, vectors, status)


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_clean_index(
    tmp_path: Path, tiny_gguf: Path, python_docs_sources: Path
) -> None:
    tree = tmp_path / "tutorial"
    tree.mkdir()
    for source in sorted((python_docs_sources / "tutorial").glob("*.rst.txt"))[:10]:
        shutil.copy(source, tree / source.name)
    spare = sorted((python_docs_sources / "faq").glob("*.rst.txt"))[:8]
    home = make_home(tmp_path / "home")
    cmd = index_cmd(home, tiny_gguf, tree)
    rng = random.Random(20240611)
    kills = 0
    runs = 0
    log: list[str] = []
    max_delay = MAX_DELAY
    while kills < KILLS:
        runs += 1
        assert runs < 3 * KILLS, "the indexer keeps finishing before it can be killed"
        delay = rng.uniform(0.05, max_delay)
        killed, worked = run_and_kill(cmd, delay)
        kills += killed
        if not killed:
            # An incremental run has little to do and, on a fast machine, ends before
            # most kill moments: draw the next ones within the length of such a run.
            max_delay = max(0.1, min(max_delay, 0.9 * worked))
        log.append(f"run {runs}: {'killed' if killed else 'finished'} after {worked:.2f} s")
        if not killed or rng.random() < 0.3:
            mutate(tree, spare, rng, runs)
    print("\n".join(log))

    finished, _ = run_and_kill(cmd, delay=600)
    assert not finished
    clean_home = make_home(tmp_path / "clean")
    run_and_kill(index_cmd(clean_home, tiny_gguf, tree), delay=600)

    got, want = snapshot(home), snapshot(clean_home)
    assert got.files == want.files  # same files, hashes, chunk counts
    assert sorted(got.chunks) == sorted(want.chunks)
    assert len(set(got.ids)) == len(got.ids)  # no duplicates
    assert got.vectors.keys() == want.vectors.keys() and len(got.vectors) == len(got.chunks)
    for key, vec in want.vectors.items():
        np.testing.assert_allclose(got.vectors[key], vec, atol=1e-4)
    assert got.status.pending == 0 and got.status.chunks == len(got.chunks)
    assert not list((home / "index").glob("*.tmp"))
