"""Which OCR setting an index was read with, and the files a change of it concerns.

Unchanged files are never read again, so a file's text keeps whatever the OCR
setting was when it was read. ``<index>/ocr.json`` remembers, per generation, the
setting of the last complete reading pass (:attr:`IndexOptions.ocr_key`: "" for OCR
off, else its languages). When the setting differs, the files it concerns are read
again once: with OCR on, those skipped for having no text layer; with OCR off or
other languages, those whose text came from OCR (their rows carry an
:class:`~sr3desk.index.types.OcrNote`). An index written before OCR existed has no
record, so its scanned PDFs are read by OCR on the first run.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from sr3desk.index.types import STATUS_INDEXED, STATUS_SKIPPED, FileRecord, OcrNote

log = logging.getLogger(__name__)

STATE_FILE = "ocr.json"
NO_TEXT_PREFIX = "no text layer"  # the skip reasons of scans and images without OCR


def last_key(index_dir: Path, generation: str) -> str | None:
    """The OCR key the generation was last read with; None when never recorded."""
    try:
        raw = json.loads((index_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = raw.get(generation) if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def remember_key(index_dir: Path, generation: str, key: str) -> None:
    """Record that ``generation`` was read with OCR key ``key`` (atomic write)."""
    path = index_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        state = raw if isinstance(raw, dict) else {}
    except (OSError, ValueError):
        state = {}
    if state.get(generation) == key:
        return
    state[generation] = key
    fd, tmp = tempfile.mkstemp(prefix=".ocr-", dir=index_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def concerned(record: FileRecord, key: str) -> bool:
    """True when ``record``'s stored text would differ under OCR key ``key``."""
    if record.status == STATUS_SKIPPED:
        return bool(key) and record.reason.startswith(NO_TEXT_PREFIX)
    if record.status == STATUS_INDEXED:
        note = OcrNote.parse(record.reason)
        return note is not None and note.languages != key
    return False


def rereads(records: list[FileRecord], key: str) -> set[str]:
    """Paths of ``records`` to read again under OCR key ``key``."""
    paths = {rec.path for rec in records if concerned(rec, key)}
    if paths:
        log.info("OCR setting changed: %d files to read again", len(paths))
    return paths
