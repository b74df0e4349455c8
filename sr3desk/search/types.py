"""What a search is asked and what it answers: shared by the CLI and the window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sr3desk.index.types import Filters, OcrNote

Mode = Literal["hybrid", "vector", "keyword"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "keyword")
MAX_K = 1000


@dataclass(frozen=True)
class SearchRequest:
    """One search.

    ``query``: what the user typed; ``mode``: "hybrid" (keywords and vectors
    fused, the default), "vector" or "keyword" (needs no model); ``k``: files to
    return; ``filters``: folder, file type and date restrictions; ``reason``: let
    the model reason about the query before embedding it (slower; only worth it
    for a model whose reasoning is measured to help); ``deep``: re-rank the best
    files with the cross-encoder (:mod:`sr3desk.search.deep`); ``passages``: best
    passages shown per file.
    """

    query: str
    mode: Mode = "hybrid"
    k: int = 10
    filters: Filters = field(default_factory=Filters)
    reason: bool = False
    passages: int = 3
    deep: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown search mode {self.mode!r}: use one of {', '.join(MODES)}")
        if not 1 <= self.k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, not {self.k}")
        if self.passages < 1:
            raise ValueError("passages must be at least 1")


@dataclass
class Passage:
    """A matching passage of a file.

    ``text``: the whole passage; ``snippet``: the excerpt to show, with
    ``highlights`` as (start, end) offsets of query terms in ``snippet``;
    ``page``: 1-based page or None; ``start``/``end``: the passage's character
    span in the file's extracted text; ``heading``: heading path (" › ");
    ``score``: the passage's score in the mode's scale.
    """

    chunk_id: str
    text: str
    snippet: str
    highlights: list[tuple[int, int]]
    page: int | None
    start: int
    end: int
    heading: str
    score: float


@dataclass
class FileResult:
    """A file in the results, with its best passages first.

    ``score``: hybrid: fused score in [0, 1] (1 = first in every list that
    counts); keyword: BM25 of the best passage; vector: its cosine similarity.
    """

    path: str
    file_id: str
    ext: str
    folder: str
    mtime: float
    size: int
    score: float
    passages: list[Passage]
    ocr: OcrNote | None = None
    """Which of the file's text came from OCR (None: none, or not looked up: see
    :func:`mark_ocr`)."""

    @property
    def best(self) -> Passage:
        """The best passage (every result has at least one)."""
        return self.passages[0]

    def from_ocr(self, passage: Passage | None = None) -> bool:
        """True when ``passage`` (default: the best) was read by OCR."""
        chosen = passage if passage is not None else self.best
        return self.ocr is not None and self.ocr.covers(chosen.page)


@dataclass
class SearchResponse:
    """The answer to a :class:`SearchRequest`.

    ``took_ms``: wall time of the search including the query's embedding;
    ``results``: files, best first; ``reasoning``/``forced``: the model's
    reasoning when asked for, and whether the embed token had to be forced;
    ``notes``: one-line remarks for the user (partial index, weak model, ...);
    ``vector_weight``: the weight the vector side had in hybrid fusion;
    ``deep``: the best files were re-ranked by the cross-encoder; ``stages``:
    milliseconds per stage ("search": the first stage, query embedding
    included; "rerank": the cross-encoder).
    """

    query: str
    mode: Mode
    took_ms: float
    results: list[FileResult]
    reasoning: str | None = None
    forced: bool = False
    notes: list[str] = field(default_factory=list)
    vector_weight: float | None = None
    deep: bool = False
    stages: dict[str, float] = field(default_factory=dict)


__all__ = ["MODES", "FileResult", "Mode", "Passage", "SearchRequest", "SearchResponse"]


def mark_ocr(results: list[FileResult], notes: dict[str, OcrNote]) -> None:
    """Set each result's ``ocr`` from ``notes`` (``Store.ocr_notes``, by file id)."""
    for result in results:
        result.ocr = notes.get(result.file_id)
