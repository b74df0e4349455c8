"""Deep search: the re-ranking stage, alone and in the searcher, with the real cross-encoder."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from searchcorpus import BagOfWordsEmbedder

from sr3desk.index.store import Store
from sr3desk.search import Searcher, SearchRequest
from sr3desk.search.deep import DeepRanker, passage_text
from sr3desk.search.rerank import Cancelled, CrossEncoder, default_reranker_dir, open_reranker
from sr3desk.search.searcher import NO_RERANKER
from sr3desk.search.types import FileResult, Passage

# Queries that describe a page in other words than its own (the cross-encoder's job).
DESCRIBED = [
    ("how can I turn bytes into text that survives email", "base64"),
    ("spreadsheet rows saved as plain text with commas", "csv"),
    ("compute a fingerprint of a file such as sha256", "hashlib"),
    ("ask the user for a secret without showing it on screen", "getpass"),
    ("split a command line into words like a unix shell does", "shlex"),
]


def names(results: Sequence[FileResult]) -> list[str]:
    return [Path(r.path).name.split(".")[0] for r in results]


class WordScorer:
    """A stand-in cross-encoder for the stage's bookkeeping: counts query words in the
    passage and records every call, so the tests can see what was scored."""

    name = "words"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score(
        self,
        query: str,
        passages: Sequence[str],
        cancel: Callable[[], bool] | None = None,
        max_tokens: int = 512,
    ) -> np.ndarray:
        if cancel is not None and cancel():
            raise Cancelled()
        self.calls.append(list(passages))
        terms = set(query.lower().split())
        return np.array(
            [sum(w in terms for w in p.lower().split()) for p in passages], dtype=np.float32
        )


def result(name: str, text: str, score: float, chunk: str | None = None) -> FileResult:
    passage = Passage(chunk or f"{name}:0", text, text, [], None, 0, len(text), "", score)
    return FileResult(f"/docs/{name}.txt", name, "txt", "/docs", 0.0, len(text), score, [passage])


@pytest.fixture
def first_stage() -> list[FileResult]:
    texts = ["nothing here", "red apples", "green apples and red pears", "pears", "plums"]
    return [result(f"f{i}", t, 1.0 - i / 10) for i, t in enumerate(texts)]


def test_the_top_files_are_reranked_and_the_rest_keep_their_order_below(
    first_stage: list[FileResult],
) -> None:
    ranker = DeepRanker(WordScorer(), top=3, first_stage=0.0)
    out, stats = ranker.rerank("red apples", first_stage)
    assert names(out) == ["f1", "f2", "f0", "f3", "f4"]
    assert (stats.files, stats.pairs, stats.cached) == (3, 3, 0)
    scores = [r.score for r in out]
    assert scores == sorted(scores, reverse=True)  # the scores tell the order, tail included
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_the_first_stage_rank_keeps_a_share(first_stage: list[FileResult]) -> None:
    # The cross-encoder ranks f1, f2, f0; blended at 0.3 with the first stage's f0, f1,
    # f2: f1 0.7/1 + 0.3/2 = 0.85, f0 0.7/3 + 0.3/1 = 0.53, f2 0.7/2 + 0.3/3 = 0.45.
    out, _ = DeepRanker(WordScorer(), top=3, first_stage=0.3).rerank("red apples", first_stage)
    assert names(out)[:3] == ["f1", "f0", "f2"]
    assert [round(r.score, 3) for r in out[:3]] == [0.85, 0.533, 0.45]
    assert out[1].passages[0].score == 0.5  # a passage keeps its own relevance: sigmoid(0)


def test_scores_are_cached_per_query_and_passage(first_stage: list[FileResult]) -> None:
    scorer = WordScorer()
    ranker = DeepRanker(scorer, top=3)
    first, _ = ranker.rerank("red apples", first_stage)
    again, stats = ranker.rerank("red  apples", first_stage)  # same query, spaced differently
    assert len(scorer.calls) == 1 and stats.cached == 3
    assert names(again) == names(first)
    # A changed passage has a new id (ids hash the text): it is scored again, alone.
    changed = [*first_stage]
    changed[0] = result("f0", "red apples red apples", 1.0, chunk="f0:new")
    out, stats = ranker.rerank("red apples", changed)
    assert scorer.calls[-1] == ["red apples red apples"] and stats.cached == 2
    assert names(out)[0] == "f0"


def test_cancel_stops_the_reranking(first_stage: list[FileResult]) -> None:
    with pytest.raises(Cancelled):
        DeepRanker(WordScorer()).rerank("red", first_stage, cancel=lambda: True)


def test_the_heading_is_read_with_the_passage() -> None:
    p = Passage("c", "Use -n to count.", "", [], None, 0, 0, "wc › Options", 1.0)
    assert passage_text(p) == "wc › Options\nUse -n to count."


@pytest.fixture(scope="module")
def cross_encoder() -> Iterator[CrossEncoder]:
    if not default_reranker_dir().is_dir():
        pytest.fail(
            f"the cross-encoder is not installed in {default_reranker_dir()}: run `make setup`",
            pytrace=False,
        )
    with open_reranker(threads=2) as encoder:
        yield encoder


def test_deep_search_without_a_model(bow_store: Store, cross_encoder: CrossEncoder) -> None:
    searcher = Searcher(bow_store, None, reranker=cross_encoder)
    found = 0
    for query, page in DESCRIBED:
        response = searcher.search(SearchRequest(query, mode="keyword", k=5, deep=True))
        assert response.deep and set(response.stages) == {"search", "rerank"}
        assert response.took_ms >= response.stages["rerank"] > 0
        found += names(response.results)[:1] == [page]
    keyword = Searcher(bow_store, None)
    plain = sum(
        names(keyword.search(SearchRequest(q, mode="keyword", k=5)).results)[:1] == [p]
        for q, p in DESCRIBED
    )
    assert found >= max(plain, len(DESCRIBED) - 1), (found, plain)


def test_deep_hybrid_and_rerank_of_a_shown_response(
    bow_store: Store, cross_encoder: CrossEncoder, tmp_path: Path
) -> None:
    searcher = Searcher(bow_store, BagOfWordsEmbedder(), home=tmp_path, reranker=cross_encoder)
    query, page = DESCRIBED[2]
    instant = searcher.search(SearchRequest(query, k=30))
    assert not instant.deep and "rerank" not in instant.stages
    deep = searcher.rerank(instant)
    assert deep.deep and names(deep.results)[0] == page
    assert sorted(names(deep.results)) == sorted(names(instant.results))  # same files
    assert instant.stages.keys() == {"search"}  # the shown response is left as it was
    one_call = searcher.search(SearchRequest(query, k=5, deep=True))
    assert names(one_call.results) == names(deep.results)[:5]


def test_no_cross_encoder_gives_the_instant_results_and_says_why(bow_store: Store) -> None:
    searcher = Searcher(bow_store, None)
    request = SearchRequest("persistent dictionary", mode="keyword", k=5)
    deep = searcher.search(SearchRequest(request.query, mode="keyword", k=5, deep=True))
    assert not deep.deep and NO_RERANKER in deep.notes
    assert names(deep.results) == names(searcher.search(request).results)
