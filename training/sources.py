"""Where training documents come from: folders, FOLDOC and the Jargon File.

A folder is read file by file through the app's own extraction (the same text the
indexer would see). Two dictionaries that ship as Debian packages are read
directly, one :class:`~sr3desk.extract.types.Document` per entry with the
headword as its heading: FOLDOC in dictd format (``foldoc.dict.dz`` with its
``foldoc.index``) and the Jargon File as plain text (``jargon.txt.gz``).

A source that is, or leads to, the manual pages or info manuals kept for
evaluation is refused before anything is read
(:func:`training.data.reserved.check_not_reserved`).

Each document comes with a stable key (source name and relative path, or
dictionary and headword): the held-out split is made on these keys.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from sr3desk.errors import ExtractError
from sr3desk.extract.types import Document, Heading
from training.data.reserved import check_not_reserved

log = logging.getLogger(__name__)

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# {cross reference} markup in both dictionaries.
_XREF = re.compile(r"\{([^{}]*)\}")
_JARGON_ENTRY = re.compile(r"^   :([^:]+):(.*)$")
# The lexicon is followed by appendices that are not entries.
_JARGON_END = re.compile(r"^\s*Part\W+III\.")


def source_kind(source: str | Path) -> str:
    """``folder``, ``foldoc`` or ``jargon`` for a source path; ValueError otherwise."""
    p = check_not_reserved(source)
    if p.is_dir():
        return "folder"
    if p.name.endswith((".dict.dz", ".dict")):
        return "foldoc"
    if p.name.startswith("jargon") and p.name.endswith((".txt", ".txt.gz")):
        return "jargon"
    if not p.exists():
        raise ValueError(f"source {p} does not exist")
    raise ValueError(
        f"source {p} is neither a folder, a dictd file (*.dict.dz) nor the Jargon File "
        "(jargon*.txt[.gz])"
    )


def iter_documents(
    source: str | Path,
    include: Sequence[str] = (),
    max_files: int = 0,
    keep: Callable[[str], bool] | None = None,
) -> Iterator[tuple[str, Document]]:
    """Yield ``(key, document)`` for every usable document of ``source``, sorted by key.

    ``include`` are glob patterns for folder sources (empty: every supported file);
    ``keep`` (optional) is asked for each key first, so a folder's files it rejects
    are never extracted; ``max_files`` > 0 keeps the first that many documents.
    Unreadable files are logged and skipped.
    """
    check_not_reserved(source)
    kind = source_kind(source)
    if kind == "folder":
        docs: Iterator[tuple[str, Document]] = _folder_documents(Path(source), include, keep)
    else:
        entries = _foldoc_documents if kind == "foldoc" else _jargon_documents
        docs = (kv for kv in entries(Path(source)) if keep is None or keep(kv[0]))
    for n, item in enumerate(docs):
        if max_files and n >= max_files:
            return
        yield item


def _folder_files(root: Path, include: Sequence[str]) -> list[Path]:
    from sr3desk.extract import supported

    if include:
        found = {p for pattern in include for p in root.glob(pattern)}
    else:
        found = set(root.rglob("*"))
    for path in sorted(found):  # before anything is opened: a link inside is refused too
        check_not_reserved(path)
    return sorted(p for p in found if p.is_file() and supported(p))


def _folder_documents(
    root: Path, include: Sequence[str], keep: Callable[[str], bool] | None = None
) -> Iterator[tuple[str, Document]]:
    from sr3desk.extract import Extractor

    files = _folder_files(root, include)
    if keep is not None:
        files = [p for p in files if keep(_folder_key(root, p))]
    log.info("%s: %d supported files", root, len(files))
    # The app's extractor runs each file in a worker process with time and memory
    # limits, so one broken file in a user's folder cannot stop the build.
    extractor = Extractor()
    try:
        for path in files:
            try:
                doc = extractor.extract(path)
            except ExtractError as exc:
                log.warning("skipping %s: %s", path, exc.reason)
                continue
            if doc.text.strip():
                yield _folder_key(root, path), doc
    finally:
        extractor.close()


def _folder_key(root: Path, path: Path) -> str:
    return f"{root.name}/{path.relative_to(root).as_posix()}"


def _b64(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 64 + _B64.index(ch)
    return value


def _entry_document(path: Path, title: str, body: str) -> Document:
    body = _XREF.sub(r"\1", body).strip()
    text = f"{title}\n\n{body}"
    return Document(
        path=path,
        kind="text",
        text=text,
        headings=[Heading(offset=0, level=1, title=title)],
        title=title,
    )


def _foldoc_documents(path: Path) -> Iterator[tuple[str, Document]]:
    index = path.with_name(path.name.removesuffix(".dz").removesuffix(".dict") + ".index")
    if not index.is_file():
        raise ValueError(f"{path} has no {index.name} beside it: dictd needs both")
    opener = gzip.open if path.suffix == ".dz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    spans: dict[tuple[int, int], list[str]] = {}
    for line in index.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if (
            len(parts) < 3
            or parts[0].startswith("00-database")
            or parts[0].startswith("00database")
        ):
            continue
        spans.setdefault((_b64(parts[1]), _b64(parts[2])), []).append(parts[0])
    entries: list[tuple[str, Document]] = []
    for (offset, length), words in spans.items():
        raw = data[offset : offset + length].decode("utf-8", errors="replace")
        lines = raw.strip("\n").split("\n")
        # An entry starts with its headword lines (aliases), then an indented body.
        first_body = next((i for i, ln in enumerate(lines) if ln.startswith((" ", "\t"))), 1)
        title = lines[0].strip() or words[0]
        body = "\n".join(ln.strip() for ln in lines[first_body:])
        if body.strip():
            entries.append((f"foldoc/{title}", _entry_document(path, title, body)))
    entries.sort(key=lambda kv: kv[0])
    yield from entries


def _jargon_documents(path: Path) -> Iterator[tuple[str, Document]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        lines = fh.read().split("\n")
    entries: dict[str, Document] = {}
    title: str | None = None
    body: list[str] = []

    def flush() -> None:
        if title and any(b.strip() for b in body):
            key = f"jargon/{title}"
            if key not in entries:
                entries[key] = _entry_document(path, title, "\n".join(body))

    for line in lines:
        if _JARGON_END.match(line):
            break
        m = _JARGON_ENTRY.match(line)
        if m:
            flush()
            title = m.group(1).strip()
            rest = m.group(2).strip()
            body = [rest] if rest else []
        elif title is not None:
            body.append(line.strip())
    flush()
    yield from sorted(entries.items())


def document_keys(source: str | Path, include: Sequence[str] = ()) -> list[str]:
    """The keys :func:`iter_documents` would yield for ``source`` (a folder's are listed,
    not extracted; a dictionary is parsed), sorted."""
    kind = source_kind(source)
    if kind == "folder":
        root = Path(source)
        return [_folder_key(root, p) for p in _folder_files(root, include)]
    return [key for key, _doc in iter_documents(source)]


__all__ = ["document_keys", "iter_documents", "source_kind"]
