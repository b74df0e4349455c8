from __future__ import annotations

from pathlib import Path

import pytest
from searchhits import ranked

from sr3desk.search.calibration import (
    MIN_QUERIES,
    SOURCE_CALIBRATION,
    SOURCE_EVAL,
    SOURCE_UNMEASURED,
    WEIGHT_GRID,
    CalibrationCache,
    CalibrationRun,
    PseudoQuery,
    VectorWeight,
    from_eval,
    gain_bound,
    index_identity,
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


def test_eval_figures_count_only_on_the_index_they_were_measured_on(tmp_path: Path) -> None:
    here = index_identity(tmp_path)
    figures = {"ndcg@10": 0.85, "bm25_ndcg@10": 0.8}
    assert from_eval(figures, index=here) is None  # measured elsewhere
    assert from_eval({**figures, "index": "/somewhere/else"}, index=here) is None
    tuned = from_eval({**figures, "index": str(tmp_path / "." / "")}, index=here)
    assert tuned is not None and tuned.weight == 1.0


def _run(kw: list[list[str]], vec: list[list[str]]) -> CalibrationRun:
    # Ranked lists without meaningful scores: judged with rank fusion.
    queries = [PseudoQuery(f"q{i}", "a", None, "sentence") for i in range(len(kw))]
    return CalibrationRun(queries, [ranked(*k) for k in kw], [ranked(*v) for v in vec], rrf_fuse)


def test_calibration_weak_model_gets_zero() -> None:
    n = MIN_QUERIES + 4
    run = _run([["a", "b"]] * n, [["x", "y", "z"]] * n)
    assert run.ndcg(None) == 1.0 and run.ndcg(-1.0) == 0.0
    w = weight_from_run(run, embedded=500)
    assert w.source == SOURCE_CALIBRATION and w.weight == 0.0
    assert w.keyword_score == 1.0 and w.model_score == 0.0
    assert w.gain_bound is not None and w.gain_bound <= 0.0


def test_calibration_good_model_gets_the_weight_with_the_surest_gain() -> None:
    n = MIN_QUERIES + 8
    # Keyword search finds "a" second half of the time; the model always first.
    kw = [["a", "b"] if i % 2 else ["b", "a"] for i in range(n)]
    run = _run(kw, [["a", "c"]] * n)
    w = weight_from_run(run, embedded=500)
    assert w.weight > 0.0
    assert w.fused_score is not None and w.fused_score > run.ndcg(None)
    assert w.gain_bound is not None and w.gain_bound > 0.0
    # No other weight of the grid has a surer gain.
    kw_scores = run.ndcgs(None)
    best = max(gain_bound(run.ndcgs(c), kw_scores) for c in WEIGHT_GRID)
    assert w.gain_bound == pytest.approx(best, abs=1e-4)


def test_a_gain_on_a_few_queries_only_is_noise() -> None:
    # The model helps on 2 queries of 20 and changes nothing elsewhere: a real gain
    # on these queries, but too small and too rare to be sure of: keyword ranking.
    kw = [["b", "a"]] * 2 + [["a", "b"]] * 18
    run = _run(kw, [["a", "x"]] * 20)
    assert run.ndcg(1.0) > run.ndcg(None)
    assert weight_from_run(run, embedded=500).weight == 0.0
    # The same gain on every query is sure: the model takes part.
    sure = _run([["b", "a"]] * 20, [["a", "x"]] * 20)
    assert weight_from_run(sure, embedded=500).weight > 0.0


def test_a_model_that_helps_some_queries_and_hurts_others_gets_zero() -> None:
    # 11 queries: keyword right, the model puts "b" first and never finds "a";
    # 9 queries: only the model finds "a". Any weight that lets the model win the
    # 9 also makes it lose the 11.
    kw = [["a", "b"]] * 11 + [["c", "d"]] * 9
    vec = [["b", "x"]] * 11 + [["a"]] * 9
    run = _run(kw, vec)
    assert weight_from_ratio(run.mrr(-1.0) / run.mrr(None)) > 0.3
    w = weight_from_run(run, embedded=500)
    assert w.weight == 0.0
    assert w.fused_score == pytest.approx(run.ndcg(None))


def test_a_model_that_only_ties_gets_zero() -> None:
    # Keyword search right on every query; fused at any weight the keyword order
    # stands. A model that helps nowhere is left out, even one as good as keywords.
    n = MIN_QUERIES + 4
    for vec in ([["a", "b"] if i % 4 else ["b", "a"] for i in range(n)], [["a", "c"]] * n):
        run = _run([["a", "b"]] * n, vec)
        assert all(run.ndcg(w) == run.ndcg(None) for w in WEIGHT_GRID)
        assert weight_from_run(run, embedded=500).weight == 0.0


def test_too_few_queries_is_unmeasured() -> None:
    run = _run([["a"]] * 3, [["a"]] * 3)
    w = weight_from_run(run, embedded=10)
    assert w.source == SOURCE_UNMEASURED and w.weight == 0.0
    assert "too few" in w.describe()


def test_staleness() -> None:
    w = VectorWeight(0.5, SOURCE_CALIBRATION, 0.5, 0.6, 40, embedded=1000)
    assert not stale(w, 1000) and not stale(w, 1499) and not stale(w, 700)
    assert stale(w, 1501) and stale(w, 600)
    small = VectorWeight(0.0, SOURCE_UNMEASURED, embedded=10)
    assert not stale(small, 40) and stale(small, 61)


def test_cache_roundtrip_per_model_and_size(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "cal.json")
    assert cache.get("m1", 100) is None
    w = VectorWeight(0.25, SOURCE_CALIBRATION, 0.4, 0.6, 40, embedded=100)
    cache.put("m1", w)
    cache.put("m2", VectorWeight(1.0, SOURCE_CALIBRATION, 0.9, 0.6, 40, embedded=100))
    assert cache.get("m1", 149) == w
    assert cache.get("m1", 151) is None  # index grew by half: measure again
    assert cache.get("m2", 100) is not None and cache.get("m3", 100) is None
    (tmp_path / "cal.json").write_text("{not json")
    assert cache.get("m1", 100) is None
