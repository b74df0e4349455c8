from __future__ import annotations

from pathlib import Path

import pytest
from searchhits import ranked

from sr3desk.search.calibration import (
    MIN_QUERIES,
    SOURCE_CALIBRATION,
    SOURCE_EVAL,
    SOURCE_UNMEASURED,
    CalibrationCache,
    CalibrationRun,
    PseudoQuery,
    VectorWeight,
    from_eval,
    stale,
    weight_from_ratio,
    weight_from_run,
    weight_from_scores,
)
from sr3desk.search.fusion import rrf_fuse


def test_mapping_endpoints_and_monotone() -> None:
    # The measured cases: untrained model 0.10 vs BM25 0.80, a small good model 0.85 vs 0.80.
    assert weight_from_scores(0.10, 0.80) == 0.0
    assert weight_from_scores(0.85, 0.80) == 1.0
    assert weight_from_scores(0.80, 0.80) == 1.0
    # The untrained model on pseudo-queries (flattered by shared words): still 0.
    assert weight_from_scores(0.51, 0.81) == 0.0
    ratios = [i / 20 for i in range(0, 30)]
    weights = [weight_from_ratio(r) for r in ratios]
    assert weights == sorted(weights)
    assert all(0.0 <= w <= 1.0 for w in weights)
    assert weight_from_ratio(0.85) == pytest.approx(0.5)


def test_mapping_when_keyword_finds_nothing() -> None:
    assert weight_from_scores(0.3, 0.0) == 1.0
    assert weight_from_scores(0.0, 0.0) == 0.0


def test_from_eval() -> None:
    w = from_eval({"ndcg@10": 0.1, "bm25_ndcg@10": 0.8, "dataset": "held-out"})
    assert w is not None and w.source == SOURCE_EVAL and w.weight == 0.0
    assert "0.10 vs keyword 0.80 (held-out)" in w.describe()
    good = from_eval({"ndcg@10": "0.85", "bm25_ndcg@10": 0.8})
    assert good is not None and good.weight == 1.0
    assert from_eval(None) is None
    assert from_eval({"ndcg@10": 0.5}) is None
    assert from_eval({"ndcg@10": "n/a", "bm25_ndcg@10": 0.8}) is None
    assert from_eval({"ndcg@10": 7, "bm25_ndcg@10": 0.8}) is None


def _run(kw: list[list[str]], vec: list[list[str]]) -> CalibrationRun:
    # Ranked lists without meaningful scores: judged with rank fusion.
    queries = [PseudoQuery(f"q{i}", "a", None, "sentence") for i in range(len(kw))]
    return CalibrationRun(queries, [ranked(*k) for k in kw], [ranked(*v) for v in vec], rrf_fuse)


def test_calibration_weak_model_gets_zero() -> None:
    n = MIN_QUERIES + 4
    run = _run([["a", "b"]] * n, [["x", "y", "z"]] * n)
    assert run.mrr(None) == 1.0 and run.mrr(-1.0) == 0.0
    w = weight_from_run(run, embedded=500)
    assert w.source == SOURCE_CALIBRATION and w.weight == 0.0
    assert w.keyword_score == 1.0 and w.model_score == 0.0


def test_calibration_good_model_gets_full_weight() -> None:
    n = MIN_QUERIES + 4
    # Keyword search finds "a" second half of the time; the model always first.
    kw = [["a", "b"] if i % 2 else ["b", "a"] for i in range(n)]
    run = _run(kw, [["a", "c"]] * n)
    w = weight_from_run(run, embedded=500)
    assert w.weight == 1.0
    assert w.fused_score is not None and w.fused_score >= run.mrr(None)


def test_guard_takes_a_smaller_weight_when_full_weight_hurts() -> None:
    # 12 queries: keyword has "a" first, the model "b" first and "a" third; 8 queries:
    # keyword misses "a", the model has it first. MRR .6 both: mapped weight 1.0, but
    # fused at 1.0 "b" wins the 12 (MRR .5 < .6). At 0.5 "a" stays first: MRR .73.
    kw = [["a", "b"]] * 12 + [["c", "d"]] * 8
    vec = [["b", "x", "a"]] * 12 + [["a"]] * 8
    run = _run(kw, vec)
    assert run.mrr(None) == pytest.approx(0.6) and run.mrr(-1.0) == pytest.approx(0.6)
    assert run.mrr(1.0) < run.mrr(None)
    w = weight_from_run(run, embedded=500)
    assert w.weight == 0.5
    assert w.fused_score is not None and w.fused_score >= run.mrr(None)


def test_guard_gives_zero_when_every_weight_hurts() -> None:
    # 11 queries: keyword right, the model puts "b" first and never finds "a";
    # 9 queries: only the model finds "a". Ratio .82 maps to .39, yet any weight
    # that lets the model win the 9 also makes it lose the 11.
    kw = [["a", "b"]] * 11 + [["c", "d"]] * 9
    vec = [["b", "x"]] * 11 + [["a"]] * 9
    run = _run(kw, vec)
    assert weight_from_ratio(run.mrr(-1.0) / run.mrr(None)) > 0.3
    w = weight_from_run(run, embedded=500)
    assert w.weight == 0.0
    assert w.fused_score == pytest.approx(run.mrr(None))


def test_weaker_model_that_only_ties_gets_zero() -> None:
    # Keyword search right on every query; the model right on 3 of 4 (ratio .8 maps
    # to weight .33), and fused at any weight the keyword order stands: a tie. A
    # model worse than keywords that helps nowhere is left out.
    n = MIN_QUERIES + 4
    vec = [["a", "b"] if i % 4 else ["b", "a"] for i in range(n)]
    run = _run([["a", "b"]] * n, vec)
    assert weight_from_ratio(run.mrr(-1.0) / run.mrr(None)) > 0.3
    assert all(run.mrr(w) == run.mrr(None) for w in (0.33, 0.165, 0.0825))
    w = weight_from_run(run, embedded=500)
    assert w.weight == 0.0


def test_model_as_good_as_keywords_may_tie() -> None:
    n = MIN_QUERIES + 4
    run = _run([["a", "b"]] * n, [["a", "c"]] * n)
    assert run.mrr(1.0) == run.mrr(None) == 1.0
    assert weight_from_run(run, embedded=500).weight == 1.0


def test_too_few_queries_is_unmeasured() -> None:
    run = _run([["a"]] * 3, [["a"]] * 3)
    w = weight_from_run(run, embedded=10)
    assert w.source == SOURCE_UNMEASURED and w.weight == 0.0
    assert "too few" in w.describe()


def test_staleness() -> None:
    w = VectorWeight(0.5, SOURCE_CALIBRATION, 0.5, 0.6, 40, embedded=1000)
    assert not stale(w, 1000) and not stale(w, 1999) and not stale(w, 600)
    assert stale(w, 2001) and stale(w, 400)
    small = VectorWeight(0.0, SOURCE_UNMEASURED, embedded=10)
    assert not stale(small, 40) and stale(small, 61)


def test_cache_roundtrip_per_model_and_size(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "cal.json")
    assert cache.get("m1", 100) is None
    w = VectorWeight(0.25, SOURCE_CALIBRATION, 0.4, 0.6, 40, embedded=100)
    cache.put("m1", w)
    cache.put("m2", VectorWeight(1.0, SOURCE_CALIBRATION, 0.9, 0.6, 40, embedded=100))
    assert cache.get("m1", 150) == w
    assert cache.get("m1", 250) is None  # index more than doubled: measure again
    assert cache.get("m2", 100) is not None and cache.get("m3", 100) is None
    (tmp_path / "cal.json").write_text("{not json")
    assert cache.get("m1", 100) is None
