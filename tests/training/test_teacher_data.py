"""The teacher at build time: it filters pseudo-queries and mines hard negatives."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import BuildConfig
from training.data.batches import load_train_set
from training.data.beir import load_beir
from training.data.build import build_dataset
from training.data.filtering import teacher_ranks
from training.data.mining import read_negatives
from training.data.teacher_vectors import TEACHER_VECTORS, read_teacher_vectors


def test_teacher_filters_queries_and_mines_negatives(
    jargon: Path, tmp_path: Path, teacher_env: Path
) -> None:
    common = {"sources": [str(jargon)], "max_files": 50, "chunk_tokens": 96, "seed": 1}
    plain = build_dataset(BuildConfig(**common, miner="none", negatives=0), tmp_path / "plain")
    k = 3
    cfg = BuildConfig(**common, miner="teacher", negatives=2, teacher_filter_k=k)
    built = build_dataset(cfg, tmp_path / "teacher")
    counts, before = built["counts"], plain["counts"]
    # Some queries are dropped, only from training, and exactly those the manifest counts.
    assert counts["teacher_filtered"] > 0
    assert counts["train_queries"] == before["train_queries"] - counts["teacher_filtered"]
    assert counts["heldout_queries"] == before["heldout_queries"]

    train = load_beir(tmp_path / "teacher" / "train", "train")
    vectors = read_teacher_vectors(tmp_path / "teacher" / "train" / TEACHER_VECTORS)
    assert vectors is not None
    ranks = teacher_ranks(train, vectors)
    assert ranks and max(ranks.values()) < k  # every kept query is found by the teacher

    negatives = read_negatives(tmp_path / "teacher" / "train" / "negatives.jsonl")
    assert set(negatives) == set(train.judged_queries())
    ids = list(train.corpus)
    for qid, negs in negatives.items():
        relevant = {d for d, r in train.qrels[qid].items() if r > 0}
        assert len(negs) == 2 and not relevant & set(negs)
        # Hardest first, and the teacher's best non-relevant passages.
        scores = vectors.scores([qid], ids)[0]
        others = sorted((s for i, s in zip(ids, scores, strict=True) if i not in relevant))
        got = vectors.scores([qid], negs)[0]
        assert got[0] >= got[1] and np.isclose(got[0], others[-1], atol=1e-3)
    # The training set reads the mined negatives, and the vectors cover it.
    data = load_train_set(tmp_path / "teacher" / "train")
    assert vectors.covers([e.query_id for e in data.examples], list(data.corpus))
