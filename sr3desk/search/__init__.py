"""Search: hybrid keyword + vector retrieval over the index, grouped by file.

``Searcher(store, embedder).search(SearchRequest(...)) -> SearchResponse``; see
:mod:`sr3desk.search.searcher`. Fusion weights come from the model's measured
quality (:mod:`sr3desk.search.calibration`) so a weak model never makes search worse
than keyword search.
"""

from __future__ import annotations

from sr3desk.search.calibration import VectorWeight
from sr3desk.search.searcher import Searcher
from sr3desk.search.types import MODES, FileResult, Mode, Passage, SearchRequest, SearchResponse

__all__ = [
    "MODES",
    "FileResult",
    "Mode",
    "Passage",
    "SearchRequest",
    "SearchResponse",
    "Searcher",
    "VectorWeight",
]
