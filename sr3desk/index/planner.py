"""What changed: from a scan and the index's file rows to a plan of writes.

:func:`plan_changes` decides, without touching the index, which files are new
or changed (to be read), which were only touched (same content, new stat: re-
dated), which were renamed or moved (same size and content as a file that
disappeared: re-pathed without being read), which vanished (dropped) and which
cannot be indexed (recorded as skipped, with the reason). It reads the disk
only to hash the files whose stat changed, through ``hash_file``, so a test can
run it on plain data.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sr3desk.index.scan import Entry, ScanResult, content_hash, is_within
from sr3desk.index.tables import KnownFiles, new_file_id
from sr3desk.index.types import STATUS_INDEXED, STATUS_SKIPPED, FileRecord

# Indexed files elsewhere in the roots that may be the source of a move, for the
# sizes of the new files (the watcher's moves whose halves come in two updates).
MovedAwayFn = Callable[[list[int]], Iterable[FileRecord]]


@dataclass
class ReadTask:
    """A file to read: its scan entry, its old row (None: new) and its hash if known."""

    entry: Entry
    old: FileRecord | None
    digest: str = ""


@dataclass
class ChangePlan:
    """What a scan means for the index, in the order it is written.

    ``skips``: rows of files that cannot be indexed; ``touched``: (old, new) rows
    of files whose content did not change; ``moves``: (old, new) rows of files
    renamed or moved; ``gone``: rows of files no longer on disk; ``to_read``:
    files to extract, newest first. ``scanned``/``unchanged`` count files seen;
    ``skipped``: (path, reason) for the summary.
    """

    scanned: int = 0
    unchanged: int = 0
    skips: list[FileRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    touched: list[tuple[FileRecord, FileRecord]] = field(default_factory=list)
    moves: list[tuple[FileRecord, FileRecord]] = field(default_factory=list)
    gone: list[FileRecord] = field(default_factory=list)
    to_read: list[ReadTask] = field(default_factory=list)


def file_record(
    entry: Entry,
    old: FileRecord | None,
    *,
    status: str = STATUS_INDEXED,
    reason: str = "",
    digest: str = "",
    keep: FileRecord | None = None,
    kind: str = "",
    n_chunks: int = 0,
) -> FileRecord:
    """A new file row for ``entry`` (keeping ``old``'s id); ``keep``: copy the
    text facts (hash, status, chunks, kind) from this row."""
    return FileRecord(
        file_id=old.file_id if old is not None else new_file_id(),
        path=entry.path,
        size=entry.size,
        mtime=entry.mtime,
        content_hash=digest or (keep.content_hash if keep else ""),
        status=keep.status if keep else status,
        reason=keep.reason if keep else reason,
        indexed_at=time.time(),
        n_chunks=keep.n_chunks if keep else n_chunks,
        kind=keep.kind if keep else kind,
        ino=entry.ino,
    )


def unreadable_reason(exc: OSError) -> str:
    """The user-facing reason a file could not be opened."""
    if exc.errno == errno.ENOENT:
        return "file vanished"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return f"cannot read: {exc.strerror or exc}"


def plan_changes(
    result: ScanResult,
    known: KnownFiles,
    scopes: Sequence[str],
    *,
    hash_file: Callable[[str], str] = content_hash,
    moved_away: MovedAwayFn | None = None,
    force: frozenset[str] = frozenset(),
) -> ChangePlan:
    """Compare ``result`` (a scan of ``scopes``) with the index's ``known`` files.

    Files under ``scopes`` that the scan did not see are gone, unless their
    folder could not be listed. ``moved_away`` offers more rename sources (see
    :data:`MovedAwayFn`). ``force``: paths to read even when unchanged (their
    stored text depends on a setting that changed).
    """
    plan = ChangePlan(scanned=len(result.entries) + len(result.unchanged))
    plan.unchanged = len(result.unchanged)
    todo = _new_or_changed(result, known, plan, force)
    plan.gone = _gone(result, known, scopes)
    sources: dict[tuple[int, str], list[FileRecord]] = {}
    for rec in plan.gone:
        if rec.status == STATUS_INDEXED and rec.content_hash:
            sources.setdefault((rec.size, rec.content_hash), []).append(rec)
    if moved_away is not None:
        _add_sources(sources, plan.gone, moved_away([e.size for e, old in todo if old is None]))
    _match(todo, sources, plan, hash_file, force)
    return plan


def _new_or_changed(
    result: ScanResult, known: KnownFiles, plan: ChangePlan, force: frozenset[str]
) -> list[tuple[Entry, FileRecord | None]]:
    """(entry, old row) of files to hash or read, newest first; records skips."""
    todo: list[tuple[Entry, FileRecord | None]] = []
    for entry in result.entries:
        if (
            entry.skip is None
            and entry.path not in force
            and known.same(entry.path, entry.size, entry.mtime)
        ):
            plan.unchanged += 1  # the common case of a re-scan: nothing to do
            continue
        old = known.get(entry.path)
        if entry.skip is None:
            todo.append((entry, old))
        elif (
            old is not None
            and old.status == STATUS_SKIPPED
            and old.reason == entry.skip
            and old.mtime == entry.mtime
        ):
            plan.unchanged += 1
        else:
            plan.skips.append(file_record(entry, old, status=STATUS_SKIPPED, reason=entry.skip))
            plan.skipped.append((entry.path, entry.skip))
    todo.sort(key=lambda item: (-item[0].mtime, item[0].path))
    return todo


def _gone(result: ScanResult, known: KnownFiles, scopes: Sequence[str]) -> list[FileRecord]:
    """Known files under ``scopes`` the scan did not see (none when it saw all)."""
    seen_known = len(result.unchanged) + sum(e.path in known for e in result.entries)
    if seen_known == len(known):
        return []
    seen = {*result.unchanged, *(e.path for e in result.entries)}
    out = []
    for path in known.paths:
        if (
            path not in seen
            and any(is_within(path, s) for s in scopes)
            and not any(is_within(path, u) for u in result.unreadable)
        ):
            rec = known.get(path)
            if rec is not None:
                out.append(rec)
    return out


def _add_sources(
    sources: dict[tuple[int, str], list[FileRecord]],
    gone: list[FileRecord],
    candidates: Iterable[FileRecord],
) -> None:
    taken = {rec.file_id for rec in gone}
    for rec in candidates:
        if rec.file_id not in taken and rec.content_hash:
            sources.setdefault((rec.size, rec.content_hash), []).append(rec)
            taken.add(rec.file_id)


def _match(
    todo: list[tuple[Entry, FileRecord | None]],
    sources: dict[tuple[int, str], list[FileRecord]],
    plan: ChangePlan,
    hash_file: Callable[[str], str],
    force: frozenset[str] = frozenset(),
) -> None:
    """Hash what changed; sort it into touched, moved and to-read (``force``: always
    read)."""
    source_sizes = {size for size, _h in sources}
    for entry, old in todo:
        digest = ""
        if old is not None or entry.size in source_sizes:
            try:
                digest = hash_file(entry.path)
            except OSError as exc:
                reason = unreadable_reason(exc)
                plan.skips.append(file_record(entry, old, status=STATUS_SKIPPED, reason=reason))
                plan.skipped.append((entry.path, reason))
                continue
        if (
            old is not None
            and old.status == STATUS_INDEXED
            and digest == old.content_hash
            and entry.path not in force
        ):
            plan.touched.append((old, file_record(entry, old, digest=digest, keep=old)))
            plan.unchanged += 1
            continue
        found = sources.get((entry.size, digest)) if old is None else None
        if found:
            source = found.pop()
            if not found:
                del sources[(entry.size, digest)]
            plan.moves.append((source, file_record(entry, source, digest=digest, keep=source)))
            if source in plan.gone:  # else a file moved away outside this update's scope
                plan.gone.remove(source)
            continue
        plan.to_read.append(ReadTask(entry, old, digest))
