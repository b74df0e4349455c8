"""Plain data passed between the index core, the searcher and the window.

Nothing here touches the disk or a model: these are the shapes that
:mod:`sr3desk.index.store`, :mod:`sr3desk.index.indexer`, ``sr3desk.search`` and
``sr3desk.gui`` agree on. Paths are absolute strings; times are POSIX seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# File status values in the files table.
STATUS_INDEXED = "indexed"  # text chunks written (vectors may still be pending)
STATUS_SKIPPED = "skipped"  # could not be read; ``reason`` says why


def normalize_ext(ext: str) -> str:
    """Return a file type as the store keeps it: lower case, no dot ("PDF" -> "pdf")."""
    return ext.strip().lstrip(".").lower()


@dataclass(frozen=True)
class Filters:
    """Restrictions on a search; empty fields mean no restriction.

    ``folders``: absolute folder paths; a hit must lie in one of them (any depth).
    ``exts``: file types without the dot, any case ("pdf", ".Md").
    ``modified_after`` / ``modified_before``: bounds on the file's mtime (POSIX
    seconds, inclusive / exclusive).
    """

    folders: tuple[str, ...] = ()
    exts: tuple[str, ...] = ()
    modified_after: float | None = None
    modified_before: float | None = None

    def __post_init__(self) -> None:
        # Normalise once here so every backend compares like with like.
        object.__setattr__(
            self,
            "folders",
            tuple(os.path.normpath(os.path.abspath(os.path.expanduser(f))) for f in self.folders),
        )
        object.__setattr__(self, "exts", tuple(normalize_ext(e) for e in self.exts if e.strip()))
        if (
            self.modified_after is not None
            and self.modified_before is not None
            and self.modified_after >= self.modified_before
        ):
            raise ValueError(
                "modified_after must be earlier than modified_before: swap the two dates"
            )

    @property
    def empty(self) -> bool:
        """True when nothing is filtered."""
        return not (
            self.folders
            or self.exts
            or self.modified_after is not None
            or self.modified_before is not None
        )


@dataclass
class ChunkHit:
    """One passage returned by the store.

    ``score`` is cosine similarity for vector search and BM25 for keyword search;
    ``rank`` is the 0-based position in the list it came from. ``start``/``end``
    are character offsets of the passage in the file's extracted text; ``page``
    is the 1-based page (None for formats without pages); ``heading`` is the
    heading path joined with " › ". ``ordinal`` orders a file's chunks.
    """

    chunk_id: str
    file_id: str
    path: str
    ext: str
    mtime: float
    size: int
    page: int | None
    start: int
    end: int
    heading: str
    text: str
    score: float = 0.0
    rank: int = 0
    ordinal: int = 0
    folder: str = ""
    vector: np.ndarray | None = field(default=None, repr=False, compare=False)
    # True for a vector hit returned without its passage (``vector_search(...,
    # with_text=False)``): text, span, page, heading and size are not filled in yet.
    partial: bool = False


@dataclass
class FileRecord:
    """A row of the files table: what the index knows about one file.

    ``status`` is :data:`STATUS_INDEXED` or :data:`STATUS_SKIPPED` (then ``reason``
    is short and user-facing, e.g. "the file is encrypted"). ``content_hash`` is
    the hex blake2b of the bytes. ``n_chunks`` is the number of text chunks of the
    generation the record belongs to; ``indexed_at`` is when it was written.
    """

    file_id: str
    path: str
    size: int
    mtime: float
    content_hash: str
    status: str = STATUS_INDEXED
    reason: str = ""
    indexed_at: float = 0.0
    n_chunks: int = 0
    kind: str = ""
    ext: str = ""
    folder: str = ""
    ino: int = 0

    def __post_init__(self) -> None:
        if not self.ext:
            self.ext = normalize_ext(os.path.splitext(self.path)[1])
        if not self.folder:
            self.folder = os.path.dirname(self.path)


@dataclass
class IndexStatus:
    """What ``sr3desk status`` and the window show.

    ``files``: files indexed (text searchable); ``chunks``: text chunks;
    ``embedded``: chunks with a vector; ``pending``: chunks still waiting for their
    vector (``chunks - embedded``); ``model``: id of the model whose vectors are
    served (None: keyword search only); ``skipped``: (path, reason) of files that
    could not be read. ``building`` is the model id of a generation being built
    to replace the served one after a model change (None when there is none),
    with its progress in ``building_embedded`` / ``building_chunks``.
    """

    files: int = 0
    chunks: int = 0
    pending: int = 0
    model: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    embedded: int = 0
    model_name: str | None = None
    model_path: str | None = None
    dim: int | None = None
    folders: list[str] = field(default_factory=list)
    building: str | None = None
    building_chunks: int = 0
    building_embedded: int = 0
    disk_bytes: int = 0
    last_indexed: float | None = None

    def to_json(self) -> dict[str, object]:
        """Return the JSON object of ``sr3desk status --json``."""
        return {
            "files": self.files,
            "chunks": self.chunks,
            "pending": self.pending,
            "model": self.model,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "embedded": self.embedded,
            "building": self.building,
        }


# Progress phases, in the order a run goes through them.
PHASE_UPGRADE = "upgrade"  # rewriting an index of an older release in the current layout
PHASE_SCAN = "scan"  # walking the folders
PHASE_EXTRACT = "extract"  # reading files; their text becomes keyword-searchable
PHASE_EMBED = "embed"  # computing vectors, newest files first
PHASE_OPTIMIZE = "optimize"  # index maintenance (full-text/ANN index, compaction)
PHASE_DONE = "done"


@dataclass
class Progress:
    """A progress report sent to the ``progress`` callback of ``Indexer.run``.

    ``files_done``/``files_total``: files read in this run out of those that need
    reading (unchanged files are not counted); ``current``: the file being read or
    embedded; ``chunks_embedded``/``chunks_total``: vectors computed out of those
    this run must compute; ``tokens_per_s``: measured embedding speed (0 until
    known); ``eta_s``: seconds left estimated from the measured speed and the
    tokens still to embed (None until there is a measurement). ``paused`` is true
    while a pause is in effect. ``ocr_pages``/``ocr_pages_per_s``: pages read by
    OCR in this run and their rate (per second of OCR time; 0 until measured). In
    the ``upgrade`` phase ``chunks_embedded`` / ``chunks_total`` count the stored
    vectors carried into the new layout.
    """

    phase: str
    files_done: int = 0
    files_total: int = 0
    current: str = ""
    chunks_embedded: int = 0
    chunks_total: int = 0
    tokens_per_s: float = 0.0
    eta_s: float | None = None
    files_skipped: int = 0
    paused: bool = False
    ocr_pages: int = 0
    ocr_pages_per_s: float = 0.0


@dataclass
class Summary:
    """What one ``Indexer.run`` or ``Indexer.update`` did.

    ``indexed``: files (re)read; ``unchanged``: files seen and found identical;
    ``renamed``: files re-pathed without re-reading; ``removed``: files gone from
    disk and dropped; ``skipped``: (path, reason) for files that could not be read
    in this run; ``stopped``: true when ``Control.stop`` ended the run early;
    ``ocr_pages``/``ocr_seconds``: pages read by OCR and the time it took.
    """

    scanned: int = 0
    indexed: int = 0
    unchanged: int = 0
    renamed: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks_added: int = 0
    chunks_embedded: int = 0
    tokens_embedded: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    stopped: bool = False
    ocr_pages: int = 0
    ocr_seconds: float = 0.0


@dataclass(frozen=True)
class IndexOptions:
    """How the indexer chooses, reads and commits files.

    ``exclude``: user glob patterns matched against the file name and the path
    relative to its root (``*.log``, ``drafts/**``); ``default_excludes``: also
    skip VCS folders, dependency and build folders, caches and virtual
    environments; ``include_hidden``: index dot files and dot folders;
    ``max_file_bytes``: larger files are recorded as skipped; ``max_tokens`` /
    ``overlap_tokens``: chunk size in the model's tokens; ``embed_batch``: chunks
    per embedding call; ``commit_files``: files per write while reading;
    ``commit_interval_s``: the longest time finished work waits before it is
    committed (bounds what a kill can lose); ``extract_timeout_s``: per-file time
    limit of the extraction worker (OCR included); ``ocr``: read scanned PDF pages
    and image files by OCR; ``ocr_languages``: Tesseract codes joined by "+".
    """

    exclude: tuple[str, ...] = ()
    default_excludes: bool = True
    include_hidden: bool = False
    max_file_bytes: int = 64 * 1024 * 1024
    max_tokens: int = 256
    overlap_tokens: int = 32
    embed_batch: int = 32
    commit_files: int = 64
    commit_interval_s: float = 3.0
    extract_timeout_s: float = 30.0
    ocr: bool = True
    ocr_languages: str = "eng"

    @property
    def ocr_key(self) -> str:
        """What a file's OCR depended on: "" with OCR off, else its languages."""
        return self.ocr_languages if self.ocr else ""

    def __post_init__(self) -> None:
        if self.max_file_bytes <= 0:
            raise ValueError("max_file_bytes must be positive: use e.g. 64 MiB")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError("overlap_tokens must be >= 0 and smaller than max_tokens")
        if self.embed_batch < 1 or self.commit_files < 1:
            raise ValueError("embed_batch and commit_files must be at least 1")
        if self.commit_interval_s <= 0:
            raise ValueError("commit_interval_s must be positive")


OCR_NOTE_PREFIX = "OCR "


@dataclass(frozen=True)
class OcrNote:
    """Which text of an indexed file came from OCR, kept as its row's ``reason``.

    ``languages``: the Tesseract languages it was read with ("eng"); ``pages``: the
    1-based pages read by OCR, or None when the whole file was (an image).
    :meth:`text` writes it ("OCR eng: pages 1-3, 7"), :meth:`parse` reads it back.
    """

    languages: str
    pages: frozenset[int] | None = None

    def covers(self, page: int | None) -> bool:
        """True when a passage on ``page`` (None: a file without pages) came from OCR."""
        return self.pages is None or (page is not None and page in self.pages)

    def text(self) -> str:
        """The note as stored: "OCR eng" (whole file) or "OCR eng: pages 1-3, 7"."""
        head = OCR_NOTE_PREFIX + self.languages
        if self.pages is None:
            return head
        return f"{head}: pages {page_ranges(sorted(self.pages))}"

    @classmethod
    def parse(cls, reason: str) -> OcrNote | None:
        """The note in an indexed file's ``reason``, or None when it has none."""
        if not reason.startswith(OCR_NOTE_PREFIX):
            return None
        head, _sep, tail = reason[len(OCR_NOTE_PREFIX) :].partition(": pages ")
        if not _sep:
            return cls(head.strip())
        pages: set[int] = set()
        for part in tail.split(","):
            lo, _dash, hi = part.strip().partition("-")
            if lo.isdigit():
                pages.update(range(int(lo), int(hi if hi.isdigit() else lo) + 1))
        return cls(head.strip(), frozenset(pages))


def page_ranges(pages: list[int]) -> str:
    """Sorted page numbers as ranges: [1, 2, 3, 7] -> "1-3, 7"."""
    parts: list[str] = []
    i = 0
    while i < len(pages):
        j = i
        while j + 1 < len(pages) and pages[j + 1] == pages[j] + 1:
            j += 1
        parts.append(str(pages[i]) if i == j else f"{pages[i]}-{pages[j]}")
        i = j + 1
    return ", ".join(parts)
