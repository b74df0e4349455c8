"""An index written by the previous release (layout 1: vectors beside the filter
columns only) opens, serves, and is upgraded by the next indexing run, with
progress, losing nothing; an upgrade killed at either step is finished later."""

from __future__ import annotations

import json
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from conftest import random_unit
from test_store import make_file

from sr3desk.index import maintenance
from sr3desk.index.connection import Connection
from sr3desk.index.generations import LAYOUT, META_FILE, Pointer
from sr3desk.index.indexer import Indexer
from sr3desk.index.store import Store
from sr3desk.index.tables import split_vectors_schema, vector_array
from sr3desk.index.types import PHASE_UPGRADE, IndexOptions, Progress
from sr3desk.model.ggufinfo import ModelInfo


def write_layout1_index(home: Path, info: ModelInfo, n_files: int = 6) -> dict[str, np.ndarray]:
    """Write an index as the previous release did; returns its vectors by chunk id.

    Files and chunks have the same tables in both layouts, so they are written
    through the store; the vectors go into ``vectors_<key>`` with the old schema
    (chunk id, file id, the filter columns, model id, vector), and the pointer
    is rewritten as the old release wrote it (version 1, no layout field).
    """
    with Store.open(home, info, write=True) as store:
        gen = store.write_generation
        store.write_files(
            [
                make_file(f"/d/f{i}.md", [f"otter {i} alpha", f"beaver {i} beta"])
                for i in range(n_files)
            ]
        )
        pending = store.pending_chunks()
        ids = pending["chunk_id"].to_pylist()
        facts = (
            store.writer.chunks.search()
            .select(["chunk_id", "file_id", "path", "folder", "ext", "mtime"])
            .limit(None)
            .to_arrow()
        )
    vecs = random_unit(len(ids), info.dim, seed=7)
    by_id = dict(zip(ids, vecs, strict=True))
    order = facts["chunk_id"].to_pylist()
    db = lancedb.connect(str(home / "index"))
    db.drop_table(gen.vectors_table)
    rows = {name: facts[name] for name in facts.column_names}
    rows["model_id"] = pa.array([info.model_id] * len(order))
    rows["vector"] = vector_array(np.stack([by_id[c] for c in order]), info.dim)
    db.create_table(f"vectors_{gen.key}", pa.table(rows, schema=split_vectors_schema(info.dim)))
    meta_path = home / "index" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["version"] = 1
    for raw in meta["gens"].values():
        del raw["layout"]
    meta_path.write_text(json.dumps(meta))
    return by_id


def test_old_index_serves_then_upgrades_with_progress(home: Path, tiny_info: ModelInfo) -> None:
    vectors = write_layout1_index(home, tiny_info)
    query = next(iter(vectors.values()))
    with Store.open(home) as reader:
        before = reader.vector_search(query, 3)
        assert before[0].score == pytest.approx(1.0, abs=1e-5) and before[0].text
        assert [h.path for h in reader.keyword_search("otter", 20)]
        partial = reader.vector_search(query, 3, with_text=False)
        assert partial[0].partial and reader.complete_hits(partial)[0].text == before[0].text
        reports: list[Progress] = []
        with Store.open(home, tiny_info, write=True) as store:
            assert store.upgrade_due
            with Indexer(store, None, IndexOptions()) as indexer:
                indexer.run([], reports.append)
            assert not store.upgrade_due and store.write_generation.layout == LAYOUT
        upgrade = [r for r in reports if r.phase == PHASE_UPGRADE]
        assert upgrade[-1].chunks_embedded == upgrade[-1].chunks_total == len(vectors)
        # The open reader follows the switch; nothing was lost or changed.
        after = reader.vector_search(query, 3)
        assert [(h.chunk_id, h.text) for h in after] == [(h.chunk_id, h.text) for h in before]
        assert reader.chunk_vectors(list(vectors)).keys() == vectors.keys()
        for cid, vec in reader.chunk_vectors(list(vectors)).items():
            np.testing.assert_allclose(vec, vectors[cid], atol=1e-6)
        assert not reader.vector_search(query, 1, with_text=False)[0].partial
    conn = Connection(home / "index")
    assert not [n for n in conn.names() if n.startswith("vectors_")]


def test_upgrade_killed_at_either_step_is_finished(home: Path, tiny_info: ModelInfo) -> None:
    vectors = write_layout1_index(home, tiny_info)
    conn, pointer = Connection(home / "index"), Pointer(home / "index")
    pointer.refresh(force=True)
    old = pointer.active
    assert old is not None and old.outdated
    # Killed while filling the new table: a partial table, the pointer unchanged.
    done: list[int] = []

    def killed(n: int, total: int) -> None:
        done.append(n)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        maintenance.upgrade_layout(conn, pointer, old, killed)
    assert done and Pointer(home / "index").refresh(force=True)
    with Store.open(home) as reader:
        assert reader.chunk_vectors(list(vectors)).keys() == vectors.keys()
    # Killed after the switch, before the old table was dropped.
    new = maintenance.upgrade_layout(conn, pointer, old)
    conn.create(old.vectors_table, split_vectors_schema(tiny_info.dim))
    with Store.open(home, tiny_info, write=True) as store:
        assert store.write_generation.layout == new.layout == LAYOUT and not store.upgrade_due
        assert store.repaired == {"chunk_files": 0, "file_rows": 0, "vectors": 0}
    assert old.vectors_table not in Connection(home / "index").names()
    with Store.open(home) as reader:
        assert reader.chunk_vectors(list(vectors)).keys() == vectors.keys()
        hit = reader.vector_search(next(iter(vectors.values())), 1)[0]
        assert hit.text and not hit.partial


def test_writes_to_an_old_layout_need_the_upgrade(home: Path, tiny_info: ModelInfo) -> None:
    write_layout1_index(home, tiny_info, n_files=1)
    with Store.open(home, tiny_info, write=True) as store:
        with pytest.raises(Exception, match="older layout"):
            store.write_files([make_file("/d/new.md", ["new words"])])
        store.upgrade_layout()
        store.write_files([make_file("/d/new.md", ["new words"])])
        ids = store.pending_chunks()["chunk_id"].to_pylist()
        assert store.write_vectors(ids, random_unit(len(ids), tiny_info.dim)) == 1
