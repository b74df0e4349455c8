"""The paths no training build reads: the manual pages and info manuals kept for evaluation.

:func:`check_not_reserved` refuses any path under ``/usr/share/man``,
``/usr/share/info`` (and their /usr/local and /usr variants), any file or folder
named like a manual page or an info file, and any symbolic link that leads there.
Every source a build reads passes through it (:mod:`training.sources`); the
corpora (:mod:`training.data.corpora`) check their roots with it too.
"""

from __future__ import annotations

import re
from pathlib import Path

RESERVED_ROOTS = tuple(
    Path(p)
    for p in (
        "/usr/share/man",
        "/usr/share/info",
        "/usr/local/share/man",
        "/usr/local/share/info",
        "/usr/local/man",
        "/usr/man",
        "/usr/info",
        "/var/cache/man",
    )
)
# man1 .. man9, mann, man3p ...: a manual-page section folder anywhere.
_MAN_DIR = re.compile(r"^(man|cat)[1-9n][a-z]*$")
# ls.1.gz, printf.3p, gnuplot.info, gnuplot.info-2.gz
_MAN_FILE = re.compile(r"\.[1-9n][a-z]*(\.(gz|bz2|xz|zst))?$")
_INFO_FILE = re.compile(r"\.info(-\d+)?(\.(gz|bz2|xz|zst))?$")


class ReservedPathError(ValueError):
    """A source is (or leads to) the manual pages or info manuals kept for evaluation."""


def _reserved_reason(path: Path) -> str | None:
    for root in RESERVED_ROOTS:
        if path == root or path.is_relative_to(root):
            return f"it is under {root}"
    for part in path.parts[:-1]:
        if _MAN_DIR.match(part):
            return f"it is in a manual-page folder ({part})"
    name = path.name
    if _INFO_FILE.search(name):
        return "it is an info manual"
    if _MAN_DIR.match(name):
        return "it is a manual-page folder"
    if _MAN_FILE.search(name) and not name.endswith((".txt", ".pdf", ".html")):
        return "it is named like a manual page"
    return None


def check_not_reserved(path: str | Path) -> Path:
    """Raise :class:`ReservedPathError` when ``path`` is kept for evaluation; else return it.

    Checks the path as given and with its symbolic links resolved (nothing is opened).
    """
    given = Path(path).absolute()
    for candidate in (given, given.resolve()):
        reason = _reserved_reason(candidate)
        if reason:
            raise ReservedPathError(
                f"{path}: not read for training because {reason}. The system's manual "
                "pages and info manuals (/usr/share/man, /usr/share/info) and copies of "
                "them are reserved for evaluation: remove this source."
            )
    return given


__all__ = ["RESERVED_ROOTS", "ReservedPathError", "check_not_reserved"]
