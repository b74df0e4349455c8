"""Training corpora from text that ships in Debian packages, and the paths training never reads.

Each :class:`Corpus` names a package, where its text is, and how it is read: the
Python docs' reST sources and the R and gnuplot manuals (PDF) through the app's
own extraction, FOLDOC and the Jargon File (dictionaries) as one document per
entry. A dictionary entry's document is its definition alone with the headword as
its heading, so its heading pseudo-query is the term and its passage the
definition: (term -> definition) pairs that do not match by copying the term.

The system's manual pages and info manuals are reserved for evaluation.
:func:`check_not_reserved` (:mod:`training.data.reserved`, re-exported here)
refuses any path under ``/usr/share/man``, ``/usr/share/info`` (and their
/usr/local and /usr variants), any file or folder named like a manual page or an
info file, and any symbolic link that leads there; every source a build reads
passes through it (:mod:`training.sources`). :func:`reserved_copies` says which
files a corpus's package also ships there: the same text in another format
(python3.11-doc ships ``python3.11.info``, gnuplot-doc ``gnuplot.info``), which an
evaluation on the info manuals must know.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sr3desk.extract.types import Document, Heading
from training.data.reserved import RESERVED_ROOTS, ReservedPathError, check_not_reserved
from training.sources import document_keys, iter_documents

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Corpus:
    """Text from one Debian package, read as documents.

    ``kind``: ``files`` (the app's extraction of ``root``'s files matching
    ``include``), ``foldoc`` (a dictd file) or ``jargon`` (the Jargon File).
    """

    name: str
    package: str
    root: str
    include: tuple[str, ...] = ()
    kind: str = "files"

    @property
    def dictionary(self) -> bool:
        """True for dictionaries: one (term -> definition) document per entry."""
        return self.kind in ("foldoc", "jargon")


CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in (
        Corpus(
            "python-docs",
            "python3.11-doc",
            "/usr/share/doc/python3.11/html/_sources",
            ("**/*.rst.txt",),
        ),
        # The manuals, not refman.pdf/fullrefman.pdf (3,500 pages of function help pages).
        Corpus("r-manuals", "r-doc-pdf", "/usr/share/R/doc/manual", ("R-*.pdf",)),
        Corpus("gnuplot", "gnuplot-doc", "/usr/share/doc/gnuplot", ("gnuplot.pdf",)),
        Corpus("foldoc", "dict-foldoc", "/usr/share/dictd/foldoc.dict.dz", kind="foldoc"),
        Corpus("jargon", "jargon-text", "/usr/share/doc/jargon-text/jargon.txt.gz", kind="jargon"),
        # Breadth for the default model v2: word senses, prose definitions, system
        # administration, a database and a programming language's manuals.
        Corpus("wordnet", "dict-wn", "/usr/share/dictd/wn.dict.dz", kind="foldoc"),
        Corpus("gcide", "dict-gcide", "/usr/share/dictd/gcide.dict.dz", kind="foldoc"),
        Corpus(
            "debian-reference", "debian-reference-en", "/usr/share/debian-reference", ("*.en.html",)
        ),
        Corpus(
            "debian-handbook",
            "debian-handbook",
            "/usr/share/doc/debian-handbook/html/en-US",
            ("*.html",),
        ),
        Corpus("sqlite", "sqlite3-doc", "/usr/share/doc/sqlite3", ("*.html", "lang_*/*.html")),
        Corpus("go", "golang-1.19-doc", "/usr/share/doc/golang-1.19-doc/html", ("*.html",)),
    )
}


def get_corpus(name: str) -> Corpus:
    """The corpus called ``name``; ValueError listing the known names otherwise."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}: use one of {', '.join(CORPORA)}")
    return CORPORA[name]


def iter_corpus(
    name: str, max_files: int = 0, sample: int = 0, seed: int = 0
) -> Iterator[tuple[str, Document]]:
    """Yield ``(key, document)`` of corpus ``name``, keys ``name/...``, sorted.

    ``sample`` > 0 keeps a seeded random sample of that many documents (chosen by
    key before anything is extracted); ``max_files`` > 0 then keeps the first that
    many. Raises ValueError when the package is not installed (naming it) and
    :class:`ReservedPathError` for reserved paths.
    """
    corpus = get_corpus(name)
    root = Path(corpus.root)
    check_not_reserved(root)
    if not root.exists():
        raise ValueError(
            f"corpus {name}: {root} is missing: install Debian's {corpus.package} "
            "(make traindata installs every corpus's package)"
        )
    keep = None
    if sample:
        keys = document_keys(root, corpus.include)
        chosen = set(sorted(keys, key=lambda k: (_stable_hash(seed, k), k))[:sample])
        keep = chosen.__contains__
        log.info("corpus %s: a sample of %d of %d documents", name, len(chosen), len(keys))
    for key, doc in iter_documents(root, corpus.include, max_files, keep):
        tail = key.split("/", 1)[1] if "/" in key else key
        yield f"{name}/{tail}", (_definition_only(doc) if corpus.dictionary else doc)


def _stable_hash(seed: int, key: str) -> int:
    digest = hashlib.sha256(f"{seed}:sample:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _definition_only(doc: Document) -> Document:
    """A dictionary entry without its headword line: the headword stays its heading."""
    title = doc.title or (doc.headings[0].title if doc.headings else "")
    body = doc.text
    if title and body.startswith(title):
        body = body[len(title) :].lstrip("\n")
    return Document(
        path=doc.path,
        kind=doc.kind,
        text=body,
        headings=[Heading(offset=0, level=1, title=title)] if title else [],
        title=title,
    )


def reserved_copies(name: str) -> list[str]:
    """Files that the corpus's package ships under the reserved folders (names only).

    Asks dpkg for the package's file list; nothing under those folders is opened.
    Returns [] when dpkg does not know the package.
    """
    corpus = get_corpus(name)
    try:
        out = subprocess.run(
            ["dpkg-query", "-L", corpus.package],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    roots = [PurePosixPath(str(root)) for root in RESERVED_ROOTS]
    found = []
    for line in out.splitlines():
        p = PurePosixPath(line.strip())
        if any(p != root and p.is_relative_to(root) for root in roots):
            found.append(str(p))
    return sorted(found)


__all__ = [
    "CORPORA",
    "RESERVED_ROOTS",
    "Corpus",
    "ReservedPathError",
    "check_not_reserved",
    "get_corpus",
    "iter_corpus",
    "reserved_copies",
]
