"""``training.eval``'s rows beyond BM25 and the models: the teacher, the app's hybrid
search (BM25 fused with a model at the app's weight), seeded query samples and the
markdown table.

A small BEIR set written here: twelve passages, eight queries, each query sharing a
word with its one relevant passage, so BM25 retrieves every relevant passage and a
fused row at weight 0 must score exactly as BM25. Models: the tiny Qwen2 GGUF and
the teacher; the end-to-end run with trained models is ``test_chain.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sr3desk.model.runtime import open_embedder
from sr3desk.search.calibration import weight_from_scores
from sr3desk.search.fusion import Ranking, score_fuse
from training import eval as train_eval
from training.data.beir import BeirSet, CorpusEntry, write_beir
from training.export import convert

PASSAGES = {
    "p01": "Open a file with open() and read it line by line in a for loop.",
    "p02": "The json module parses JSON text into Python dictionaries and lists.",
    "p03": "Regular expressions in the re module match patterns in strings.",
    "p04": "A thread pool runs many tasks at once on several worker threads.",
    "p05": "Sockets let two programs talk over a network connection.",
    "p06": "The datetime module handles dates, times and time zones.",
    "p07": "Sorting a list with sorted() returns a new list in ascending order.",
    "p08": "Environment variables are read with os.environ, a mapping of strings.",
    "p09": "A virtual environment isolates the packages of one project.",
    "p10": "Unit tests check small pieces of code; unittest and pytest run them.",
    "p11": "Compress files into a zip archive with the zipfile module.",
    "p12": "Random numbers come from the random module, seeded for repeatable runs.",
}
QUERIES = {
    "q1": ("read a file line by line", "p01"),
    "q2": ("parse json into a dictionary", "p02"),
    "q3": ("match a pattern with regular expressions", "p03"),
    "q4": ("run tasks at once in threads", "p04"),
    "q5": ("time zones of dates", "p06"),
    "q6": ("sort a list", "p07"),
    "q7": ("zip archive of files", "p11"),
    "q8": ("seeded random numbers", "p12"),
}


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    """The small BEIR folder, split ``test``."""
    data = BeirSet(
        corpus={pid: CorpusEntry(pid, text) for pid, text in PASSAGES.items()},
        queries={qid: text for qid, (text, _) in QUERIES.items()},
        qrels={qid: {pid: 1} for qid, (_, pid) in QUERIES.items()},
    )
    folder = tmp_path / "beir"
    write_beir(data, folder, "test")
    return folder


def _past_eval(path: Path, rows: dict[str, float]) -> Path:
    """A ``training.eval --json`` report whose rows have these nDCG@10 figures."""
    report = {
        "dataset": "elsewhere",
        "split": "test",
        "results": {label: {"ndcg@10": ndcg} for label, ndcg in rows.items()},
    }
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def _fused_by_hand(
    keyword: dict[str, list[tuple[str, float]]], vector: np.ndarray, weight: float
) -> dict[str, list[str]]:
    """The app's fusion, written out: top 50 of each side as ChunkHits, score_fuse."""
    ids = list(PASSAGES)
    out = {}
    for row, qid in zip(vector, QUERIES, strict=True):
        order = sorted(range(len(ids)), key=lambda i: -row[i])[: train_eval.FETCH]
        vec = train_eval.chunk_hits([(ids[i], float(row[i])) for i in order])
        kw = train_eval.chunk_hits(keyword[qid][: train_eval.FETCH])
        groups = score_fuse([Ranking("keyword", kw), Ranking("vector", vec, weight)])
        out[qid] = [g.file_id for g in groups]
    return out


def test_fetch_is_the_searchers_depth() -> None:
    assert train_eval.FETCH == 50  # max(MIN_FETCH, OVERFETCH * 10) in sr3desk.search.searcher


def test_fuse_at_weight_zero_keeps_the_keyword_order(beir: Path) -> None:
    data = train_eval.load_beir(beir, "test")
    qids = data.judged_queries()
    keyword = train_eval.bm25_retrieval(data, qids).hits
    # A vector side that ranks the corpus backwards: it disagrees with BM25 everywhere.
    backwards = [(pid, 1.0 - i / 100) for i, pid in enumerate(reversed(PASSAGES))]
    vector = dict.fromkeys(qids, backwards)
    fused = train_eval.fuse_run(keyword, vector, 0.0)
    for qid in qids:
        found = [pid for pid, _ in keyword[qid]]
        assert 0 < len(found) < len(PASSAGES)
        assert fused[qid][: len(found)] == found  # the keyword list, in its order
        # then the files only the vectors found, in vector order
        assert fused[qid][len(found) :] == [p for p, _ in backwards if p not in found]
    at_one = train_eval.fuse_run(keyword, vector, 1.0)
    assert at_one != fused  # the weight does take effect


def test_fused_row_at_weight_zero_scores_as_bm25(beir: Path, tiny_gguf: Path) -> None:
    past = _past_eval(beir.parent / "past.json", {"bm25": 0.8, "tiny": 0.1})
    report = train_eval.evaluate(
        beir, {"tiny": tiny_gguf}, threads=1, fuse=["tiny"], weights_from=past
    )
    assert list(report.rows) == ["bm25", "tiny", "hybrid:tiny"]
    weight = report.fusion["hybrid:tiny"]
    assert (weight.weight, weight.source) == (0.0, train_eval.SOURCE_FILE)
    assert (weight.model_ndcg, weight.bm25_ndcg, weight.origin) == (0.1, 0.8, str(past))
    assert weight.dataset == "elsewhere (test)"
    assert report.rows["hybrid:tiny"] == report.rows["bm25"]
    assert report.rows["bm25"]["ndcg@10"] > 0.9  # the set is easy for keywords
    for qid in QUERIES:
        bm25 = report.rankings["bm25"][qid]
        assert report.rankings["hybrid:tiny"][qid][: len(bm25)] == bm25
    fusion = report.to_json()["fusion"]["hybrid:tiny"]
    assert fusion["weight"] == 0.0 and fusion["source"] == "weights-from"


def test_fused_row_takes_its_weight_from_sr3_eval(
    beir: Path, tiny_qwen2_dir: Path, tmp_path: Path
) -> None:
    metrics = {"ndcg@10": 0.45, "bm25_ndcg@10": 0.5, "dataset": "held-out set"}
    out = tmp_path / "m.F32.gguf"
    (gguf,) = convert(tiny_qwen2_dir, out, "f32", eval_metrics=metrics, verify=False)
    # The GGUF's own figures win over --weights-from, as in the app.
    past = _past_eval(tmp_path / "past.json", {"bm25": 0.8, "m": 0.1})
    report = train_eval.evaluate(beir, {"m": gguf}, threads=1, fuse=["m"], weights_from=past)
    weight = report.fusion["hybrid:m"]
    assert weight.weight == pytest.approx(0.6667)  # ratio 0.9 -> (0.9 - 0.7) / 0.3
    assert weight.source == train_eval.SOURCE_GGUF
    assert (weight.model_ndcg, weight.bm25_ndcg) == (0.45, 0.5)
    assert (weight.dataset, weight.origin) == ("held-out set", str(gguf))
    assert report.runs["m"]["eval"]["ndcg@10"] == 0.45

    # The same fusion by hand: the app's runtime, cosine, score_fuse at that weight.
    data = train_eval.load_beir(beir, "test")
    keyword = train_eval.bm25_retrieval(data, list(QUERIES)).hits
    with open_embedder(gguf, threads=1) as embedder:
        docs = embedder.embed_documents(list(PASSAGES.values()))
        queries = np.stack([embedder.embed_query(text).vector for text, _ in QUERIES.values()])
    expected = _fused_by_hand(keyword, queries @ docs.T, weight.weight)
    assert report.rankings["hybrid:m"] == expected
    assert expected != _fused_by_hand(keyword, queries @ docs.T, 0.0)  # the weight mattered
    assert report.rows["hybrid:m"] == train_eval.score_run(expected, data, list(QUERIES))


def test_teacher_row(beir: Path, teacher_env: Path, teacher: Any) -> None:
    report = train_eval.evaluate(beir, {}, threads=1, teacher=True, fuse=["teacher"])
    assert list(report.rows) == ["bm25", "teacher", "hybrid:teacher"]
    assert report.runs["teacher"]["kind"] == "teacher"
    assert report.rows["teacher"]["ndcg@10"] > 0.9  # paraphrases: easy for a real encoder
    scores = teacher.scores([t for t, _ in QUERIES.values()], list(PASSAGES.values()))
    ids = list(PASSAGES)
    for qid, row in zip(QUERIES, scores, strict=True):
        assert report.rankings["teacher"][qid][0] == ids[int(np.argmax(row))]
    # No GGUF, no --weights-from: the weight comes from this run's figures.
    weight = report.fusion["hybrid:teacher"]
    assert weight.source == train_eval.SOURCE_RUN
    assert weight.model_ndcg == report.rows["teacher"]["ndcg@10"]
    assert weight.bm25_ndcg == report.rows["bm25"]["ndcg@10"]
    assert weight.weight == weight_from_scores(weight.model_ndcg, weight.bm25_ndcg)
    assert "teacher" not in report.to_json()["sr3_eval"]  # not a GGUF


def test_sample_queries_is_seeded(beir: Path) -> None:
    def sample(seed: int) -> list[str]:
        report = train_eval.evaluate(beir, {}, sample_queries=3, seed=seed)
        assert report.n_queries == 3
        assert report.to_json()["sample"] == {"size": 3, "seed": seed, "from": 8}
        return list(report.rankings["bm25"])

    first = sample(1)
    assert first == sample(1) == train_eval.select_queries(list(QUERIES), sample=3, seed=1)
    assert first != sample(2)
    assert set(first) < set(QUERIES)
    # --max-queries first, then the sample from those
    first_four = set(list(QUERIES)[:4])
    assert set(train_eval.select_queries(list(QUERIES), 4, sample=2, seed=1)) < first_four
    assert train_eval.evaluate(beir, {}).to_json()["sample"] is None


def test_cli_markdown(
    beir: Path, tiny_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    code = train_eval.main(
        [
            "--data",
            str(beir),
            f"--model=tiny={tiny_gguf}",
            f"--model=tiny-reason={tiny_gguf}",
            "--reason=tiny-reason",
            "--max-reason-tokens=4",
            "--fuse=tiny",
            "--sample-queries=3",
            "--seed=5",
            "--threads=1",
            "--json",
            str(out),
            "--markdown",
        ]
    )
    assert code == 0
    stdout = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["sample"] == {"size": 3, "seed": 5, "from": 8}
    assert report["queries"] == 3
    lines = stdout.splitlines()
    assert lines[0] == "held-out beir (test): 3 queries (a seeded sample of 8, seed 5), 12 passages"
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| model | nDCG@10 | Recall@10 | MRR@10 | Recall@100 |"
    assert table[1] == "| --- | ---: | ---: | ---: | ---: |"
    rows = report["results"]
    labels = ["bm25", "tiny", "tiny-reason", "hybrid:tiny"]
    assert table[2:] == [
        f"| {label} | {rows[label]['ndcg@10']:.4f} | {rows[label]['recall@10']:.4f} | "
        f"{rows[label]['mrr@10']:.4f} | {rows[label]['recall@100']:.4f} |"
        for label in labels
    ]
    weight = report["fusion"]["hybrid:tiny"]
    assert weight["source"] == "this run"
    assert weight["weight"] == weight_from_scores(rows["tiny"]["ndcg@10"], rows["bm25"]["ndcg@10"])
    assert lines[-1] == f"- hybrid:tiny: {train_eval.FusionWeight(**weight).describe()}"
    assert "results:" not in stdout  # stdout is the markdown alone
    # One GGUF under two labels: its passages are embedded once.
    assert report["runs"]["tiny-reason"]["reason"] is True
    assert report["runs"]["tiny-reason"]["max_reason_tokens"] == 4
    assert report["runs"]["tiny"]["max_reason_tokens"] is None
    assert report["runs"]["tiny"]["docs_per_s"] > 0
    assert report["runs"]["tiny-reason"]["docs_per_s"] is None
    assert set(report["sr3_eval"]) == {"tiny", "tiny-reason"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fuse=nope"], "cannot fuse 'nope'"),
        (["--fuse=teacher"], "(add --teacher)"),
        (["--fuse=bm25-only", "--model=bm25-only=x.gguf", "--model=bm25-only=y.gguf"], "twice"),
    ],
)
def test_cli_rejects_bad_rows(
    beir: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_eval.main(["--data", str(beir), *args]) == 2
    assert message in capsys.readouterr().err
