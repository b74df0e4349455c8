"""The searcher on a real index of Python docs pages (real extractor, chunker, store)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from searchcorpus import NEW_MTIME, OLD_MTIME, BagOfWordsEmbedder, Corpus, NoiseEmbedder

from sr3desk.errors import ModelRequiredError
from sr3desk.index.store import Store
from sr3desk.index.types import Filters
from sr3desk.search import Mode, Searcher, SearchRequest
from sr3desk.search.calibration import (
    CACHE_FILE,
    SOURCE_CALIBRATION,
    SOURCE_EVAL,
    WEIGHT_GRID,
    index_identity,
    pseudo_queries,
)
from sr3desk.search.text import parse_query, stem

# (query, page that answers it): queries in words of the page's text.
QUERIES = [
    ("encode binary data to printable ASCII characters", "base64"),
    ("read and write tabular data in comma separated values format", "csv"),
    ("secure hash and message digest algorithms", "hashlib"),
    ("universally unique identifiers as specified in RFC 4122", "uuid"),
    ("display web-based documents to users in a browser", "webbrowser"),
    ("lexical analyzer for simple shell-like syntaxes", "shlex"),
    ("prompt for a password without echoing", "getpass"),
    ("persistent dictionary of pickled objects", "shelve"),
]


def paths(response: object) -> list[str]:
    return [r.path for r in response.results]  # type: ignore[attr-defined]


def names(response: object) -> list[str]:
    return [Path(p).name.split(".")[0] for p in paths(response)]


@pytest.fixture
def noise_store(corpus: Corpus) -> Iterator[Store]:
    with corpus.store("noise") as store:
        yield store


@pytest.fixture
def partial_store(corpus: Corpus) -> Iterator[Store]:
    with corpus.store("partial") as store:
        yield store


@pytest.mark.parametrize(("query", "page"), QUERIES)
def test_keyword_mode_needs_no_model(bow_store: Store, query: str, page: str) -> None:
    response = Searcher(bow_store, None).search(SearchRequest(query, mode="keyword", k=5))
    assert names(response)[0] == page
    assert len(set(paths(response))) == len(response.results)  # one entry per file
    scores = [r.score for r in response.results]
    assert scores == sorted(scores, reverse=True)
    best = response.results[0]
    assert 1 <= len(best.passages) <= 3
    assert all(Path(r.path).is_absolute() for r in response.results)
    stems = parse_query(query).stems
    marked = [best.best.snippet[s:e] for s, e in best.best.highlights]
    assert marked and all(stem(m) in stems for m in marked)
    assert best.best.snippet.strip("…") in " ".join(best.best.text.split())


def test_modes_without_model_say_how_to_set_one(bow_store: Store) -> None:
    searcher = Searcher(bow_store, None)
    modes: tuple[Mode, ...] = ("hybrid", "vector")
    for mode in modes:
        with pytest.raises(ModelRequiredError, match="needs an embedding model") as err:
            searcher.search(SearchRequest("json", mode=mode))
        assert "--model" in str(err.value) and "--mode keyword" in str(err.value)


def test_lexical_model_calibrated_and_cached(bow_store: Store, tmp_path: Path) -> None:
    model = BagOfWordsEmbedder()
    searcher = Searcher(bow_store, model, home=tmp_path)
    weight = searcher.vector_weight()
    assert weight.source == SOURCE_CALIBRATION
    assert weight.n_queries >= 12 and len(model.calls) == weight.n_queries
    assert weight.model_score is not None and weight.keyword_score is not None
    # A lexical model close to keyword search on these pages...
    assert weight.model_score >= 0.75 * weight.keyword_score
    # ...gets a weight of the grid where fusing it surely helped, else none.
    assert weight.weight in (0.0, *WEIGHT_GRID), weight
    assert weight.fused_score is not None and weight.fused_score >= weight.keyword_score
    assert weight.gain_bound is not None
    assert (weight.weight > 0) == (weight.gain_bound > 0)
    kinds = {q.kind for q in pseudo_queries(bow_store, 60)}
    assert kinds == {"title", "heading", "sentence"}
    cache = json.loads((tmp_path / CACHE_FILE).read_text())["models"]
    cached = cache[f"{model.model_id}/score"]  # measured for the default fusion
    assert cached["weight"] == weight.weight
    assert cached["embedded"] == bow_store.status().embedded
    # A new searcher (say, the next CLI call) reuses it: no query is embedded.
    again = BagOfWordsEmbedder()
    assert Searcher(bow_store, again, home=tmp_path).vector_weight() == weight
    assert again.calls == []


@pytest.mark.parametrize(("query", "page"), QUERIES)
def test_hybrid_with_model_at_full_weight(bow_store: Store, query: str, page: str) -> None:
    searcher = Searcher(bow_store, BagOfWordsEmbedder(), vector_weight=1.0)
    response = searcher.search(SearchRequest(query, k=5))
    assert response.mode == "hybrid" and response.vector_weight == 1.0
    assert names(response)[0] == page
    assert 0.5 < response.results[0].score <= 1.0
    assert response.notes == []


def test_noise_model_gets_weight_zero_and_hybrid_equals_keyword(
    noise_store: Store, tmp_path: Path
) -> None:
    model = NoiseEmbedder()
    searcher = Searcher(noise_store, model, home=tmp_path)
    weight = searcher.vector_weight()
    assert weight.source == SOURCE_CALIBRATION and weight.weight == 0.0
    assert weight.model_score is not None and weight.model_score < 0.3
    keyword = Searcher(noise_store, None)
    equal = Searcher(noise_store, model, vector_weight=1.0)
    agree_equal = 0
    for query, page in QUERIES:
        model.calls.clear()
        hybrid = searcher.search(SearchRequest(query, k=5))
        kw = keyword.search(SearchRequest(query, mode="keyword", k=5))
        assert paths(hybrid) == paths(kw)
        assert names(hybrid)[0] == page
        assert hybrid.vector_weight == 0.0 and "ranked by keywords" in hybrid.notes[0]
        assert model.calls == []  # full keyword list: the model was not even asked
        agree_equal += names(equal.search(SearchRequest(query, k=5)))[0] == page
    # What the weight prevents: fused at equal weight the noise pushes answers down.
    assert agree_equal < len(QUERIES)


def test_noise_model_fills_when_keywords_find_nothing(noise_store: Store, tmp_path: Path) -> None:
    searcher = Searcher(noise_store, NoiseEmbedder(), home=tmp_path)
    query = "zyxwvut qqqqq"
    assert Searcher(noise_store, None).search(SearchRequest(query, mode="keyword")).results == []
    response = searcher.search(SearchRequest(query, k=3))
    assert len(response.results) == 3  # vector-only files fill the empty list


def test_eval_metadata_of_this_index_decides_without_calibration(
    bow_store: Store, tmp_path: Path
) -> None:
    here = index_identity(tmp_path)
    weak = BagOfWordsEmbedder(
        eval={"ndcg@10": 0.10, "bm25_ndcg@10": 0.80, "dataset": "held", "index": here}
    )
    searcher = Searcher(bow_store, weak, home=tmp_path)
    weight = searcher.vector_weight()
    assert weight.source == SOURCE_EVAL and weight.weight == 0.0
    assert weak.calls == [] and not (tmp_path / CACHE_FILE).exists()
    query = QUERIES[1][0]
    hybrid = searcher.search(SearchRequest(query, k=5))
    keyword = Searcher(bow_store, None).search(SearchRequest(query, mode="keyword", k=5))
    assert paths(hybrid) == paths(keyword)
    assert "held-out nDCG@10 0.10 vs keyword 0.80" in hybrid.notes[0]
    strong = {"ndcg@10": 0.85, "bm25_ndcg@10": 0.80, "index": here}
    strong_searcher = Searcher(bow_store, BagOfWordsEmbedder(eval=strong), home=tmp_path)
    assert strong_searcher.vector_weight().weight == 1.0


def test_eval_metadata_from_elsewhere_is_checked_on_this_index(
    noise_store: Store, tmp_path: Path
) -> None:
    # Figures from the model's own domain say it beats keyword search; on this index
    # it is noise. The index decides: keyword ranking.
    model = NoiseEmbedder(eval={"ndcg@10": 0.90, "bm25_ndcg@10": 0.50, "dataset": "its own"})
    weight = Searcher(noise_store, model, home=tmp_path).vector_weight()
    assert weight.source == SOURCE_CALIBRATION and weight.weight == 0.0
    assert model.calls  # it was measured here


@pytest.mark.parametrize("mode", ["keyword", "vector", "hybrid"])
def test_filters(corpus: Corpus, bow_store: Store, mode: Mode) -> None:
    searcher = Searcher(bow_store, BagOfWordsEmbedder(), vector_weight=1.0)
    query = "module functions data"
    old = str(corpus.root / "old")

    def run(filters: Filters) -> list[str]:
        response = searcher.search(SearchRequest(query, mode=mode, k=50, filters=filters))
        assert response.results, filters
        return paths(response)

    everything = run(Filters())
    assert {Path(p).parent.name for p in everything} == {"old", "new", "html"}
    assert all(p.startswith(old + "/") for p in run(Filters(folders=(old,))))
    assert all(p.endswith(".html") for p in run(Filters(exts=(".HTML",))))
    in_2023 = Filters(modified_after=OLD_MTIME + 86400 * 365 * 3)
    assert {Path(p).parent.name for p in run(in_2023)} == {"new", "html"}
    before = Filters(modified_before=NEW_MTIME)
    assert {Path(p).parent.name for p in run(before)} == {"old"}
    both = Filters(folders=(str(corpus.root / "new"),), exts=("txt",), modified_after=NEW_MTIME)
    assert {Path(p).parent.name for p in run(both)} == {"new"}
    # A folder prefix is a folder, not a string prefix: "old" does not match "older".
    assert (
        searcher.search(
            SearchRequest(query, mode=mode, filters=Filters(folders=(old + "er",)))
        ).results
        == []
    )


def test_partly_embedded_index(corpus: Corpus, partial_store: Store, tmp_path: Path) -> None:
    model = BagOfWordsEmbedder()
    assert 0.0 < partial_store.embedded_fraction() < 1.0
    searcher = Searcher(partial_store, model, vector_weight=1.0)
    # A page of the not yet embedded folder is still found, by its words.
    response = searcher.search(SearchRequest("universally unique identifiers uuid", k=5))
    assert names(response)[0] == "uuid"
    assert any("vectors cover" in n for n in response.notes)
    vector = searcher.search(SearchRequest("universally unique identifiers", mode="vector", k=50))
    assert vector.results and all("/old/" in p for p in paths(vector))
    assert any("vectors cover" in n for n in vector.notes)


def test_vectors_of_another_model(bow_store: Store) -> None:
    searcher = Searcher(bow_store, NoiseEmbedder(), vector_weight=1.0)
    query, page = QUERIES[0]
    hybrid = searcher.search(SearchRequest(query, k=5))
    assert names(hybrid)[0] == page
    assert any("another model" in n for n in hybrid.notes)
    vector = searcher.search(SearchRequest(query, mode="vector"))
    assert vector.results == [] and any("another model" in n for n in vector.notes)


def test_reason_returns_the_reasoning(bow_store: Store) -> None:
    searcher = Searcher(bow_store, BagOfWordsEmbedder(), vector_weight=0.0)
    query, page = QUERIES[2]
    response = searcher.search(SearchRequest(query, reason=True, k=3))
    assert response.reasoning == f"The user looks for: {query}" and response.forced is False
    assert names(response)[0] == page


def test_empty_query(bow_store: Store) -> None:
    response = Searcher(bow_store, None).search(SearchRequest("   ", mode="keyword"))
    assert response.results == [] and response.notes == ["empty query"]


def test_passages_per_file_and_k(bow_store: Store) -> None:
    searcher = Searcher(bow_store, BagOfWordsEmbedder(), vector_weight=1.0)
    response = searcher.search(SearchRequest("json encoder decoder", k=2, passages=5))
    assert len(response.results) == 2
    best = response.results[0]
    assert names(response)[0] == "json" and len(best.passages) == 5
    assert len({p.chunk_id for p in best.passages}) == 5
    assert [p.score for p in best.passages] == sorted(
        (p.score for p in best.passages), reverse=True
    )


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="unknown search mode"):
        SearchRequest("x", mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        SearchRequest("x", k=0)


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_query_syntax_is_plain_text(bow_store: Store, mode: Mode) -> None:
    # Quotes, brackets and operators are what users type; none may reach the
    # full-text index as syntax (a quoted phrase used to fail there).
    searcher = Searcher(bow_store, BagOfWordsEmbedder(), vector_weight=1.0)
    for query in ('"JSON encoder" decoder', "json.dumps(obj) -> str?", 'AND OR "', "+json -csv"):
        response = searcher.search(SearchRequest(query, mode=mode))
        if any(c.isalpha() for c in query.replace("AND", "").replace("OR", "")):
            assert response.results, query
