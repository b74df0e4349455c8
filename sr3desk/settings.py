"""Where sr3desk keeps its data, and the settings shared by the CLI and the app.

The data directory holds the index, the models folder and ``settings.json``. It is
``--db DIR`` when given, else ``$SR3DESK_HOME``, else the platform's user data
directory. It is created private (0700): it holds the text of the user's files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from sr3desk.errors import Sr3Error

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
MODELS_DIR = "models"
# In the user's config directory: the data directory chosen in the app's settings,
# used when neither --db nor $SR3DESK_HOME is given (so the CLI finds it too).
DATA_DIR_POINTER = "data-dir"


def data_dir(explicit: str | os.PathLike[str] | None = None, create: bool = True) -> Path:
    """Resolve the data directory (``--db``, ``$SR3DESK_HOME``, the one chosen in the
    app's settings, else the platform default).

    Takes an explicit directory or None; returns its absolute path, created 0700
    when ``create`` is true.
    """
    if explicit:
        path = Path(explicit)
    elif os.environ.get("SR3DESK_HOME"):
        path = Path(os.environ["SR3DESK_HOME"])
    elif chosen := _chosen_data_dir():
        path = chosen
    else:
        path = Path(platformdirs.user_data_dir("sr3desk", appauthor=False))
    path = path.expanduser().resolve()
    if create:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path, 0o700)
        except OSError as exc:
            raise Sr3Error(f"Cannot create data directory {path}: {exc.strerror}") from exc
    return path


def _pointer_file() -> Path:
    return Path(platformdirs.user_config_dir("sr3desk", appauthor=False)) / DATA_DIR_POINTER


def _chosen_data_dir() -> Path | None:
    try:
        text = _pointer_file().read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(text) if text else None


def set_default_data_dir(path: Path | None) -> None:
    """Make ``path`` the data directory used without --db or $SR3DESK_HOME.

    Written to the user's config directory (where the app's settings dialog
    keeps its choice); None goes back to the platform's default.
    """
    pointer = _pointer_file()
    if path is None:
        pointer.unlink(missing_ok=True)
        return
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(Path(path).expanduser().resolve()) + "\n", encoding="utf-8")


def models_dir(home: Path) -> Path:
    """Return (and create) the folder where fetched and installed models live."""
    path = home / MODELS_DIR
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@dataclass
class Settings:
    """User settings, persisted as JSON in the data directory."""

    model_path: str | None = None  # GGUF used for embedding; None: keyword search only
    # The model_path that `model install --default --if-unset` (make run) set, not the
    # user: while model_path still equals it, a later --if-unset may replace it.
    model_auto: str | None = None
    folders: list[str] = field(default_factory=list)  # watched roots
    exclude: list[str] = field(default_factory=list)  # user glob patterns
    max_file_mb: float = 64.0  # files larger than this are skipped
    threads: int | None = None  # llama.cpp threads; None: physical cores
    gpu_layers: int = 0  # layers offloaded to a GPU; -1: all
    reason_default: bool = False  # reason while typing (only a model whose reasoning helps)
    deep_search: bool = True  # Enter re-ranks the best results with the cross-encoder
    # Scanned PDF pages and image files read by OCR (off: they have no text layer);
    # Tesseract language codes joined by "+", each with its data installed.
    ocr: bool = True
    ocr_languages: str = "eng"
    # Keep the folders indexed while the window is closed: `sr3desk watch --background`
    # started at login (sr3desk.desktop.autostart) and followed by the window.
    background_indexing: bool = False
    background_noted: bool = False  # the window said once that closing leaves it running
    first_run_done: bool = False

    @classmethod
    def load(cls, home: Path) -> Settings:
        """Read settings from ``home``; defaults when the file is missing.

        An unreadable or malformed file is logged and replaced by defaults rather
        than stopping the app: settings are cheap to re-enter, the index is not.
        """
        path = home / SETTINGS_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.warning("Cannot read settings %s (%s); using defaults", path, exc)
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, home: Path) -> None:
        """Write settings atomically (temp file + rename) into ``home``."""
        data: dict[str, Any] = dataclasses.asdict(self)
        fd, tmp = tempfile.mkstemp(prefix=".settings-", dir=home)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, home / SETTINGS_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def resolve_model_path(explicit: str | None, home: Path) -> Path | None:
    """Pick the model: ``--model``, else ``$SR3DESK_MODEL``, else the configured one.

    Returns None when no model is configured (keyword search still works).
    """
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("SR3DESK_MODEL")
    if env:
        return Path(env).expanduser().resolve()
    configured = Settings.load(home).model_path
    return Path(configured) if configured else None
