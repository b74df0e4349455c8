"""Which folders and files a scan leaves out, and which root a path belongs to.

Hidden files and folders, version-control and dependency folders, caches,
virtual environments (any folder holding ``pyvenv.cfg``) and folders tagged with
``CACHEDIR.TAG`` are left out by default, and so are editors' scratch files;
the user's globs add to that.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sr3desk.index.types import IndexOptions

if TYPE_CHECKING:
    from sr3desk.index.tables import KnownFiles

# Folders never worth indexing: version control, dependencies, caches, build
# output that tools regenerate. Matched against the folder's own name.
DEFAULT_EXCLUDED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".bzr",
        "_darcs",
        "CVS",
        "node_modules",
        "bower_components",
        "jspm_packages",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".venv",
        ".cache",
        "site-packages",
        "dist-packages",
        ".ipynb_checkpoints",
        ".eggs",
        ".gradle",
        ".next",
        ".nuxt",
        ".svelte-kit",
        ".terraform",
        ".Trash",
        "__MACOSX",
        "$RECYCLE.BIN",
        "System Volume Information",
        "lost+found",
    }
)
DEFAULT_EXCLUDED_DIR_GLOBS = ("*.egg-info", ".Trash-*")
# A folder holding one of these is a tool's private area (PEP 405 virtual
# environment, https://bford.info/cachedir/ cache tag).
MARKER_FILES = frozenset({"pyvenv.cfg", "CACHEDIR.TAG"})
# Editor and office scratch files (as prefixes and suffixes: tested on every file).
SCRATCH_PREFIXES = ("~$", ".~lock.")
SCRATCH_SUFFIXES = ("~", ".swp", ".tmp", ".part")


def is_within(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or lies below it (both absolute, normalised)."""
    if path == folder:
        return True
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    return path.startswith(prefix)


class Rules:
    """Exclusion rules for one set of roots (compiled once per scan)."""

    def __init__(self, roots: Sequence[str], options: IndexOptions) -> None:
        self.roots = [os.path.realpath(r) for r in roots]
        self.options = options
        self.user = tuple(p.strip() for p in options.exclude if p.strip())
        # One compiled pattern per list: a re-scan tests every name against them.
        self._dir_globs = _compile(DEFAULT_EXCLUDED_DIR_GLOBS)
        self.known: KnownFiles | None = None  # the index's files, for the fast path

    def root_of(self, path: str) -> str | None:
        """The root ``path`` lies in (the deepest one), or None."""
        best = None
        for root in self.roots:
            if is_within(path, root) and (best is None or len(root) > len(best)):
                best = root
        return best

    def user_excluded(self, path: str, name: str) -> bool:
        """True when ``path`` (named ``name``) matches one of the user's exclude patterns
        (by name, or by its path relative to its root)."""
        if not self.user:
            return False
        root = self.root_of(path)
        rel = os.path.relpath(path, root).replace(os.sep, "/") if root else name
        for pattern in self.user:
            pat = pattern.rstrip("/")
            if fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(rel, pat):
                return True
            if pat.endswith("/**") and (rel == pat[:-3] or rel.startswith(pat[:-3] + "/")):
                return True
        return False

    def dir_excluded(self, path: str, name: str) -> bool:
        """True when the folder ``path`` (named ``name``) is not walked."""
        if self.options.default_excludes and (
            name in DEFAULT_EXCLUDED_DIRS or self._dir_globs.match(name)
        ):
            return True
        if not self.options.include_hidden and name.startswith("."):
            return True
        return self.user_excluded(path, name)

    def file_excluded(self, path: str, name: str) -> bool:
        """True when the file ``path`` is left out without a word."""
        if not self.options.include_hidden and name.startswith("."):
            return True
        if self.options.default_excludes and _scratch(name):
            return True
        return self.user_excluded(path, name)

    def path_excluded(self, path: str) -> bool:
        """True when ``path`` or any folder between it and its root is excluded
        (for single paths reported by the watcher)."""
        root = self.root_of(path)
        if root is None:
            return True
        rel = os.path.relpath(path, root)
        if rel == ".":
            return False
        parts = rel.split(os.sep)
        current = root
        for part in parts[:-1]:
            current = os.path.join(current, part)
            if self.dir_excluded(current, part):
                return True
        return False


def _scratch(name: str) -> bool:
    """True for editor backups, autosaves, office lock files and partial downloads."""
    return (
        name.endswith(SCRATCH_SUFFIXES)
        or name.startswith(SCRATCH_PREFIXES)
        or (len(name) > 1 and name[0] == "#" and name[-1] == "#")
    )


def _compile(globs: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))
