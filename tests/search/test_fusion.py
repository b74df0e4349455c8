from __future__ import annotations

import pytest
from searchhits import ranked

from sr3desk.search.fusion import RRF_K, Ranking, file_ranks, group_hits, rrf_fuse, score_fuse


def files(groups: list) -> list[str]:
    return [g.file_id for g in groups]


def test_file_rank_is_rank_of_best_passage() -> None:
    hits = ranked("a#0", "b#0", "a#1", "c#0")
    assert file_ranks(hits) == {"a": 1, "b": 2, "c": 3}


def test_rrf_agreement_beats_one_list() -> None:
    kw = ranked("a", "b", "c")
    vec = ranked("b", "d", "a")
    groups = rrf_fuse([Ranking("keyword", kw), Ranking("vector", vec)])
    # b: 1/62 + 1/61, a: 1/61 + 1/63, d: 1/62, c: 1/63
    assert files(groups) == ["b", "a", "d", "c"]
    assert groups[0].ranks == {"keyword": 2, "vector": 1}
    expected = (1 / (RRF_K + 2) + 1 / (RRF_K + 1)) / (2 / (RRF_K + 1))
    assert groups[0].score == pytest.approx(expected)


def test_first_in_every_list_scores_one() -> None:
    groups = rrf_fuse([Ranking("keyword", ranked("a", "b")), Ranking("vector", ranked("a"), 0.3)])
    assert groups[0].score == pytest.approx(1.0)


def test_zero_weight_keeps_keyword_order_and_appends_vector_only_files() -> None:
    kw = ranked("a", "b", "c")
    vec = ranked("x", "c", "y", "a")
    groups = rrf_fuse([Ranking("keyword", kw), Ranking("vector", vec, 0.0)])
    assert files(groups) == ["a", "b", "c", "x", "y"]
    assert [g.score for g in groups[3:]] == [0.0, 0.0]


def test_small_weight_reorders_close_keyword_ranks() -> None:
    kw = ranked("a", "b")
    vec = ranked("b")
    assert files(rrf_fuse([Ranking("keyword", kw), Ranking("vector", vec, 0.5)])) == ["b", "a"]


def test_passages_grouped_best_first_and_merged_across_lists() -> None:
    kw = ranked("a#3", "b#0", "a#1")
    vec = ranked("a#1", "a#7")
    groups = rrf_fuse([Ranking("keyword", kw), Ranking("vector", vec)])
    a = groups[0]
    assert a.file_id == "a"
    # a#1 is in both lists (ranks 3 and 1) and beats a#3 (keyword rank 1 only).
    assert [c.hit.chunk_id for c in a.chunks] == ["a#1", "a#3", "a#7"]
    assert a.chunks[0].ranks == {"keyword": 3, "vector": 1}
    assert a.best.chunk_id == "a#1"


def test_one_file_with_many_passages_does_not_swamp() -> None:
    kw = ranked("long#0", "long#1", "long#2", "long#3", "short#0")
    vec = ranked("short#0", "long#4")
    groups = rrf_fuse([Ranking("keyword", kw), Ranking("vector", vec)])
    # File level: long is (1, 2), short is (2, 1): a tie broken by keyword rank.
    assert files(groups) == ["long", "short"]
    assert groups[0].score == pytest.approx(groups[1].score)


def test_negative_weight_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        rrf_fuse([Ranking("keyword", ranked("a"), -1.0)])


def test_empty_lists() -> None:
    assert rrf_fuse([Ranking("keyword", []), Ranking("vector", [])]) == []
    assert group_hits([]) == []


def test_group_hits_keeps_order_and_store_scores() -> None:
    hits = ranked("a#0", "b#0", "a#1")
    groups = group_hits(hits, "keyword")
    assert files(groups) == ["a", "b"]
    assert groups[0].score == 3.0
    assert [c.hit.chunk_id for c in groups[0].chunks] == ["a#0", "a#1"]
    assert groups[1].ranks == {"keyword": 2}


def test_score_fuse_normalises_and_weights() -> None:
    kw = ranked("a", "b", "c")  # scores 3, 2, 1 -> 1, .5, 0
    vec = ranked("c", "b")  # scores 2, 1 -> 1, 0
    equal = score_fuse([Ranking("keyword", kw), Ranking("vector", vec)])
    assert files(equal) == ["a", "c", "b"]
    assert equal[0].score == pytest.approx(0.5)
    keyword_only = score_fuse([Ranking("keyword", kw), Ranking("vector", vec, 0.0)])
    assert files(keyword_only) == ["a", "b", "c"]


def test_blind_items_get_an_imputed_vote() -> None:
    # "new" is not embedded yet: the vector list cannot see it. Without imputation
    # the embedded "old" (keyword 2nd, vector 1st) beats it; with it, keyword 1st
    # and an assumed equal vector vote puts "new" first.
    kw = ranked("new#0", "old#0")
    vec = ranked("old#0", "other#0")
    plain = rrf_fuse([Ranking("keyword", kw), Ranking("vector", vec)])
    assert files(plain)[0] == "old"
    blind = frozenset({"new", "new#0"})
    fair = rrf_fuse([Ranking("keyword", kw), Ranking("vector", vec, 1.0, blind)])
    assert files(fair) == ["new", "old", "other"]
    assert fair[0].score == pytest.approx(1.0)
    assert fair[0].chunks[0].score == pytest.approx(1.0)
    scored = score_fuse([Ranking("keyword", kw), Ranking("vector", vec, 1.0, blind)])
    assert files(scored)[0] == "new"
