"""Query parsing and the light term matching used for snippets and highlights.

Highlighting only has to agree with what a reader calls "the same word", so a
light, predictable suffix stripper is enough: "indexes", "indexing" and
"indexed" all match "index"; "encode" matches "encoding". It is not the
full-text index's tokenizer (that lives in the store) and does not need to be.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# Words that carry no topic: not highlighted, unless the query has nothing else.
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during
    each few for from further had has have having he her here hers herself him
    himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same
    she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when
    where which while who whom why will with would you your yours yourself
    yourselves
    """.split()  # noqa: SIM905 - a word list reads better as text
)

_WORD = re.compile(r"\w+", re.UNICODE)
_PHRASE = re.compile(r'"([^"]+)"')
# A sentence ends at . ! ? (optionally followed by a closing quote or bracket) and
# whitespace, or at a blank line: chunks of reST/Markdown carry paragraph breaks
# and list items that have no final full stop.
_SENTENCE_OR_PARAGRAPH_END = re.compile(r"([.!?][\"')\]]*)\s+|\n\s*\n")
_VOWELS = set("aeiouy")


def stem(word: str) -> str:
    """Return a light stem of ``word`` (cached: result lists repeat their words).

    >>> stem("Indexing")
    'index'
    """
    return _stem(word)


@functools.lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    """Return a light stem of ``word``: lower case, plural and -ed/-ing/-e removed.

    >>> [stem(w) for w in ("Indexes", "indexing", "indexed", "index")]
    ['index', 'index', 'index', 'index']
    >>> [stem(w) for w in ("encode", "encoding", "encoded", "libraries", "library")]
    ['encod', 'encod', 'encod', 'librari', 'librari']
    """
    w = word.lower()
    if len(w) <= 3 or not w.isalpha():
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "i"
    elif w.endswith(("sses", "ches", "shes", "xes", "zes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ing", "ed"):
        base = w[: -len(suffix)]
        # Only strip when a vowel remains, so "bed", "string" and "speed" keep theirs.
        if w.endswith(suffix) and len(base) >= 2 and _VOWELS & set(base) and not w.endswith("eed"):
            if len(base) == 2:
                base += "e"  # used, using -> use
            elif len(base) > 3 and base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]  # running -> run, but not "install" -> "instal"
            w = base
            break
    if w.endswith("y") and len(w) > 3:
        w = w[:-1] + "i"
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def words(text: str) -> list[tuple[int, int, str]]:
    """Return ``(start, end, word)`` for every word of ``text``, in order."""
    return [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]


def keyword_text(text: str) -> str:
    """Return the words of ``text`` joined by spaces, for the full-text index.

    The index's query parser gives quotes and other punctuation a meaning (a
    quoted phrase needs word positions the index does not keep, and fails), so
    what a user types is reduced to its words; the tokenizer would split them
    the same way.

    >>> keyword_text('parse "JSON files" (os.path)?')
    'parse JSON files os path'
    """
    return " ".join(w for _, _, w in words(text))


@dataclass(frozen=True)
class ParsedQuery:
    """A query as the searcher uses it.

    ``text``: the query with whitespace collapsed (sent to the model);
    ``terms``: the words to highlight, lower case, stop words dropped unless
    nothing else is left; ``stems``: their light stems; ``phrases``: quoted parts
    ("exact phrase"), lower case.
    """

    text: str
    terms: tuple[str, ...]
    stems: frozenset[str]
    phrases: tuple[str, ...] = ()

    @property
    def keywords(self) -> str:
        """The text for the full-text index: :func:`keyword_text` of ``text``."""
        return keyword_text(self.text)

    @property
    def empty(self) -> bool:
        """True when the query has no word at all."""
        return not self.terms


def parse_query(query: str) -> ParsedQuery:
    """Parse a user query into the text to search and the terms to highlight.

    >>> q = parse_query('  How do I parse "JSON files"?  ')
    >>> q.text, q.terms, q.phrases
    ('How do I parse "JSON files"?', ('parse', 'json', 'files'), ('json files',))
    """
    text = " ".join(query.split())
    all_words = [w.lower() for _, _, w in words(text)]
    content = [w for w in all_words if w not in STOPWORDS]
    chosen = content or all_words
    seen: dict[str, None] = {}
    for w in chosen:
        seen.setdefault(w, None)
    terms = tuple(seen)
    phrases = tuple(" ".join(p.lower().split()) for p in _PHRASE.findall(text) if p.strip())
    return ParsedQuery(
        text=text, terms=terms, stems=frozenset(stem(t) for t in terms), phrases=phrases
    )


@functools.lru_cache(maxsize=256)
def _candidates(stems: frozenset[str]) -> re.Pattern[str]:
    # A word with a given stem starts with the stem less its last two characters
    # (stemming only strips suffixes and rewrites the last letter or two), so a
    # regex on those prefixes finds every candidate without stemming every word.
    prefixes = sorted({re.escape(st[: max(1, len(st) - 2)]) for st in stems}, key=len)
    return re.compile(r"(?<!\w)(?:" + "|".join(prefixes) + r")\w*", re.IGNORECASE)


def match_words(text: str, stems: frozenset[str]) -> list[tuple[int, int, str]]:
    """Return ``(start, end, stem)`` of the words of ``text`` whose stem is in ``stems``."""
    if not stems:
        return []
    out = []
    for m in _candidates(stems).finditer(text):
        st = stem(m.group())
        if st in stems:
            out.append((m.start(), m.end(), st))
    return out


def match_spans(text: str, stems: frozenset[str]) -> list[tuple[int, int]]:
    """Return ``(start, end)`` of the words of ``text`` whose stem is in ``stems``.

    Adjacent matches stay separate spans: a renderer marks each.
    """
    return [(s, e) for s, e, _ in match_words(text, stems)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Split ``text`` into sentences; returns ``(start, end)`` spans, whitespace trimmed."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENTENCE_OR_PARAGRAPH_END.finditer(text):
        end = m.end(1) if m.group(1) else m.start()  # keep the full stop in the sentence
        if end > pos:
            spans.append((pos, end))
        pos = m.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    out = []
    for s, e in spans:
        seg = text[s:e]
        lead = len(seg) - len(seg.lstrip())
        trail = len(seg) - len(seg.rstrip())
        if e - trail > s + lead:
            out.append((s + lead, e - trail))
    return out


__all__ = [
    "STOPWORDS",
    "ParsedQuery",
    "keyword_text",
    "match_spans",
    "match_words",
    "parse_query",
    "sentence_spans",
    "stem",
    "words",
]
