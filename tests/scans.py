"""Scanned documents made from real ones, for the OCR tests and bench/ocr.py.

Pages of R's manuals (Debian r-doc-pdf) are rasterized by pdftoppm (poppler-utils) and
saved as PNGs and as image-only PDFs, some turned a quarter turn or given noise; the
original page's text layer is what the OCR text is compared with.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image
from pypdf import PdfReader, PdfWriter

R_INTRO = Path("/usr/share/R/doc/manual/R-intro.pdf")
PAGES = (12, 14, 20)  # R-intro pages of running text (1-based)
_QUOTES = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"}
)


def have_tools() -> str | None:
    """Why scans cannot be made here (a missing tool or document), or None."""
    if shutil.which("pdftoppm") is None:
        return "pdftoppm is missing: install Debian's poppler-utils (make test does)"
    if not R_INTRO.exists():
        return f"{R_INTRO} is missing: install Debian's r-doc-pdf (make test does)"
    return None


def rasterize(pdf: Path, page: int, dpi: int, out: Path) -> Path:
    """Page ``page`` (1-based) of ``pdf`` as a greyscale PNG at ``dpi``; returns ``out``."""
    stem = out.with_suffix("")
    subprocess.run(
        [
            *("pdftoppm", "-r", str(dpi), "-gray", "-png", "-singlefile"),
            *("-f", str(page), "-l", str(page), str(pdf), str(stem)),
        ],
        check=True,
    )
    made = stem.with_suffix(".png")
    if made != out:
        made.rename(out)
    return out


def turned(png: Path, out: Path, degrees: int = 90) -> Path:
    """``png`` turned ``degrees`` counter-clockwise (a page scanned sideways)."""
    with Image.open(png) as image:
        image.rotate(degrees, expand=True).save(out)
    return out


def noisy(png: Path, out: Path, fraction: float = 0.01, seed: int = 0) -> Path:
    """``png`` with ``fraction`` of its pixels flipped to black or white (salt and
    pepper, as a dusty scanner glass gives)."""
    rng = np.random.default_rng(seed)
    with Image.open(png) as image:
        pixels = np.array(image.convert("L"))
    mask = rng.random(pixels.shape) < fraction
    pixels[mask] = rng.choice(np.array([0, 255], dtype=np.uint8), size=int(mask.sum()))
    Image.fromarray(pixels).save(out)
    return out


def image_pdf(pngs: list[Path], out: Path, dpi: int) -> Path:
    """An image-only PDF (no text layer) with one page per PNG."""
    images = [Image.open(p).convert("L") for p in pngs]
    images[0].save(out, save_all=True, append_images=images[1:], resolution=float(dpi))
    for image in images:
        image.close()
    return out


def mixed_pdf(parts: list[tuple[Path, int]], out: Path) -> Path:
    """A PDF of the given (pdf, 0-based page) pages in order: real and scanned pages."""
    writer = PdfWriter()
    for pdf, index in parts:
        writer.add_page(PdfReader(pdf).pages[index])
    with out.open("wb") as fh:
        writer.write(fh)
    return out


def text_layer(pdf: Path, page: int) -> str:
    """The text layer of page ``page`` (1-based) of ``pdf``, as pypdf reads it."""
    return PdfReader(pdf).pages[page - 1].extract_text()


def normalize(text: str) -> str:
    """Text as compared: NFKC (ligatures split), plain quotes and dashes, single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    return re.sub(r"\s+", " ", text).strip()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance of ``a`` and ``b``, one numpy row per character of ``a``."""
    if not a or not b:
        return max(len(a), len(b))
    codes = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    ramp = np.arange(len(b) + 1)
    prev = ramp.copy()
    for i, ch in enumerate(a, 1):
        cost = (codes != ord(ch)).astype(np.int64)
        row = np.empty_like(prev)
        row[0] = i
        row[1:] = np.minimum(prev[1:] + 1, prev[:-1] + cost)
        # Insertions run along the row: a running minimum of row[k] + (j - k).
        prev = np.minimum.accumulate(row - ramp) + ramp
    return int(prev[-1])


def char_accuracy(found: str, expected: str) -> float:
    """1 - edit distance / length of the expected text, both normalized."""
    want = normalize(expected)
    return 1.0 - edit_distance(normalize(found), want) / max(len(want), 1)
