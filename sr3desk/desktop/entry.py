"""The application entry and icon in the desktop's applications menu.

``sr3desk desktop install`` (and ``make run``) writes, for the user alone:

- ``$XDG_DATA_HOME/applications/sr3desk.desktop``, the entry, whose ``Exec`` is the
  absolute path of this installation's ``sr3desk`` script;
- ``$XDG_DATA_HOME/icons/hicolor/scalable/apps/sr3desk.svg`` and one PNG per size in
  :data:`ICON_SIZES` (``hicolor/<n>x<n>/apps/sr3desk.png``), rendered from the same SVG.

``$XDG_DATA_HOME`` defaults to ``~/.local/share``. The entry's file name is the app
id the window announces (``QGuiApplication.setDesktopFileName``: the Wayland app
id) and its X11 ``WM_CLASS`` (``StartupWMClass``), so the running window groups
with its launcher. :func:`uninstall` removes every file :func:`install` wrote.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sr3desk.errors import Sr3Error

log = logging.getLogger(__name__)

APP_ID = "sr3desk"  # the entry's file name, the Wayland app id, the X11 WM_CLASS
APP_NAME = "sr3desk"  # Name= and the application (display) name
ICON_NAME = "sr3desk"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICON_SVG = Path(__file__).resolve().parent.parent / "resources" / "sr3desk.svg"

# Characters that make the Exec key quote an argument (Desktop Entry spec, "The Exec key").
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def data_home() -> Path:
    """Return ``$XDG_DATA_HOME`` (when set to an absolute path), else ``~/.local/share``."""
    return _xdg("XDG_DATA_HOME", ".local/share")


def config_home() -> Path:
    """Return ``$XDG_CONFIG_HOME`` (when set to an absolute path), else ``~/.config``."""
    return _xdg("XDG_CONFIG_HOME", ".config")


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var, "")
    # The spec: a relative path in these variables is invalid and is ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / default


def launcher() -> list[str]:
    """Return the command that runs this installation's ``sr3desk``.

    That is the ``sr3desk`` script beside the running interpreter (the virtual
    environment's ``bin/``), as an absolute path; without one, the interpreter
    with ``-m sr3desk``.
    """
    script = Path(sys.executable).parent / "sr3desk"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script.absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "sr3desk"]


def _escape_value(text: str) -> str:
    """Escape a string value of a desktop entry (backslash, newline, tab)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def exec_line(argv: list[str]) -> str:
    """Return the ``Exec`` value that runs ``argv``: each argument quoted as the
    Desktop Entry spec asks, then escaped as a string value.

    >>> exec_line(["/opt/my apps/sr3desk", "gui"])
    '"/opt/my apps/sr3desk" gui'
    >>> exec_line(["/home/a/100%/sr3desk"])
    '/home/a/100%%/sr3desk'
    """
    parts = []
    for arg in argv:
        if "\n" in arg:
            raise Sr3Error(f"Cannot put {arg!r} in a desktop entry: it contains a line break")
        arg = arg.replace("%", "%%")
        if not arg or any(c in _RESERVED for c in arg):
            inner = "".join("\\" + c if c in '"`$\\' else c for c in arg)
            arg = f'"{inner}"'
        parts.append(arg)
    return _escape_value(" ".join(parts))


def entry_text(command: list[str] | None = None) -> str:
    """Return the application entry's text; ``command`` defaults to :func:`launcher`."""
    argv = command if command is not None else launcher()
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        f"Name={APP_NAME}",
        "GenericName=Document Search",
        "Comment=Search your documents by meaning, offline",
        f"Exec={exec_line([*argv, 'gui'])}",
        f"TryExec={_escape_value(argv[0])}",
        f"Icon={ICON_NAME}",
        "Terminal=false",
        "StartupNotify=true",
        f"StartupWMClass={APP_ID}",
        "Categories=Utility;",
        "Keywords=search;find;documents;files;pdf;semantic;",
    ]
    return "\n".join(lines) + "\n"


def entry_path(data: Path | None = None) -> Path:
    """Return where the application entry goes under ``data`` (default: :func:`data_home`)."""
    return (data or data_home()) / "applications" / f"{APP_ID}.desktop"


def icon_paths(data: Path | None = None) -> list[Path]:
    """Return the icon files the install writes: the SVG, then one PNG per size."""
    hicolor = (data or data_home()) / "icons" / "hicolor"
    paths = [hicolor / "scalable" / "apps" / f"{ICON_NAME}.svg"]
    paths += [hicolor / f"{n}x{n}" / "apps" / f"{ICON_NAME}.png" for n in ICON_SIZES]
    return paths


def installed_files(data: Path | None = None) -> list[Path]:
    """Return every file :func:`install` writes under ``data`` (default: :func:`data_home`)."""
    return [entry_path(data), *icon_paths(data)]


def render_png(size: int, svg: bytes | None = None) -> bytes:
    """Return the icon (``svg``, default: the app's) rendered as a ``size`` px square PNG."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(QByteArray(svg if svg is not None else ICON_SVG.read_bytes()))
    if not renderer.isValid():
        raise Sr3Error(f"Cannot render the icon {ICON_SVG}: it is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    buf = QBuffer()
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")  # type: ignore[call-overload]  # PySide6 takes str, stubs say bytes
    return bytes(buf.data().data())


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file beside it, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def install(data: Path | None = None, command: list[str] | None = None) -> list[Path]:
    """Install the application entry and its icons under ``data`` (default:
    :func:`data_home`) for ``command`` (default: :func:`launcher`).

    Returns the files written (all of :func:`installed_files`). Raises Sr3Error
    naming the file that could not be written.
    """
    data = data or data_home()
    svg = ICON_SVG.read_bytes()
    contents: dict[Path, bytes] = {entry_path(data): entry_text(command).encode()}
    svg_path, *pngs = icon_paths(data)
    contents[svg_path] = svg
    for size, path in zip(ICON_SIZES, pngs, strict=True):
        contents[path] = render_png(size, svg)
    written = []
    for path, blob in contents.items():
        try:
            _write(path, blob)
        except OSError as exc:
            raise Sr3Error(f"Cannot write {path}: {exc.strerror}") from exc
        written.append(path)
    os.chmod(entry_path(data), 0o644)
    _refresh_icon_cache(data)
    log.info("Installed the application entry %s and %d icons", entry_path(data), len(pngs) + 1)
    return written


def uninstall(data: Path | None = None) -> list[Path]:
    """Remove what :func:`install` wrote under ``data`` (default: :func:`data_home`),
    and the icon folders that are empty then; returns the files removed."""
    data = data or data_home()
    removed = []
    for path in installed_files(data):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise Sr3Error(f"Cannot remove {path}: {exc.strerror}") from exc
        removed.append(path)
        # hicolor/<size>/apps, then hicolor/<size>: only when nothing else is in them.
        for folder in (path.parent, path.parent.parent):
            if folder.parent.name == "hicolor" or folder.name == "apps":
                try:
                    folder.rmdir()
                except OSError:
                    break
    _refresh_icon_cache(data)
    return removed


def _refresh_icon_cache(data: Path) -> None:
    """Update the user's hicolor icon cache if there is one: a stale cache would
    hide the new icon. Without a cache the desktop reads the folders as they are."""
    hicolor = data / "icons" / "hicolor"
    tool = shutil.which("gtk-update-icon-cache")
    if tool is None or not (hicolor / "icon-theme.cache").exists():
        return
    result = subprocess.run(
        [tool, "--force", "--ignore-theme-index", "--quiet", str(hicolor)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        log.info("gtk-update-icon-cache %s: %s", hicolor, result.stderr.strip())
