"""Walking the user's folders: which files to index, and which to leave alone.

The walk uses ``os.scandir`` and one ``lstat`` per entry, nothing more: a re-scan
of an unchanged tree must cost little more than listing it. Rules:

- Symbolic links are never followed. A link whose target lies inside the roots
  is left out silently (the target is indexed under its own path); any other
  link (to outside the roots, dangling, a loop) is reported as skipped with the
  reason, so that the user sees why it is not searchable.
- Only regular files are ever opened (and :func:`content_hash` opens them with
  ``O_NONBLOCK`` and checks again with ``fstat``, so a FIFO swapped in between
  cannot block). FIFOs, sockets and devices are reported as skipped.
- Hidden files and folders, version-control and dependency folders, caches,
  virtual environments (any folder holding ``pyvenv.cfg``) and folders tagged
  with ``CACHEDIR.TAG`` are left out by default; user globs add to that.
- Files of a type extraction does not read (archives, binaries; images when OCR
  is off) are left out silently; files over the size limit are reported as
  skipped.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sr3desk.index.exclusions import (
    MARKER_FILES,
    SCRATCH_PREFIXES,
    SCRATCH_SUFFIXES,
    Rules,
    is_within,
)
from sr3desk.index.tables import KnownFiles
from sr3desk.index.types import IndexOptions

__all__ = ["Entry", "Rules", "ScanResult", "content_hash", "is_within", "scan", "scan_paths"]

log = logging.getLogger(__name__)

_HASH_BLOCK = 1024 * 1024


@dataclass
class Entry:
    """A file found by the walk: its lstat facts and, for a file that cannot be
    indexed (special file, symlink), ``skip`` with the reason."""

    path: str
    size: int
    mtime: float
    ino: int
    skip: str | None = None


@dataclass
class ScanResult:
    """Files found: ``entries`` that are new or changed (or cannot be indexed),
    ``unchanged`` paths whose size and mtime match the index; folders that could
    not be listed (their files must not be taken for deleted); the roots."""

    entries: list[Entry] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    missing_roots: list[str] = field(default_factory=list)


def _special_reason(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "not a regular file (a FIFO)"
    if stat.S_ISSOCK(mode):
        return "not a regular file (a socket)"
    if stat.S_ISCHR(mode):
        return "not a regular file (a character device)"
    if stat.S_ISBLK(mode):
        return "not a regular file (a block device)"
    return "not a regular file"


def _link_reason(path: str, rules: Rules) -> str | None:
    """Why a symlink is reported, or None when it is silently left out."""
    try:
        target = os.path.realpath(path, strict=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return "broken symbolic link"
    except RuntimeError:  # older Pythons report loops this way
        return "symbolic link loop"
    if rules.root_of(target) is not None:
        return None  # the target is indexed under its own path
    return "symbolic link to outside the indexed folders (not followed)"


def supported_name(path: str, images: bool = True) -> bool:
    """True when extraction reads files of this kind (decided by name, or by the
    first bytes for files without an extension); ``images``: image files count
    (False when OCR is off)."""
    from sr3desk.extract import supported

    return supported(Path(path), images)


def scan(
    roots: Iterable[str], options: IndexOptions, known: KnownFiles | None = None
) -> ScanResult:
    """Walk ``roots`` (folders or single files); returns what the indexer should see.

    Entries come in walk order (the indexer orders what it reads, newest first). A
    root that does not exist is listed in ``missing_roots`` and its files are not
    taken for deleted. ``known``: the index's files; those found unchanged go to
    ``unchanged`` as bare paths.
    """
    root_list = []
    result = ScanResult()
    for root in roots:
        absolute = os.path.abspath(os.path.expanduser(root))
        real = os.path.realpath(absolute)
        if not os.path.exists(real):
            result.missing_roots.append(absolute)
            continue
        root_list.append(real)
    rules = Rules(root_list, options)
    rules.known = known
    result.roots = rules.roots
    seen_dirs: set[tuple[int, int]] = set()
    for root in rules.roots:
        try:
            st = os.stat(root)
        except OSError:
            result.missing_roots.append(root)
            continue
        if stat.S_ISDIR(st.st_mode):
            _walk(root, rules, result, seen_dirs)
        else:
            entry = _file_entry(root, os.path.basename(root), st, rules, explicit=True)
            if entry is not None:
                result.entries.append(entry)
    return result


def scan_paths(paths: Iterable[str], roots: Sequence[str], options: IndexOptions) -> ScanResult:
    """Look at single paths (files or folders, as reported by the watcher).

    Folders are walked; paths outside ``roots`` or in excluded folders are
    ignored; paths that no longer exist are simply absent from the result.
    """
    rules = Rules(roots, options)
    result = ScanResult(roots=rules.roots)
    seen_dirs: set[tuple[int, int]] = set()
    for raw in paths:
        path = os.path.abspath(raw)
        if rules.root_of(path) is None or rules.path_excluded(path):
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue
        name = os.path.basename(path)
        if stat.S_ISDIR(st.st_mode):
            if path in rules.roots or not rules.dir_excluded(path, name):
                _walk(path, rules, result, seen_dirs)
        else:
            entry = _file_entry(path, name, st, rules, explicit=False)
            if entry is not None:
                result.entries.append(entry)
    unique = {e.path: e for e in result.entries}
    result.entries = sorted(unique.values(), key=lambda e: (-e.mtime, e.path))
    return result


def _file_entry(
    path: str, name: str, st: os.stat_result, rules: Rules, explicit: bool
) -> Entry | None:
    """Entry for one non-folder path (``st`` from lstat, or stat for a root)."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        if rules.file_excluded(path, name):
            return None
        reason = _link_reason(path, rules)
        if reason is None:
            return None
        return Entry(path, 0, st.st_mtime, st.st_ino, skip=reason)
    if not explicit and rules.file_excluded(path, name):
        return None
    if not stat.S_ISREG(mode):
        return Entry(path, 0, st.st_mtime, st.st_ino, skip=_special_reason(mode))
    if st.st_size > rules.options.max_file_bytes:
        from sr3desk.extract.types import human_bytes

        return Entry(
            path,
            st.st_size,
            st.st_mtime,
            st.st_ino,
            skip=f"exceeds {human_bytes(rules.options.max_file_bytes)} limit",
        )
    known = rules.known is not None and path in rules.known
    if not known and not supported_name(path, rules.options.ocr):
        return None
    return Entry(path, st.st_size, st.st_mtime, st.st_ino)


def _list_folder(
    folder: str, is_top: bool, result: ScanResult, seen_dirs: set[tuple[int, int]]
) -> list[os.DirEntry[str]]:
    """The entries of ``folder``; none for a folder already walked (a bind mount, a
    root inside another root), an unreadable one (recorded in ``result``) or, below
    the top, a virtual environment or a tagged cache."""
    try:
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            return []
        seen_dirs.add(key)
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError as exc:
        log.info("Cannot list %s: %s", folder, exc.strerror)
        result.unreadable.append(folder)
        return []
    if not is_top and any(os.path.lexists(os.path.join(folder, m)) for m in MARKER_FILES):
        return []
    return entries


def _walk(top: str, rules: Rules, result: ScanResult, seen_dirs: set[tuple[int, int]]) -> None:
    # The loop body runs once per file of the tree: it is written for speed, with
    # the rules of Rules.file_excluded inlined for the common regular file.
    options = rules.options
    hidden_ok = options.include_hidden
    defaults = options.default_excludes
    user = bool(rules.user)
    empty: dict[str, int] = {}
    known = rules.known.positions if rules.known is not None else empty
    sizes = rules.known.sizes if rules.known is not None else []
    mtimes = rules.known.mtimes if rules.known is not None else []
    limit = options.max_file_bytes
    images = options.ocr
    append = result.entries.append
    unchanged = result.unchanged.append
    is_reg = stat.S_ISREG
    stack = [top]
    while stack:
        folder = stack.pop()
        entries = _list_folder(folder, folder == top, result, seen_dirs)
        for entry in entries:
            name = entry.name
            if not hidden_ok and name[0] == ".":
                continue
            path = entry.path
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not rules.dir_excluded(path, name):
                        stack.append(path)
                    continue
                st_entry = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished between listing and stat
            if (
                is_reg(st_entry.st_mode)
                and st_entry.st_size <= limit
                and not (
                    defaults
                    and (
                        name.endswith(SCRATCH_SUFFIXES)
                        or name.startswith(SCRATCH_PREFIXES)
                        or name[0] == "#"
                    )
                )
                and not (user and rules.user_excluded(path, name))
            ):
                pos = known.get(path)
                if pos is not None:
                    if sizes[pos] == st_entry.st_size and mtimes[pos] == st_entry.st_mtime:
                        unchanged(path)
                    else:
                        append(Entry(path, st_entry.st_size, st_entry.st_mtime, st_entry.st_ino))
                elif supported_name(path, images):
                    append(Entry(path, st_entry.st_size, st_entry.st_mtime, st_entry.st_ino))
                continue
            item = _file_entry(path, name, st_entry, rules, explicit=False)
            if item is not None:
                append(item)


def content_hash(path: str, expect_size: int | None = None) -> str:
    """Hex blake2b (128 bits) of a regular file's bytes, read in 1 MiB blocks.

    Never blocks on a FIFO or device: the file is opened non-blocking and checked
    with fstat. Raises OSError (ENOENT when it vanished, EINVAL when it is not a
    regular file).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        digest = hashlib.blake2b(digest_size=16)
        while True:
            block = os.read(fd, _HASH_BLOCK)
            if not block:
                break
            digest.update(block)
        return digest.hexdigest()
    finally:
        os.close(fd)
