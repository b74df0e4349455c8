"""The LanceDB store: atomic replacement, vectors, filters, generations, repair, lock.

Vectors here are random (of the tiny model's width): the store must not care
where they come from.
"""

from __future__ import annotations

import dataclasses
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import random_unit

from sr3desk.errors import IndexAccessError, ModelRequiredError
from sr3desk.index.chunking import Chunk
from sr3desk.index.store import Store
from sr3desk.index.tables import FileWrite, new_file_id
from sr3desk.index.types import STATUS_SKIPPED, FileRecord, Filters
from sr3desk.model.ggufinfo import ModelInfo


def make_file(
    path: str, texts: list[str], mtime: float = 1000.0, file_id: str | None = None
) -> FileWrite:
    """A file record with one chunk per text."""
    chunks = [Chunk(i, t, i * 100, i * 100 + len(t), None, "Intro", 5) for i, t in enumerate(texts)]
    rec = FileRecord(
        file_id or new_file_id(), path, 100, mtime, f"hash-{path}-{len(texts)}",
        n_chunks=len(chunks), indexed_at=time.time(),
    )  # fmt: skip
    return FileWrite(rec, chunks)


def embed_all(store: Store, seed: int = 0) -> int:
    """Give every pending chunk a random vector; returns how many."""
    pending = store.pending_chunks()
    ids = pending["chunk_id"].to_pylist()
    store.write_vectors(ids, random_unit(len(ids), store.write_generation.dim or 0, seed))
    return len(ids)


def test_data_dir_private_and_readers_see_commits(home: Path, tiny_info: ModelInfo) -> None:
    with Store.open(home, tiny_info, write=True) as writer, Store.open(home) as reader:
        assert stat.S_IMODE((home / "index").stat().st_mode) == 0o700
        assert reader.keyword_search("lighthouse", 5) == []
        writer.write_files([make_file("/d/a.txt", ["the lighthouse keeper", "other words"])])
        hits = reader.keyword_search("lighthouse", 5)
        assert [h.path for h in hits] == ["/d/a.txt"]
        assert hits[0].heading == "Intro" and hits[0].score > 0
        status = reader.status()
        assert (status.files, status.chunks, status.pending, status.embedded) == (1, 2, 2, 0)
        assert status.model == tiny_info.model_id
        assert reader.embedded_fraction() == 0.0
        embed_all(writer)
        assert reader.status().pending == 0 and reader.embedded_fraction() == 1.0


def test_reader_on_missing_index_is_empty(tmp_path: Path) -> None:
    with Store.open(tmp_path / "nothing") as reader:
        assert reader.keyword_search("x", 3) == []
        assert reader.status().files == 0
        assert not (tmp_path / "nothing").exists()


def test_vector_search_scores_are_cosines_and_skip_pending(
    home: Path, tiny_info: ModelInfo
) -> None:
    dim = tiny_info.dim
    with Store.open(home, tiny_info, write=True) as store:
        store.write_files(
            [make_file(f"/d/f{i}.md", [f"text {i} a", f"text {i} b"]) for i in range(5)]
        )
        pending = store.pending_chunks()
        ids = pending["chunk_id"].to_pylist()
        vecs = random_unit(len(ids), dim, seed=3)
        store.write_vectors(ids[:6], vecs[:6])  # four chunks stay pending
        hits = store.vector_search(vecs[2], 10)
        assert len(hits) == 6
        assert hits[0].chunk_id == ids[2] and hits[0].score == pytest.approx(1.0, abs=1e-4)
        expected = sorted((float(vecs[i] @ vecs[2]) for i in range(6)), reverse=True)
        assert [h.score for h in hits] == pytest.approx(expected, abs=1e-4)
        assert [h.rank for h in hits] == list(range(6))
        with pytest.raises(IndexAccessError, match="dimensions"):
            store.vector_search(np.ones(dim + 1, np.float32), 3)


def test_filters_apply_to_both_searches(home: Path, tiny_info: ModelInfo) -> None:
    with Store.open(home, tiny_info, write=True) as store:
        store.write_files(
            [
                make_file("/docs/a/one.md", ["zebra stripes"], mtime=100.0),
                make_file("/docs/a_b/two.pdf", ["zebra crossing"], mtime=200.0),
                make_file("/docs/b/three.md", ["zebra herd"], mtime=300.0),
            ]
        )
        assert embed_all(store) == 3
        vec = random_unit(1, tiny_info.dim, seed=9)[0]
        cases = {
            Filters(folders=("/docs/a",)): {"/docs/a/one.md"},
            Filters(exts=(".PDF",)): {"/docs/a_b/two.pdf"},
            Filters(modified_after=150.0): {"/docs/a_b/two.pdf", "/docs/b/three.md"},
            Filters(modified_before=150.0): {"/docs/a/one.md"},
            Filters(folders=("/docs/a", "/docs/b"), exts=("md",)): {
                "/docs/a/one.md",
                "/docs/b/three.md",
            },
        }
        for filters, expected in cases.items():
            assert {h.path for h in store.keyword_search("zebra", 10, filters)} == expected
            assert {h.path for h in store.vector_search(vec, 10, filters)} == expected


def test_replacing_a_file_is_atomic_for_readers(home: Path, tiny_info: ModelInfo) -> None:
    """A reader polling while files are rewritten sees each file's old chunks or its
    new ones, never a mix and never none."""
    fids = [new_file_id() for _ in range(4)]
    with Store.open(home, tiny_info, write=True) as writer, Store.open(home) as reader:
        writer.write_files(
            [make_file(f"/d/{i}.txt", [f"gen0 {i} part {j}" for j in range(3)], file_id=fid)
             for i, fid in enumerate(fids)]
        )  # fmt: skip
        stop = threading.Event()
        problems: list[str] = []
        reads = 0

        def poll() -> None:
            nonlocal reads
            while not stop.is_set():
                for fid in fids:
                    gens = {h.text.split()[0] for h in reader.file_chunks(fid)}
                    if len(gens) != 1:
                        problems.append(f"{fid}: {sorted(gens)}")
                reads += 1

        thread = threading.Thread(target=poll)
        thread.start()
        try:
            for gen in range(1, 25):
                n = 1 + gen % 4  # the chunk count changes too
                writer.write_files(
                    [make_file(f"/d/{i}.txt", [f"gen{gen} {i} part {j}" for j in range(n)],
                               file_id=fid)
                     for i, fid in enumerate(fids[gen % 2 :: 2])]
                )  # fmt: skip
        finally:
            stop.set()
            thread.join()
        assert reads > 0 and problems == []


def test_unchanged_passages_keep_their_vectors(home: Path, tiny_info: ModelInfo) -> None:
    with Store.open(home, tiny_info, write=True) as store:
        first = make_file("/d/a.txt", ["alpha", "beta", "gamma"])
        store.write_files([first])
        embed_all(store)
        old = {h.text: h.chunk_id for h in store.file_chunks(first.record.file_id)}
        old_vecs = store.chunk_vectors(list(old.values()))
        # Insert a passage before the others: ordinals shift, texts stay.
        edited = make_file(
            "/d/a.txt", ["new first", "alpha", "gamma"], mtime=2000.0, file_id=first.record.file_id
        )
        store.write_files([edited])
        pending = store.pending_chunks()
        assert [store.chunk_texts(pending["_rowid"].to_pylist())] == [["new first"]]
        now = {h.text: h for h in store.file_chunks(first.record.file_id)}
        assert [h.ordinal for h in now.values()] == [0, 1, 2]
        kept = store.chunk_vectors([now["alpha"].chunk_id, now["gamma"].chunk_id])
        np.testing.assert_array_equal(kept[now["alpha"].chunk_id], old_vecs[old["alpha"]])
        assert old["beta"] not in store.chunk_vectors([old["beta"]])
        # Kept vectors carry the file's new date for filtering.
        hits = store.vector_search(old_vecs[old["alpha"]], 5, Filters(modified_after=1500.0))
        assert hits[0].text == "alpha"
        assert store.status().embedded == 2


def test_repath_moves_text_and_vectors(home: Path, tiny_info: ModelInfo) -> None:
    with Store.open(home, tiny_info, write=True) as store:
        write = make_file("/d/old/name.txt", ["moving text"])
        store.write_files([write])
        embed_all(store)
        old = write.record
        new = dataclasses.replace(old, path="/d/new/name.md", folder="/d/new", ext="md")
        store.repath([(old, new)])
        vec = store.chunk_vectors([store.file_chunks(old.file_id)[0].chunk_id])
        (v,) = vec.values()
        assert [h.path for h in store.vector_search(v, 3, Filters(exts=("md",)))] == [new.path]
        assert [h.path for h in store.keyword_search("moving", 3)] == [new.path]
        assert store.file("/d/old/name.txt") is None
        assert store.file(new.path) is not None


def test_skipped_files_are_listed(home: Path, tiny_info: ModelInfo) -> None:
    with Store.open(home, tiny_info, write=True) as store:
        rec = FileRecord(new_file_id(), "/d/bad.pdf", 10, 1.0, "", status=STATUS_SKIPPED,
                         reason="encrypted PDF")  # fmt: skip
        store.write_files([FileWrite(rec), make_file("/d/good.txt", ["fine"])])
        status = store.status()
        assert status.skipped == [("/d/bad.pdf", "encrypted PDF")]
        assert status.files == 1
        store.remove_files([rec.file_id])
        assert store.status().skipped == []


def test_open_repairs_what_a_killed_writer_left(home: Path, tiny_info: ModelInfo) -> None:
    """Commits of a batch land in three tables; a kill between them is repaired."""
    with Store.open(home, tiny_info, write=True) as store:
        keep = make_file("/d/keep.txt", ["kept passage"])
        store.write_files([keep])
        embed_all(store)
        gen = store.write_generation
        chunks, files, vectors = store.writer.chunks, store.writer.files, store.writer.vectors
        # 1. chunks committed, file row never: orphan chunks.
        orphan = make_file("/d/orphan.txt", ["orphan passage"])
        from sr3desk.index.tables import chunk_rows

        chunks.add(chunk_rows(gen.model_id, [orphan]))
        # 2. a file row that vouches for more chunks than exist.
        liar = make_file("/d/liar.txt", ["one", "two"])
        store.write_files([liar])
        chunks.delete(f"file_id = '{liar.record.file_id}'")
        # 3. a vector whose chunk is gone, and a vector stored twice.
        stray = random_unit(1, gen.dim or 0, seed=5)
        vectors.add(vectors.search().limit(1).to_arrow())  # duplicate of keep's vector
        row = vectors.search().limit(1).to_arrow().to_pylist()[0]
        row.update(chunk_id="gone-chunk", vector=stray[0].tolist())
        vectors.add([row])
        assert files.count_rows() == 2
    with Store.open(home, tiny_info, write=True) as store:
        assert store.repaired == {"chunk_files": 1, "file_rows": 1, "vectors": 2}
        status = store.status()
        assert (status.files, status.chunks, status.embedded) == (1, 1, 0)
        assert [h.text for h in store.keyword_search("passage", 5)] == ["kept passage"]
    with Store.open(home, tiny_info, write=True) as store:
        assert store.repaired == {"chunk_files": 0, "file_rows": 0, "vectors": 0}


def test_one_writer_per_data_dir(home: Path, tiny_info: ModelInfo) -> None:
    with Store.open(home, tiny_info, write=True):
        with pytest.raises(IndexAccessError, match="Another sr3desk indexer"):
            Store.open(home, tiny_info, write=True)
        with Store.open(home) as reader:  # readers never wait
            assert reader.status().files == 0
    with Store.open(home, tiny_info, write=True):
        pass


def test_model_change_builds_beside_the_served_generation(home: Path, tiny_info: ModelInfo) -> None:
    other = dataclasses.replace(tiny_info, model_id="other-model-123", name="other", dim=32)
    with Store.open(home, tiny_info, write=True) as store:
        store.write_files([make_file("/d/a.txt", ["served text"])])
        embed_all(store)
    with Store.open(home, other, write=True) as store, Store.open(home) as reader:
        assert store.building
        store.write_files([make_file("/d/a.txt", ["served text"])])
        assert reader.read_model_id == tiny_info.model_id  # the old one still serves
        status = reader.status()
        assert status.building == "other-model-123" and status.building_chunks == 1
        assert not store.complete_generation()  # not embedded yet
        embed_all(store, seed=1)
        assert store.complete_generation()
        assert reader.read_model_id == "other-model-123"
        assert reader.status().building is None
        hit = reader.vector_search(random_unit(1, 32)[0], 1)
        assert hit[0].text == "served text"
        with pytest.raises(IndexAccessError):
            reader.vector_search(random_unit(1, tiny_info.dim)[0], 1)


def test_switching_back_serves_the_kept_previous_generation_at_once(
    home: Path, tiny_info: ModelInfo
) -> None:
    from sr3desk.index.generations import Pointer
    from sr3desk.index.store import INDEX_DIR

    other = dataclasses.replace(tiny_info, model_id="other-model-123", name="other", dim=32)
    third = dataclasses.replace(tiny_info, model_id="third-model-456", name="third", dim=16)
    with Store.open(home, tiny_info, write=True) as store:
        store.write_files([make_file("/d/a.txt", ["first model text"])])
        embed_all(store)
    with Store.open(home, other, write=True) as store:
        store.write_files([make_file("/d/a.txt", ["first model text"])])
        embed_all(store, seed=1)
        assert store.complete_generation()
    with Store.open(home) as reader:
        first_hit = reader.read_model_id
        assert first_hit == "other-model-123"
        # Back to the first model: its vectors were kept, nothing is embedded again.
        with Store.open(home, tiny_info, write=True) as store:
            assert not store.building and len(store.pending_chunks()) == 0
            assert reader.read_model_id == tiny_info.model_id
            hit = reader.vector_search(random_unit(1, tiny_info.dim)[0], 1)
            assert hit[0].text == "first model text"
        # A third model: built beside, then served; the first is kept no longer.
        with Store.open(home, third, write=True) as store:
            assert store.building
            store.write_files([make_file("/d/a.txt", ["first model text"])])
            embed_all(store, seed=2)
            assert store.complete_generation()
        pointer = Pointer(home / INDEX_DIR)
        pointer.refresh()
        kept = pointer.previous
        assert kept is not None and kept.model_id == tiny_info.model_id
        retired = [pointer.meta.gens[k].model_id for k in pointer.meta.retired]
        assert retired == ["other-model-123"]
        assert not pointer.restore_previous("other-model-123")  # not the kept one
    # An unfinished generation is dropped when the kept one comes back.
    with Store.open(home, other, write=True) as store:
        assert store.building
    with Store.open(home, tiny_info, write=True) as store, Store.open(home) as reader:
        assert not store.building and reader.read_model_id == tiny_info.model_id
        assert reader.status().building is None


def test_keyword_only_generation(home: Path) -> None:
    with Store.open(home, None, write=True) as store:
        store.write_files([make_file("/d/a.txt", ["no model needed"])])
        assert len(store.pending_chunks()) == 0
        assert store.keyword_search("model", 3)[0].path == "/d/a.txt"
        with pytest.raises(ModelRequiredError):
            store.vector_search(np.ones(8, np.float32), 3)
        status = store.status()
        assert status.model is None and status.chunks == 1 and status.pending == 0


def test_optimize_compacts_and_keeps_results(home: Path, tiny_info: ModelInfo) -> None:
    with Store.open(home, tiny_info, write=True) as store:
        for i in range(30):
            store.write_files([make_file(f"/d/{i}.txt", [f"compaction word{i} shared"])])
        embed_all(store)
        before = {h.chunk_id for h in store.keyword_search("shared", 50)}
        assert store.maintenance_due()
        timings = store.optimize()
        assert "optimize_s" in timings and not store.maintenance_due()
        assert {h.chunk_id for h in store.keyword_search("shared", 50)} == before
        assert store.status().embedded == 30
        sample = store.sample_chunks(5, seed=1)
        assert len(sample) == 5 and all(h.vector is not None for h in sample)
        assert [h.chunk_id for h in store.sample_chunks(5, seed=1)] == [h.chunk_id for h in sample]
