from __future__ import annotations

from sr3desk.search.snippets import ELLIPSIS, make_snippet, render
from sr3desk.search.text import parse_query

FILLER = "Nothing to see in this sentence at all. " * 8
TEXT = (
    FILLER
    + "The garbage collector frees cyclic references when the threshold is reached. "
    + FILLER
)


def marked(text: str, query: str, width: int = 240) -> str:
    return render(make_snippet(text, parse_query(query), width), "[", "]")


def test_short_text_whole_and_highlighted() -> None:
    s = make_snippet("Parsing JSON\n  is   easy.", parse_query("parse json"))
    assert s.text == "Parsing JSON is easy."
    assert [s.text[a:b] for a, b in s.highlights] == ["Parsing", "JSON"]


def test_window_starts_at_best_sentence() -> None:
    out = marked(TEXT, "garbage collector threshold")
    assert out.startswith(ELLIPSIS + "The [garbage] [collector] frees")
    assert "[threshold]" in out
    assert out.endswith(ELLIPSIS)
    assert len(make_snippet(TEXT, parse_query("garbage"), 240).text) <= 242


def test_most_distinct_terms_win_over_repeats() -> None:
    text = (
        FILLER
        + "cycle cycle cycle cycle. "
        + FILLER
        + "A cycle is found by the collector. "
        + FILLER
    )
    out = marked(text, "cycle collector")
    assert out.startswith(ELLIPSIS + "A [cycle] is found by the [collector].")


def test_highlight_offsets_exact_after_ellipsis() -> None:
    s = make_snippet(TEXT, parse_query("cyclic references"))
    assert s.text.startswith(ELLIPSIS)
    assert [s.text[a:b] for a, b in s.highlights] == ["cyclic", "references"]


def test_cuts_at_word_boundaries() -> None:
    s = make_snippet(TEXT, parse_query("garbage"), 100)
    body = s.text.strip(ELLIPSIS)
    assert body.split()[0] in TEXT.split()
    assert body.split()[-1] in TEXT.split()


def test_long_sentence_window_on_densest_matches() -> None:
    words = " ".join(f"word{i}" for i in range(200))
    text = words + " alpha beta gamma " + words + "."
    out = marked(text, "alpha gamma", width=120)
    assert "[alpha] beta [gamma]" in out
    assert out.startswith(ELLIPSIS) and out.endswith(ELLIPSIS)


def test_no_match_gives_start_of_passage() -> None:
    s = make_snippet(TEXT, parse_query("zebra"), 80)
    assert s.text.startswith("Nothing to see") and s.highlights == []


def test_phrase_bonus() -> None:
    text = FILLER + "Lock the global file. " + FILLER + "The global interpreter lock. " + FILLER
    out = marked(text, '"global interpreter lock"', width=60)
    assert "[global] [interpreter] [lock]" in out
