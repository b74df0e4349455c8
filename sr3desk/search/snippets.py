"""Snippets: a short window of a passage around the sentences that match the query.

A passage is a few hundred tokens; a result list shows a line or two of it. The
window starts at the sentence with the most distinct query terms (earliest on a
tie), extends over the following sentences up to the width, and is cut at word
boundaries with an ellipsis. Highlights are computed on the final snippet text,
so their offsets are exact for whatever renders it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from sr3desk.search.text import ParsedQuery, match_spans, match_words, sentence_spans

ELLIPSIS = "…"
DEFAULT_WIDTH = 240


@dataclass
class Snippet:
    """A display excerpt: ``text`` with ``highlights`` as ``(start, end)`` offsets in it."""

    text: str
    highlights: list[tuple[int, int]] = field(default_factory=list)


def _matches(text: str, query: ParsedQuery) -> list[tuple[int, str]]:
    """(offset, stem) of every word of ``text`` that matches the query, in order."""
    return [(s, st) for s, _, st in match_words(text, query.stems)]


def _in_span(matches: list[tuple[int, str]], lo: int, hi: int) -> list[str]:
    """Stems of the matches starting in [lo, hi)."""
    i = bisect.bisect_left(matches, (lo, ""))
    out = []
    while i < len(matches) and matches[i][0] < hi:
        out.append(matches[i][1])
        i += 1
    return out


def _phrase_bonus(sentence: str, query: ParsedQuery) -> int:
    low = " ".join(sentence.lower().split())
    return sum(1 for p in query.phrases if p in low)


def _cut_start(text: str, pos: int) -> int:
    """Move ``pos`` forward to the start of the next word (never inside a word)."""
    if pos <= 0:
        return 0
    if not text[pos - 1].isalnum():
        return pos
    while pos < len(text) and text[pos].isalnum():
        pos += 1
    return pos


def _cut_end(text: str, pos: int) -> int:
    """Move ``pos`` back to the end of the previous word."""
    if pos >= len(text):
        return len(text)
    if not text[pos].isalnum():
        return pos
    while pos > 0 and text[pos - 1].isalnum():
        pos -= 1
    return pos


def _densest(matches: list[tuple[int, str]], start: int, end: int, width: int) -> tuple[int, int]:
    inside = [(p, st) for p, st in matches if start <= p < end]
    if not inside:
        return start, start + width
    lead = width // 4
    best_pos, best_n = inside[0][0], 0
    for pos, _ in inside:
        lo = max(start, pos - lead)
        n = len(set(_in_span(inside, lo, lo + width - 10)))
        if n > best_n:
            best_pos, best_n = pos, n
    lo = max(start, best_pos - lead)
    return lo, min(end, lo + width)


def best_window(text: str, query: ParsedQuery, width: int = DEFAULT_WIDTH) -> tuple[int, int]:
    """Return the ``(start, end)`` character window of ``text`` to show for ``query``.

    Picks the best sentence (most distinct terms, then most matches, then
    earliest), then grows the window forwards, and backwards only if the passage
    ends first. In a sentence longer than ``width`` the window holds the most
    distinct terms.
    """
    if len(text) <= width:
        return 0, len(text)
    matches = _matches(text, query)
    best = (0, len(text))
    best_key = (0, 0)
    if matches:
        for span in sentence_spans(text):
            found = _in_span(matches, span[0], span[1])
            if not found:
                continue
            phrases = _phrase_bonus(text[span[0] : span[1]], query) if query.phrases else 0
            key = (len(set(found)) + phrases, len(found))
            if key > best_key:
                best, best_key = span, key
    start, end = best
    if end - start > width:
        # Long sentence (or text without punctuation): the window inside it that
        # holds the most distinct terms, led by a little context.
        start, end = _densest(matches, start, end, width)
    else:
        end = min(len(text), start + width)
        if end - start < width:
            start = max(0, end - width)
    return start, end


def make_snippet(text: str, query: ParsedQuery, width: int = DEFAULT_WIDTH) -> Snippet:
    """Return the snippet of ``text`` for ``query`` with the query terms highlighted.

    Whitespace is collapsed (passages keep the file's line breaks); an ellipsis
    marks a cut at either end. A query with no words gives the passage's start.
    """
    start, end = best_window(text, query, width)
    if start > 0:
        start = _cut_start(text, start)
    if end < len(text):
        cut = _cut_end(text, end)
        end = cut if cut > start else end
    body = " ".join(text[start:end].split())
    prefix = ELLIPSIS if start > 0 and body else ""
    suffix = ELLIPSIS if end < len(text) and body else ""
    snippet = prefix + body + suffix
    return Snippet(snippet, highlight(snippet, query))


def highlight(text: str, query: ParsedQuery) -> list[tuple[int, int]]:
    """Return ``(start, end)`` spans of ``text`` that match the query's terms."""
    return match_spans(text, query.stems)


def render(snippet: Snippet, before: str, after: str) -> str:
    """Return the snippet with each highlight wrapped in ``before``/``after`` markers.

    >>> from sr3desk.search.text import parse_query
    >>> s = make_snippet("Parsing JSON is easy.", parse_query("parse json"))
    >>> render(s, "[", "]")
    '[Parsing] [JSON] is easy.'
    """
    out = []
    pos = 0
    for s, e in snippet.highlights:
        out.append(snippet.text[pos:s])
        out.append(before + snippet.text[s:e] + after)
        pos = e
    out.append(snippet.text[pos:])
    return "".join(out)


__all__ = [
    "DEFAULT_WIDTH",
    "ELLIPSIS",
    "Snippet",
    "best_window",
    "highlight",
    "make_snippet",
    "render",
]
