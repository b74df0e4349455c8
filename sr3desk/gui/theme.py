"""Look and feel: the Fusion style, light/dark following the system, type badges.

Qt 6's Fusion style takes its palette from the platform's colour scheme
(``QStyleHints.colorScheme``) and switches when the system does; the few colours
of our own (highlights, score bars, badges) are derived from that palette or
picked per scheme here, so nothing is hard-wired to a light background.
"""

from __future__ import annotations

import os
from functools import lru_cache

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QGuiApplication,
    QIcon,
    QPainter,
    QPalette,
    QPixmap,
)
from PySide6.QtWidgets import QApplication

# File types grouped the way the type filter and the badges show them.
TYPE_GROUPS: dict[str, tuple[str, ...]] = {
    "PDF": ("pdf",),
    "Text & notes": ("txt", "md", "markdown", "rst", "org", "log", "csv", "tsv", "json"),
    "Web pages": ("html", "htm", "xhtml"),
    "Office": ("docx", "pptx", "odt", "odp", "ods", "rtf", "epub"),
    "Email": ("eml",),
    "Code": (
        "py", "c", "h", "cpp", "hpp", "cc", "js", "ts", "java", "go", "rs", "rb", "sh",
        "toml", "yaml", "yml", "ini", "cfg", "sql", "r", "tex",
    ),
}  # fmt: skip

# Badge colours by group (hue chosen to be distinct in both schemes).
_BADGE_HUES: dict[str, int] = {
    "PDF": 2,
    "Text & notes": 210,
    "Web pages": 28,
    "Office": 230,
    "Email": 280,
    "Code": 140,
}


def group_of(ext: str) -> str:
    """Return the type group of a file extension (without dot), or "Other"."""
    ext = ext.lower().lstrip(".")
    for name, exts in TYPE_GROUPS.items():
        if ext in exts:
            return name
    return "Other"


def is_dark(palette: QPalette | None = None) -> bool:
    """True when the app shows light text on a dark background."""
    hints = QGuiApplication.styleHints()
    if hints is not None and hints.colorScheme() == Qt.ColorScheme.Dark:
        return True
    pal = palette or QGuiApplication.palette()
    return pal.color(QPalette.ColorRole.Window).lightness() < 128


def apply_style(app: QApplication) -> None:
    """Use Fusion (it follows the system's light/dark scheme in Qt 6).

    ``SR3DESK_COLOR_SCHEME=dark|light`` asks for a scheme, e.g. for screenshots;
    where the platform cannot switch (offscreen, a bare X server) a dark request
    gets :func:`dark_palette`.
    """
    app.setStyle("Fusion")
    forced = os.environ.get("SR3DESK_COLOR_SCHEME", "").lower()
    hints = app.styleHints()
    if forced in ("dark", "light") and hints is not None:
        want = Qt.ColorScheme.Dark if forced == "dark" else Qt.ColorScheme.Light
        hints.setColorScheme(want)
        if forced == "dark" and hints.colorScheme() != want:
            app.setPalette(dark_palette())
    badge_icon.cache_clear()


def dark_palette() -> QPalette:
    """Return a dark palette close to Fusion's own dark scheme."""
    pal = QPalette()
    roles = QPalette.ColorRole
    colors = {
        roles.Window: "#2b2b2b",
        roles.WindowText: "#e6e6e6",
        roles.Base: "#1f1f1f",
        roles.AlternateBase: "#2a2a2a",
        roles.ToolTipBase: "#3a3a3a",
        roles.ToolTipText: "#e6e6e6",
        roles.PlaceholderText: "#9a9a9a",
        roles.Text: "#e6e6e6",
        roles.Button: "#353535",
        roles.ButtonText: "#e6e6e6",
        roles.BrightText: "#ff6b6b",
        roles.Light: "#4a4a4a",
        roles.Midlight: "#3e3e3e",
        roles.Mid: "#5a5a5a",
        roles.Dark: "#1a1a1a",
        roles.Shadow: "#000000",
        roles.Highlight: "#3d7bd9",
        roles.HighlightedText: "#ffffff",
        roles.Link: "#7fb2ff",
        roles.LinkVisited: "#b99cff",
    }
    for role, color in colors.items():
        pal.setColor(role, QColor(color))
    for role in (roles.Text, roles.WindowText, roles.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a7a"))
    return pal


def highlight_colors(palette: QPalette) -> tuple[QColor, QColor]:
    """Return (background, text) for query terms highlighted in snippets."""
    if is_dark(palette):
        return QColor("#6b5a00"), QColor("#fff6cc")
    return QColor("#ffe680"), QColor("#1a1a1a")


def error_color(palette: QPalette | None = None) -> QColor:
    """Return the colour of validation errors, readable on the scheme's background."""
    return QColor("#ff7b72") if is_dark(palette) else QColor("#c62828")


def passage_background(palette: QPalette) -> QColor:
    """Return the background of the hit passage in the preview."""
    base = palette.color(QPalette.ColorRole.Highlight)
    tint = QColor(base)
    tint.setAlpha(60 if is_dark(palette) else 40)
    # Blend by hand: rich text in QTextDocument ignores alpha in some versions.
    back = palette.color(QPalette.ColorRole.Base)
    a = tint.alphaF()
    return QColor.fromRgbF(
        back.redF() * (1 - a) + base.redF() * a,
        back.greenF() * (1 - a) + base.greenF() * a,
        back.blueF() * (1 - a) + base.blueF() * a,
    )


def badge_color(ext: str, dark: bool) -> QColor:
    """Return the badge colour of a file type in the given scheme."""
    group = group_of(ext)
    hue = _BADGE_HUES.get(group)
    if hue is None:
        return QColor.fromHsl(0, 0, 120 if dark else 130)
    return QColor.fromHsl(hue, 150, 95 if dark else 105)


@lru_cache(maxsize=64)
def badge_icon(ext: str, dark: bool, size: int = 40) -> QIcon:
    """Return a document-shaped badge icon labelled with the extension ("PDF").

    Drawn, not loaded from the platform, so it looks the same offscreen, on
    every desktop and at every scale: the pixmap is rendered at 3x for HiDPI.
    """
    scale = 3
    pix = QPixmap(size * scale, size * scale)
    pix.setDevicePixelRatio(scale)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    color = badge_color(ext, dark)
    w, h = size * 0.78, size * 0.94
    x, y = (size - w) / 2, (size - h) / 2
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(color)
    p.drawRoundedRect(QRectF(x, y, w, h), size * 0.1, size * 0.1)
    # The folded corner.
    fold = w * 0.3
    p.setBrush(color.lighter(140))
    p.drawRect(QRectF(x + w - fold, y, fold, fold))
    p.setPen(QColor("white"))
    font = QFont()
    label = (ext or "?").upper()[:4]
    font.setPixelSize(max(7, int(size * (0.3 if len(label) <= 3 else 0.24))))
    font.setBold(True)
    p.setFont(font)
    p.drawText(QRectF(x, y + h * 0.35, w, h * 0.5), Qt.AlignmentFlag.AlignCenter, label)
    p.end()
    return QIcon(pix)


def app_icon() -> QIcon:
    """Return the app's icon (a magnifier over a page) at several sizes, rendered from
    the SVG the menu entry installs (:mod:`sr3desk.desktop.entry`), so the window,
    the tray and the launcher show the same picture."""
    from sr3desk.desktop.entry import render_png

    icon = QIcon()
    for size in (16, 24, 32, 48, 64, 128, 256):
        pix = QPixmap()
        pix.loadFromData(render_png(size), "PNG")
        icon.addPixmap(pix)
    return icon
