"""Split a document's text into passages of at most ``max_tokens`` model tokens.

How a document is cut, in order:

1. **Sections.** Headings and page starts are hard boundaries: a chunk never spans two
   sections. A tiny section (fewer than ``max_tokens // 8`` tokens: a heading directly
   followed by a sub-heading, a page holding only its number, a near-empty slide) is
   merged with the next one (the previous one, when it is last), so that tiny pages and
   bare headings do not become chunks of their own. That is the one way a chunk can
   cross a page: its ``page`` is the page where it starts. A chunk's ``heading`` is
   the heading path of the section that holds most of its text.
2. **Pieces.** A section is cut at paragraphs (blank lines), a paragraph that is too
   long at sentence ends, a sentence at line breaks, a line at spaces, and a run with
   no spaces at all at arbitrary characters, until every piece fits. The whitespace
   between two pieces starts the second one: BPE tokenizers give " word" one token, so
   the token count of a run of pieces is the sum of their counts.
3. **Chunks.** Pieces are packed greedily; a full chunk backs off to the strongest
   boundary (paragraph over sentence over line over word) in its second half. The next
   chunk starts with the last ``overlap_tokens`` or fewer of the previous one, cut at a
   sentence start if one is near, else at a word.

Counting tokens is the cost (the tokenizer's time grows with the text it is given), so
the counter sees each piece about once: a span is counted only when it is likely to fit
(by the characters-per-token ratio measured so far), else split unseen; runs of small
parts (the dots of a table of contents) are counted together; long runs without breaks
are cut by the ratio and checked with one call; a chunk's count is the sum of its
pieces' counts, except that a chunk opening on a piece's leading space is recounted
without it (" representing" is one token, "representing" may be two). On the Python
docs the tokenizer sees about 1.2 times the text, the overlaps included.

Every chunk satisfies ``doc.text[chunk.start:chunk.end] == chunk.text``: no whitespace
is normalised, leading and trailing whitespace is simply left out of the span.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sr3desk.index.sections import Section, sections

if TYPE_CHECKING:
    from sr3desk.extract.types import Document
    from sr3desk.model.tokenizer import TokenCounter

# Boundary strengths: where a piece may start, strongest first.
PARAGRAPH, SENTENCE, LINE, WORD, CHAR = 4, 3, 2, 1, 0
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# Where a sentence piece may start: after . ! ? and any closing quotes or brackets,
# before whitespace.
_SENTENCE_BREAK = re.compile(r"[.!?][\"'\u201d\u2019)\]]*(?=\s)")
_SPACE = re.compile(r"\s")
_APPROX_TOKEN = re.compile(r"\w{1,5}|[^\w\s]")


@dataclass(frozen=True)
class Chunk:
    """One passage: ``text == doc.text[start:end]``, ``ordinal`` counts from 0 in text
    order. ``page``: 1-based page where it starts (None without pages). ``heading``: the
    heading path (joined by " › ") of the section holding most of the chunk; "" before
    the first heading. ``tokens``: its token
    count as the counter gave it (sum of its pieces)."""

    ordinal: int
    text: str
    start: int
    end: int
    page: int | None
    heading: str
    tokens: int = 0


class ApproxCounter:
    """Token estimate for keyword-only mode, when no model (and so no tokenizer) is open.

    Counts runs of up to five word characters and single punctuation marks, which is
    close to what BPE vocabularies of 32k-150k entries give on English prose and code,
    a little above them on average (so chunks stay under a real model's limit).
    Additive over text split at whitespace, like the real tokenizers.
    """

    def count_tokens(self, text: str) -> int:
        """Estimated number of tokens of ``text``."""
        return len(_APPROX_TOKEN.findall(text))


class Chunker:
    def __init__(
        self, text: str, counter: TokenCounter, max_tokens: int, overlap_tokens: int
    ) -> None:
        self.text = text
        self.counter = counter
        self.max_tokens = max_tokens
        self.overlap = overlap_tokens
        # Pieces are at most this big, so that any piece fits after an overlap.
        self.piece_budget = max_tokens - overlap_tokens
        self.ratio = 4.0  # characters per token, refined by every count
        self.calls = 0
        self.page_starts: list[int] = []
        self.page_numbers: list[int] = []
        self.sections: list[Section] = []  # before merging: where each heading path holds
        self.section_starts: list[int] = []

    def count(self, start: int, end: int) -> int:
        n = int(self.counter.count_tokens(self.text[start:end]))
        self.calls += 1
        if n > 0 and end - start > 64:
            self.ratio = 0.8 * self.ratio + 0.2 * ((end - start) / n)
        return n

    # -- pieces ------------------------------------------------------------------

    def _bounds(self, start: int, end: int, level: int) -> list[int]:
        """Positions strictly inside (start, end) where a piece of ``level`` may start."""
        text = self.text
        if level == PARAGRAPH:
            found = [m.start() for m in _PARAGRAPH_BREAK.finditer(text, start, end)]
        elif level == SENTENCE:
            found = [m.end() for m in _SENTENCE_BREAK.finditer(text, start, end)]
        elif level == LINE:
            found = []
            pos = text.find("\n", start, end)
            while pos >= 0:
                found.append(pos)
                pos = text.find("\n", pos + 1, end)
        else:
            return []
        return [pos for pos in found if start < pos < end]

    def pieces(
        self,
        start: int,
        end: int,
        tokens: int | None,
        strength: int,
        below: int,
        out: list[tuple[int, int, int]],
    ) -> None:
        """Append (start, tokens, strength) pieces covering text[start:end] to ``out``.

        ``strength``: the boundary this span starts at; ``below``: the span holds no
        boundaries of this level or stronger (they were cut already).
        """
        # Count only what may fit: a span far longer than a chunk is split unseen.
        if tokens is None and end - start <= 1.2 * self.piece_budget * self.ratio:
            tokens = self.count(start, end)
        if tokens is not None and tokens <= self.piece_budget:
            out.append((start, tokens, strength))
            return
        for level in (PARAGRAPH, SENTENCE, LINE):
            if level >= below:
                continue
            bounds = self._bounds(start, end, level)
            if bounds:
                self._grouped([start, *bounds, end], strength, level, out)
                return
        self._cut(start, end, strength, out)

    def _grouped(
        self, edges: list[int], strength: int, level: int, out: list[tuple[int, int, int]]
    ) -> None:
        """Pieces for the parts between ``edges``, runs of small parts counted together.

        Counting every sentence of a table of contents (". . . . 3") separately would
        cost a tokenizer call per dot; parts are grouped up to about a quarter of a
        chunk (by the characters-per-token ratio), so chunks still end within a quarter
        of their budget, and a group that turns out too big is split after all.
        """
        target = max(1, int(self.piece_budget * self.ratio / 4))
        i, n = 0, len(edges) - 1
        while i < n:
            j = i + 1
            while j < n and edges[j + 1] - edges[i] <= target:
                j += 1
            first = strength if i == 0 else level
            if j == i + 1:
                self.pieces(edges[i], edges[j], None, first, level, out)
            else:
                tokens = self.count(edges[i], edges[j])
                if tokens <= self.piece_budget:
                    out.append((edges[i], tokens, first))
                else:
                    for k in range(i, j):
                        part = strength if k == 0 else level
                        self.pieces(edges[k], edges[k + 1], None, part, level, out)
            i = j

    def _cut(self, start: int, end: int, strength: int, out: list[tuple[int, int, int]]) -> None:
        """Cut a run without paragraph, sentence or line breaks at spaces (else anywhere),
        each cut estimated from the characters-per-token ratio and checked by one count."""
        text = self.text
        budget = self.piece_budget
        pos = start
        first = True
        while pos < end:
            cut = min(end, pos + max(1, int(budget * self.ratio * 0.9)))
            while True:
                if cut < end:
                    space = max(text.rfind(" ", pos + 1, cut), text.rfind("\t", pos + 1, cut))
                    if space > pos:
                        cut = space
                n = self.count(pos, cut)
                if n <= budget or cut - pos <= 1:
                    break
                cut = pos + max(1, int((cut - pos) * budget / n * 0.9))
            piece_strength = strength if first else (WORD if text[pos].isspace() else CHAR)
            out.append((pos, n, piece_strength))
            first = False
            pos = cut

    # -- overlap -------------------------------------------------------------------

    def tail(self, start: int, end: int, tokens: int) -> tuple[int, int] | None:
        """The overlap carried into the next chunk: (start, tokens) of a suffix of
        text[start:end] with at most ``overlap`` tokens, beginning at a sentence start
        or a space; None when no such suffix exists."""
        if self.overlap <= 0 or end - start < 2:
            return None
        text = self.text
        ratio = (end - start) / max(tokens, 1)
        want = int(self.overlap * ratio)
        pos = max(start + 1, end - want)
        for _ in range(6):
            sentence = _SENTENCE_BREAK.search(text, pos, end)
            # A sentence start, unless it would leave only a sliver of the window.
            if sentence is not None and sentence.end() <= pos + (end - pos) * 2 // 3:
                pos = sentence.end()
            else:
                space = _SPACE.search(text, pos, end)
                if space is None:
                    return None
                pos = space.start()
            # Count the overlap as the next chunk will show it, leading space stripped:
            # " representing" is one token, "representing" may be two.
            while pos < end and text[pos].isspace():
                pos += 1
            if pos >= end:
                return None
            n = self.count(pos, end)
            if n <= self.overlap:
                return (pos, n)
            pos = end - int((end - pos) * self.overlap / n * 0.8)
        return None

    def page_at(self, offset: int) -> int | None:
        """Number of the page ``offset`` lies on (the first page before it starts)."""
        if not self.page_starts:
            return None
        i = bisect.bisect_right(self.page_starts, offset) - 1
        return self.page_numbers[max(i, 0)]

    # -- packing -------------------------------------------------------------------

    def pack(self, section: Section, chunks: list[Chunk]) -> None:
        """Chunk one section into ``chunks``."""
        found: list[tuple[int, int, int]] = []
        self.pieces(section.start, section.end, section.tokens, PARAGRAPH, PARAGRAPH + 1, found)
        starts = [p[0] for p in found] + [section.end]
        tokens = [p[1] for p in found]
        strengths = [p[2] for p in found]
        carry: tuple[int, int] | None = None  # overlap from the previous chunk
        i, n = 0, len(found)
        while i < n:
            head_tokens = carry[1] if carry else 0
            first = tokens[i]
            if carry is None and self.text[starts[i]].isspace():
                # The chunk will start without this piece's leading space: recount.
                first = self._stripped_count(starts[i], starts[i + 1])
            if head_tokens + first > self.max_tokens:  # pieces fit after any overlap
                carry, head_tokens = None, 0  # so this is only a guard
                first = self._stripped_count(starts[i], starts[i + 1])
            total, j = head_tokens + first, i + 1
            while j < n and total + tokens[j] <= self.max_tokens:
                total += tokens[j]
                j += 1
            if j < n:
                # Full: end at the strongest boundary in the chunk's second half.
                best, running = j, head_tokens + first
                for k in range(i + 1, j):  # running: tokens before piece k
                    if (
                        running * 2 >= self.max_tokens
                        and strengths[k] > strengths[j]
                        and (best == j or strengths[k] >= strengths[best])
                    ):
                        best = k
                    running += tokens[k]
                if best != j:
                    total -= sum(tokens[best:j])
                    j = best
            chunk_start = carry[0] if carry else starts[i]
            self._emit(chunks, chunk_start, starts[j], total, section)
            carry = self.tail(starts[i], starts[j], total - head_tokens) if j < n else None
            i = j

    def _stripped_count(self, start: int, end: int) -> int:
        while start < end and self.text[start].isspace():
            start += 1
        return self.count(start, end) if start < end else 0

    def heading_for(self, start: int, end: int, fallback: str) -> str:
        """Heading path of the section that holds most of text[start:end]."""
        i = max(bisect.bisect_right(self.section_starts, start) - 1, 0)
        best, best_size = fallback, 0
        while i < len(self.sections) and self.sections[i].start < end:
            section = self.sections[i]
            size = min(end, section.end) - max(start, section.start)
            if size > best_size:
                best, best_size = section.heading, size
            i += 1
        return best

    def _emit(
        self, chunks: list[Chunk], start: int, end: int, tokens: int, section: Section
    ) -> None:
        text = self.text
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start >= end:
            return
        chunks.append(
            Chunk(
                len(chunks),
                text[start:end],
                start,
                end,
                self.page_at(start),
                self.heading_for(start, end, section.heading),
                tokens,
            )
        )


def chunk_document(
    doc: Document, counter: TokenCounter, max_tokens: int = 256, overlap_tokens: int = 32
) -> list[Chunk]:
    """Cut ``doc`` into chunks of at most ``max_tokens`` tokens of ``counter``.

    Consecutive chunks of a section share up to ``overlap_tokens`` tokens. Returns the
    chunks in text order (``ordinal`` 0, 1, ...); an empty or blank document gives [].
    See the module docstring for where chunks break.
    """
    if max_tokens < 16:
        raise ValueError(f"max_tokens must be at least 16, got {max_tokens}")
    if not 0 <= overlap_tokens <= max_tokens // 2:
        raise ValueError(
            f"overlap_tokens must be between 0 and max_tokens // 2 ({max_tokens // 2}), "
            f"got {overlap_tokens}"
        )
    if not doc.text.strip():
        return []
    chunker = Chunker(doc.text, counter, max_tokens, overlap_tokens)
    chunks: list[Chunk] = []
    for section in sections(doc, chunker, max(4, max_tokens // 8)):
        chunker.pack(section, chunks)
    return chunks
