"""The indexer on real documents with the tiny model: incremental runs, renames,
edits, deletions, progress, pause/stop, bad files, model change."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_THREADS, index_state, touch_later
from corpora import (
    install_test_formats,
    make_dev_zero_link,
    make_fifo,
    make_symlink_loop,
    make_vanishing_file,
)

from sr3desk.errors import IndexAccessError
from sr3desk.extract import Extractor, Limits
from sr3desk.index.indexer import Control, Indexer
from sr3desk.index.store import Store
from sr3desk.index.types import PHASE_DONE, PHASE_EMBED, PHASE_EXTRACT, IndexOptions, Progress
from sr3desk.model.ggufinfo import ModelInfo, inspect_gguf
from sr3desk.model.runtime import LlamaEmbedder, open_embedder


def test_index_then_rescan_does_nothing(
    home: Path, docs: Path, tiny_info: ModelInfo, tiny_embedder: LlamaEmbedder
) -> None:
    with Store.open(home, tiny_info, write=True) as store, Indexer(store, tiny_embedder) as ix:
        first = ix.run([docs])
        assert (first.scanned, first.indexed, first.skipped, first.stopped) == (4, 4, [], False)
        assert first.chunks_added > 4 and first.chunks_embedded == first.chunks_added
        status = store.status()
        assert (status.files, status.chunks, status.pending) == (4, first.chunks_added, 0)
        again = ix.run([docs])
        assert (again.indexed, again.unchanged, again.chunks_embedded) == (0, 4, 0)
        assert store.status().chunks == first.chunks_added
        # Chunks carry the file facts and the model's own token counts.
        hit = store.keyword_search("virtual environments", 1)[0]
        assert hit.path == str(docs / "venv.rst.txt") and hit.ext == "txt"
        vec = tiny_embedder.embed_documents([hit.text])[0]
        best = store.vector_search(vec, 1)[0]
        assert best.chunk_id == hit.chunk_id and best.score == pytest.approx(1.0, abs=1e-3)


def test_rename_and_move_are_not_read_again(
    home: Path, docs: Path, tiny_info: ModelInfo, tiny_embedder: LlamaEmbedder
) -> None:
    with Store.open(home, tiny_info, write=True) as store, Indexer(store, tiny_embedder) as ix:
        ix.run([docs])
        before = index_state(store)
        (docs / "sub").mkdir()
        os.rename(docs / "venv.rst.txt", docs / "sub" / "venv-moved.rst.txt")
        os.rename(docs / "whatnow.rst.txt", docs / "whatnext.md")
        summary = ix.run([docs])
        assert (summary.renamed, summary.indexed, summary.removed) == (2, 0, 0)
        assert summary.chunks_embedded == 0
        after = index_state(store)
        rename = {
            str(docs / "venv.rst.txt"): str(docs / "sub" / "venv-moved.rst.txt"),
            str(docs / "whatnow.rst.txt"): str(docs / "whatnext.md"),
        }
        moved = {(rename.get(p, p), t): v for (p, t), v in before["vectors"].items()}  # type: ignore[attr-defined]
        assert after["vectors"].keys() == moved.keys()  # type: ignore[attr-defined]
        for key, vec in moved.items():
            np.testing.assert_array_equal(after["vectors"][key], vec)  # type: ignore[index]
        hits = store.keyword_search("virtual environments", 3, None)
        assert hits[0].path == rename[str(docs / "venv.rst.txt")]
        assert hits[0].folder == str(docs / "sub")


def test_update_sees_a_move_whose_halves_come_apart(
    home: Path, docs: Path, tiny_info: ModelInfo, tiny_embedder: LlamaEmbedder
) -> None:
    # A move into a folder the watcher did not watch yet arrives as a creation,
    # and the deletion of the old path only in a later batch.
    with Store.open(home, tiny_info, write=True) as store, Indexer(store, tiny_embedder) as ix:
        ix.run([docs])
        old, new = docs / "venv.rst.txt", docs / "fresh" / "venv.rst.txt"
        before = store.file(str(old))
        assert before is not None
        new.parent.mkdir()
        os.rename(old, new)
        created = ix.update([new.parent])
        assert (created.renamed, created.indexed, created.chunks_embedded) == (1, 0, 0)
        deleted = ix.update([old])
        assert (deleted.removed, deleted.indexed) == (0, 0)
        after = store.file(str(new))
        assert after is not None and after.file_id == before.file_id
        assert store.file(str(old)) is None
        assert store.status().pending == 0
        # A copy (the original still exists) is read as a new file.
        shutil.copy(new, docs / "copy.rst.txt")
        copied = ix.update([docs / "copy.rst.txt"])
        assert (copied.renamed, copied.indexed) == (0, 1)


def test_edit_re_embeds_only_what_changed(
    home: Path, docs: Path, tiny_info: ModelInfo, tiny_embedder: LlamaEmbedder
) -> None:
    with Store.open(home, tiny_info, write=True) as store, Indexer(store, tiny_embedder) as ix:
        ix.run([docs])
        target = docs / "venv.rst.txt"
        n_before = store.file(str(target)).n_chunks  # type: ignore[union-attr]
        text = target.read_text(encoding="utf-8")
        touch_later(target, text + "\n\nA closing note about zanzibar lighthouses.\n")
        summary = ix.run([docs])
        assert (summary.indexed, summary.unchanged) == (1, 3)
        assert 1 <= summary.chunks_embedded < n_before
        assert store.keyword_search("zanzibar", 1)[0].path == str(target)
        assert store.status().pending == 0
        # Only re-dated: nothing is read or embedded, but filters see the new date.
        touch_later(target)
        summary = ix.run([docs])
        assert (summary.indexed, summary.chunks_embedded, summary.unchanged) == (0, 0, 4)
        assert store.file(str(target)).mtime == target.stat().st_mtime  # type: ignore[union-attr]
        assert store.keyword_search("zanzibar", 1)[0].mtime == target.stat().st_mtime


def test_deleted_files_and_folders_are_dropped(
    home: Path, docs: Path, tiny_info: ModelInfo, tiny_embedder: LlamaEmbedder
) -> None:
    with Store.open(home, tiny_info, write=True) as store, Indexer(store, tiny_embedder) as ix:
        (docs / "more").mkdir()
        shutil.copy(docs / "venv.rst.txt", docs / "more" / "copy.rst")
        ix.run([docs])
        (docs / "appetite.rst.txt").unlink()
        shutil.rmtree(docs / "more")
        summary = ix.run([docs])
        assert summary.removed == 2
        assert {r.path for r in store.files()} == {
            str(docs / n) for n in ("interpreter.rst.txt", "venv.rst.txt", "whatnow.rst.txt")
        }
        assert store.status().pending == 0
        assert all("appetite" not in h.path for h in store.keyword_search("python", 50))


def test_progress_reports_speed_and_eta(
    home: Path, docs: Path, tiny_info: ModelInfo, tiny_embedder: LlamaEmbedder
) -> None:
    reports: list[Progress] = []
    opts = IndexOptions(embed_batch=2)
    later: list[Progress] = []
    with (
        Store.open(home, tiny_info, write=True) as store,
        Indexer(store, tiny_embedder, opts) as ix,
    ):
        summary = ix.run([docs], reports.append)
        # The next run knows the speed already: its reading phase has a whole ETA.
        touch_later(docs / "venv.rst.txt", "Venv\n====\n\nNew words about tortoises.\n")
        ix.run([docs], later.append)
        assert store.write_generation.tokens_per_s
    reading = [r for r in later if r.phase == PHASE_EXTRACT and r.files_done]
    assert reading and all(r.eta_s is not None for r in reading)
    assert all(r.eta_s is None for r in reports if r.phase == PHASE_EXTRACT)
    phases = [r.phase for r in reports]
    assert phases[0] == "scan" and phases[-1] == PHASE_DONE
    extract = [r for r in reports if r.phase == PHASE_EXTRACT]
    assert extract[-1].files_done == extract[-1].files_total == 4
    embed = [r for r in reports if r.phase == PHASE_EMBED]
    assert embed[-1].chunks_embedded == embed[-1].chunks_total == summary.chunks_embedded
    measured = [r for r in embed if r.chunks_embedded]
    assert measured and all(r.tokens_per_s > 0 and r.eta_s is not None for r in measured)
    assert measured[-1].eta_s == pytest.approx(0.0, abs=1e-6)
    etas = [r.eta_s for r in measured]
    assert etas[0] >= etas[-1]  # type: ignore[operator]


def test_stop_and_pause_keep_finished_work(
    home: Path, docs: Path, tiny_info: ModelInfo, tiny_embedder: LlamaEmbedder
) -> None:
    control = Control()
    opts = IndexOptions(commit_files=1)
    with (
        Store.open(home, tiny_info, write=True) as store,
        Indexer(store, tiny_embedder, opts) as ix,
    ):

        def stop_after_two(p: Progress) -> None:
            if p.phase == PHASE_EXTRACT and p.files_done == 2:
                control.stop()

        first = ix.run([docs], stop_after_two, control)
        assert first.stopped and first.indexed == 2 and first.chunks_embedded == 0
        assert store.status().files == 2  # committed before stopping
        control.reset()
        paused_seen = threading.Event()

        def pause_in_embedding(p: Progress) -> None:
            if p.paused:
                paused_seen.set()
                threading.Timer(0.05, control.resume).start()
            elif p.phase == PHASE_EMBED and not paused_seen.is_set():
                control.pause()

        second = ix.run([docs], pause_in_embedding, control)
        assert paused_seen.is_set() and not second.stopped
        assert (second.indexed, second.unchanged) == (2, 2)
        assert store.status().pending == 0


def test_embedder_must_match_the_store(
    home: Path, tiny_embedder: LlamaEmbedder, smollm2_gguf: Callable[[str], Path]
) -> None:
    with (
        Store.open(home, inspect_gguf(smollm2_gguf("Q4_K_M")), write=True) as store,
        pytest.raises(IndexAccessError, match="embedder"),
    ):
        Indexer(store, tiny_embedder)


def test_bad_files_are_listed_and_indexing_goes_on(tmp_path: Path, home: Path) -> None:
    """Files that hang, vanish, are binary or are not files at all; keyword-only.

    (The whole reliability corpus goes through ``sr3desk index`` in tests/cli.)
    """
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.md").write_text("# Good\n\nA readable note about herons.\n")
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(bytes(range(256)) * 64)
    make_fifo(corpus)
    make_symlink_loop(corpus)
    make_dev_zero_link(corpus)
    make_vanishing_file(corpus)
    (corpus / "hangs.slow").write_text("never finishes\n")
    install_test_formats()  # this process must see .slow/.vanish as supported, too
    expected = {
        "good.md": None,
        "empty.txt": None,
        "binary.txt": "binary file",
        "pipe.txt": "FIFO",
        "loop.txt": "symbolic link loop",
        "loop.txt.other": "symbolic link loop",
        "zeros.txt": "symbolic link to outside",
        "gone.vanish": "vanished",
        "hangs.slow": "timed out",
    }
    limits = Limits(max_seconds=1, grace_seconds=1)
    extractor = Extractor(limits, worker_init=install_test_formats)
    with (
        Store.open(home, None, write=True) as store,
        Indexer(store, None, IndexOptions(), extractor=extractor) as ix,
        extractor,
    ):
        summary = ix.run([corpus])
        status = store.status()
        indexed = {os.path.relpath(r.path, corpus) for r in store.files("indexed")}
        assert store.keyword_search("herons", 1)[0].path == str(corpus / "good.md")
        again = ix.run([corpus])  # nothing is retried while nothing changed
        assert again.indexed == 0 and again.skipped == [] and again.removed == 1  # the vanished
    skipped = {os.path.relpath(p, corpus): r for p, r in status.skipped}
    for name, reason in expected.items():
        if reason is None:
            assert name in indexed, name
        else:
            assert name in skipped and reason in skipped[name], (name, skipped.get(name))
    assert len(indexed) + len(skipped) == len(expected)
    assert not summary.stopped and len(summary.skipped) == len(skipped)


def test_model_change_reindexes_and_swaps(
    home: Path,
    docs: Path,
    tiny_info: ModelInfo,
    tiny_embedder: LlamaEmbedder,
    smollm2_gguf: Callable[[str], Path],
) -> None:
    for name in ("appetite.rst.txt", "interpreter.rst.txt", "venv.rst.txt"):
        (docs / name).unlink()
    with Store.open(home, tiny_info, write=True) as store, Indexer(store, tiny_embedder) as ix:
        ix.run([docs])
    with (
        open_embedder(smollm2_gguf("Q4_K_M"), threads=TEST_THREADS, n_ctx=512) as other,
        Store.open(home, other.info, write=True) as store,
        Store.open(home) as reader,
    ):
        assert store.building and reader.read_model_id == tiny_info.model_id
        with Indexer(store, other, rebuild_roots=[str(docs)]) as ix:
            control = Control()

            def stop_at_once(p: Progress) -> None:
                if p.phase == PHASE_EMBED:
                    control.stop()

            ix.run([], stop_at_once, control)  # the user's folders are read again
            assert reader.read_model_id == tiny_info.model_id  # incomplete: old serves
            assert reader.status().building == other.model_id
            ix.run([])
        assert reader.read_model_id == other.model_id
        status = reader.status()
        assert status.building is None and status.files == 1 and status.pending == 0
        hit = reader.keyword_search("documentation", 1)[0]
        vec = other.embed_documents([hit.text])[0]
        assert reader.vector_search(vec, 1)[0].chunk_id == hit.chunk_id


def test_newest_files_are_read_first(home: Path, docs: Path) -> None:
    names = ["whatnow.rst.txt", "appetite.rst.txt", "venv.rst.txt", "interpreter.rst.txt"]
    for age, name in enumerate(names):
        os.utime(docs / name, (2_000_000 - age, 2_000_000 - age))
    order: list[str] = []

    def note(p: Progress) -> None:
        if p.phase == PHASE_EXTRACT and p.current and p.current not in order:
            order.append(p.current)

    with Store.open(home, None, write=True) as store, Indexer(store) as ix:
        ix.run([docs], note)
    assert order == [str(docs / n) for n in names]
