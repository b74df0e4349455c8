"""A document's sections: the stretches between headings and page starts that no
passage crosses, with tiny ones merged into a neighbour (see :mod:`sr3desk.index.chunking`,
step 1)."""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sr3desk.extract.types import Document

HEADING_SEPARATOR = " › "


@dataclass
class Section:
    """A stretch of a document between headings and page starts: its span, heading
    path and page; ``tokens`` is counted only for small ones (merging decides by it)."""

    start: int
    end: int
    heading: str
    page: int | None
    tokens: int | None = None  # counted only when small


def heading_paths(doc: Document) -> tuple[list[int], list[str]]:
    """Offsets of the headings and the heading path in force from each one on."""
    offsets: list[int] = []
    paths: list[str] = []
    stack: list[tuple[int, str]] = []
    for heading in sorted(doc.headings, key=lambda h: h.offset):
        while stack and stack[-1][0] >= heading.level:
            stack.pop()
        stack.append((heading.level, heading.title))
        offsets.append(heading.offset)
        paths.append(HEADING_SEPARATOR.join(title for _, title in stack))
    return offsets, paths


class SectionCounter(Protocol):
    """What :func:`sections` needs of the chunker (:class:`~sr3desk.index.chunking.Chunker`
    has it): token counts of spans and the page of an offset; it is given the pages
    and the unmerged sections, which it uses to place its chunks."""

    page_starts: list[int]
    page_numbers: list[int]
    sections: list[Section]
    section_starts: list[int]

    def count(self, start: int, end: int) -> int: ...

    def page_at(self, offset: int) -> int | None: ...


def sections(doc: Document, chunker: SectionCounter, min_tokens: int) -> list[Section]:
    """Sections of ``doc`` between headings and page starts, tiny ones (fewer than
    ``min_tokens`` tokens of ``chunker``) merged with a neighbour; returns them in text
    order. Gives ``chunker`` the pages and the sections before merging."""
    text = doc.text
    heading_offsets, paths = heading_paths(doc)
    pages = sorted(doc.pages, key=lambda p: p.start)
    page_starts = [p.start for p in pages]
    chunker.page_starts = page_starts
    chunker.page_numbers = [p.number for p in pages]
    cuts = sorted({0, len(text), *heading_offsets, *page_starts} - {-1})
    cuts = [c for c in cuts if 0 <= c <= len(text)]

    def heading_at(offset: int) -> str:
        i = bisect.bisect_right(heading_offsets, offset) - 1
        return paths[i] if i >= 0 else ""

    raw: list[Section] = []
    for start, end in itertools.pairwise(cuts):
        # Trim the whitespace around a section: it belongs to no chunk.
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            raw.append(Section(start, end, heading_at(start), chunker.page_at(start)))
    chunker.sections = raw
    chunker.section_starts = [s.start for s in raw]
    # Tiny sections join their neighbours; size decides whose heading a group keeps.
    for section in raw:
        if len(text[section.start : section.end].strip()) <= 8 * min_tokens:
            section.tokens = chunker.count(section.start, section.end)

    def tiny(group: list[Section]) -> bool:
        counts = [s.tokens for s in group]
        return all(c is not None for c in counts) and sum(c or 0 for c in counts) < min_tokens

    groups: list[list[Section]] = []
    current: list[Section] = []
    for i, section in enumerate(raw):
        current.append(section)
        if i + 1 < len(raw) and tiny(current):
            continue
        groups.append(current)
        current = []
    if len(groups) >= 2 and tiny(groups[-1]):
        groups[-2].extend(groups.pop())
    merged = []
    for group in groups:
        biggest = max(group, key=lambda s: s.tokens if s.tokens is not None else s.end - s.start)
        # A merged group is counted afresh: the whitespace between its parts counts too.
        known = group[0].tokens if len(group) == 1 else None
        merged.append(Section(group[0].start, group[-1].end, biggest.heading, group[0].page, known))
    return merged


__all__ = ["HEADING_SEPARATOR", "Section", "SectionCounter", "heading_paths", "sections"]
