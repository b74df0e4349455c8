from __future__ import annotations

import pytest

from sr3desk.search.text import match_spans, parse_query, sentence_spans, stem


@pytest.mark.parametrize(
    ("words", "same"),
    [
        (["index", "indexes", "indexing", "indexed", "Index"], True),
        (["parse", "parses", "parsing", "parsed"], True),
        (["library", "libraries"], True),
        (["run", "running", "runs"], True),
        (["use", "uses", "used", "using"], True),
        (["install", "installing", "installed"], True),
        (["class", "classes"], True),
        (["string", "strings"], True),
        (["speed", "sped"], False),
        (["bed", "be"], False),
        (["status", "statu"], False),
    ],
)
def test_light_stemming(words: list[str], same: bool) -> None:
    assert (len({stem(w) for w in words}) == 1) is same


def test_parse_query_drops_stopwords_keeps_phrases() -> None:
    q = parse_query('what is the "Global Interpreter Lock"  ')
    assert q.terms == ("global", "interpreter", "lock")
    assert q.phrases == ("global interpreter lock",)
    assert q.text == 'what is the "Global Interpreter Lock"'


def test_parse_query_all_stopwords_kept() -> None:
    q = parse_query("to be or not to be")
    assert q.terms == ("to", "be", "or", "not")
    assert not q.empty


def test_parse_query_no_words() -> None:
    q = parse_query("  ?! ")
    assert q.empty and q.text == "?!"


def test_match_spans_case_insensitive_and_stemmed() -> None:
    text = "Indexing: the INDEX indexes... reindex"
    spans = match_spans(text, parse_query("indexed").stems)
    assert [text[s:e] for s, e in spans] == ["Indexing", "INDEX", "indexes"]


def test_match_spans_unicode() -> None:
    text = "Straße und Übergrößen"
    spans = match_spans(text, parse_query("straße übergrößen").stems)
    assert [text[s:e] for s, e in spans] == ["Straße", "Übergrößen"]


def test_sentence_spans_split_on_stops_and_blank_lines() -> None:
    text = "First one. Second (really)! Third?\n\nA list item\n\n  last"
    parts = [text[s:e] for s, e in sentence_spans(text)]
    assert parts == ["First one.", "Second (really)!", "Third?", "A list item", "last"]
