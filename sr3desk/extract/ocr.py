"""OCR: the text of page images, by Tesseract through tesserocr, in the extraction worker.

Used by :mod:`~sr3desk.extract.pdf` for pages without a text layer and by
:mod:`~sr3desk.extract.image` for image files. Tesseract was chosen by measurement on
the 2-core development machine (``python bench/ocr.py``; README, "Scanned documents"):
99.6 % character accuracy on 300 dpi scans of real manual pages at 0.6 pages/s, where
RapidOCR (PP-OCR in ONNX, models inside its wheel) gave 97.0 % at 0.07 pages/s.

The engine is loaded once per worker process and kept (loading a language takes
about 0.3 s). Its language data comes from the system (Debian:
``tesseract-ocr-eng``, ``tesseract-ocr-osd`` for orientation); nothing is downloaded.
A page whose words come out with low confidence is checked for orientation
(Tesseract's OSD; without its data, each quarter turn is tried) and read again
turned upright, and the better reading is kept: pages scanned sideways or upside
down read as well as upright ones.

Images are checked before they are decoded: a picture over
``Limits.max_image_pixels`` (a decompression bomb, a 20000x20000 PNG) is refused from
its header alone.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sr3desk.extract.base import Unreadable
from sr3desk.extract.types import human_bytes

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

# Where Debian, Fedora, Homebrew and source builds put Tesseract's language data.
TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)
OCR_DPI = 300  # resolution PDF pages are rendered at for OCR (bench/ocr.py: 150 dpi loses ~2 %)
MIN_CONFIDENCE = 60  # mean word confidence under which the orientation is checked
MIN_CHARS_FOR_OSD = 20  # a page with less text is blank, not sideways
OSD_MAX_WIDTH = 1800  # images are halved for orientation detection above this width
BOMB_RATIO = 1000  # pixels per byte of file above which an oversize image is called a bomb


class OcrUnavailable(Unreadable):
    """The OCR engine or its language data is not installed; the reason says what to
    install."""


@dataclass(frozen=True)
class Recognized:
    """The text of one page image: ``confidence`` is Tesseract's mean word confidence
    (0-100), ``rotation`` the counter-clockwise quarter turns (in degrees) applied to
    read it upright."""

    text: str
    confidence: float
    rotation: int = 0


class OcrEngine(Protocol):
    """What the format modules need of an OCR engine."""

    languages: str

    def recognize(self, image: Image) -> Recognized:
        """Read the text of ``image`` (any PIL mode); returns it with its confidence."""
        ...

    def close(self) -> None:
        """Release the engine's native handles."""
        ...


def tessdata_dir() -> Path | None:
    """The folder of Tesseract's language data: ``$TESSDATA_PREFIX`` (the folder, or
    its ``tessdata`` child) or the first of :data:`TESSDATA_DIRS` holding a
    ``.traineddata`` file; returns None when there is none."""
    candidates: list[str] = []
    prefix = os.environ.get("TESSDATA_PREFIX")
    if prefix:
        candidates += [prefix, os.path.join(prefix, "tessdata")]
    candidates += TESSDATA_DIRS
    for folder in candidates:
        path = Path(folder)
        if path.is_dir() and any(path.glob("*.traineddata")):
            return path
    return None


def installed_languages() -> list[str]:
    """Tesseract language codes whose data is installed ("eng", "deu", ...), sorted;
    ``osd`` (orientation data) is not a language and is left out."""
    folder = tessdata_dir()
    if folder is None:
        return []
    return sorted(p.stem for p in folder.glob("*.traineddata") if p.stem != "osd")


class TesseractEngine:
    """Tesseract (through tesserocr) reading ``languages`` ("eng", "eng+deu").

    Raises :class:`OcrUnavailable` naming what to install when the package or a
    language's data is missing. Not thread-safe; :func:`engine` serialises use.
    Close it to free the native API objects.
    """

    def __init__(self, languages: str = "eng") -> None:
        folder = tessdata_dir()
        wanted = [code for code in languages.split("+") if code]
        if folder is None:
            raise OcrUnavailable(
                "OCR language data not found: install tesseract-ocr-eng (or set TESSDATA_PREFIX)"
            )
        missing = [c for c in wanted if not (folder / f"{c}.traineddata").is_file()]
        if missing:
            raise OcrUnavailable(
                f"OCR language data missing for {', '.join(missing)}: install "
                + " ".join(f"tesseract-ocr-{c}" for c in missing)
            )
        try:
            import tesserocr
        except ImportError as err:
            raise OcrUnavailable(
                "the OCR engine is not installed: pip install tesserocr "
                "(sr3desk's own dependencies include it)"
            ) from err
        self.languages = "+".join(wanted)
        self._tesserocr = tesserocr
        self._api: Any = tesserocr.PyTessBaseAPI(
            path=str(folder), lang=self.languages, psm=tesserocr.PSM.AUTO
        )
        self._osd: Any = None
        if (folder / "osd.traineddata").is_file():
            self._osd = tesserocr.PyTessBaseAPI(
                path=str(folder), lang="osd", psm=tesserocr.PSM.OSD_ONLY
            )
        log.debug("Tesseract %s loaded from %s", self.languages, folder)

    def _read(self, image: Image) -> tuple[str, float]:
        self._api.SetImage(image)
        text = self._api.GetUTF8Text() or ""
        return text, float(self._api.MeanTextConf())

    def _turns(self, image: Image) -> list[int]:
        """Quarter turns (degrees, counter-clockwise) worth trying to set ``image``
        upright: the one orientation detection finds, or all three without its data."""
        if self._osd is None:
            return [90, 270, 180]
        small = image
        if image.width > OSD_MAX_WIDTH:
            small = image.resize((image.width // 2, image.height // 2))
        self._osd.SetImage(small)
        try:
            found = self._osd.DetectOrientationScript()
        except RuntimeError:  # too little text to decide
            return []
        degrees = int(found.get("orient_deg", 0)) if found else 0
        return [degrees] if degrees in (90, 180, 270) else []

    def recognize(self, image: Image) -> Recognized:
        """Read ``image``; a low-confidence reading is retried turned upright and the
        more confident one is returned."""
        gray = image if image.mode == "L" else image.convert("L")
        text, confidence = self._read(gray)
        best = Recognized(text, confidence, 0)
        if confidence >= MIN_CONFIDENCE or len("".join(text.split())) < MIN_CHARS_FOR_OSD:
            return best
        for degrees in self._turns(gray):
            turned = gray.rotate(degrees, expand=True)
            text, confidence = self._read(turned)
            if confidence > best.confidence:
                best = Recognized(text, confidence, degrees)
            if best.confidence >= MIN_CONFIDENCE:
                break
        return best

    def close(self) -> None:
        """Free the Tesseract API objects (idempotent)."""
        for api in (self._api, self._osd):
            if api is not None:
                api.End()
        self._api = self._osd = None


_engines: dict[str, OcrEngine] = {}
_engines_lock = threading.Lock()


def engine(languages: str) -> OcrEngine:
    """The process's engine for ``languages``, loaded on first use and then kept
    (raises :class:`OcrUnavailable` when it cannot be loaded)."""
    with _engines_lock:
        found = _engines.get(languages)
        if found is None:
            found = _engines[languages] = TesseractEngine(languages)
        return found


def close_engines() -> None:
    """Close every engine :func:`engine` loaded in this process."""
    with _engines_lock:
        for eng in _engines.values():
            eng.close()
        _engines.clear()


# -- images --------------------------------------------------------------------------


def too_large_reason(width: int, height: int, n_bytes: int, max_pixels: int) -> str:
    """The reason an image of ``width`` x ``height`` in ``n_bytes`` is refused."""
    size = f"{width}x{height} pixels"
    if width * height > BOMB_RATIO * max(n_bytes, 1):
        return f"decompression bomb: {size} in a {human_bytes(n_bytes)} file"
    return f"image too large: {size} (limit {max_pixels / 1e6:.0f} megapixels)"


def open_image(data: bytes, max_pixels: int) -> Any:
    """Open the image in ``data`` without decoding it; returns the PIL image.

    Raises :class:`Unreadable` for a file that is not an image PIL reads, or whose
    first frame is over ``max_pixels`` (decided from the header alone).
    """
    from PIL import Image, UnidentifiedImageError

    # Ours first, which names the size; PIL's own check is left on for the frames
    # decoded later, as a second net.
    Image.MAX_IMAGE_PIXELS = None
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as err:
        raise Unreadable("not an image format that can be read") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise Unreadable(f"corrupt image: {err}") from err
    finally:
        Image.MAX_IMAGE_PIXELS = max_pixels
    check_size(image, len(data), max_pixels)
    return image


def check_size(image: Any, n_bytes: int, max_pixels: int) -> None:
    """Raise :class:`Unreadable` when ``image``'s current frame is over ``max_pixels``."""
    width, height = image.size
    if width * height > max_pixels:
        raise Unreadable(too_large_reason(width, height, n_bytes, max_pixels))


def frames(image: Any, n_bytes: int, max_pixels: int, max_frames: int) -> Iterator[Any]:
    """The frames of a multi-page image (TIFF) as decoded images, the first only for
    other formats (an animated GIF or WebP's first frame); each is size-checked
    before it is decoded."""
    from PIL import Image

    multi = image.format in ("TIFF", "MPO") and getattr(image, "n_frames", 1) > 1
    count = min(getattr(image, "n_frames", 1), max_frames) if multi else 1
    for index in range(count):
        if index:
            image.seek(index)
            check_size(image, n_bytes, max_pixels)
        try:
            image.load()
        except Image.DecompressionBombError as err:
            raise Unreadable(f"decompression bomb: over {max_pixels / 1e6:.0f} megapixels") from err
        except (OSError, SyntaxError, ValueError) as err:
            raise Unreadable(f"corrupt image: {err}") from err
        yield _flatten(image)


def _flatten(image: Any) -> Any:
    """``image`` as 8-bit grey, transparency laid on white (a screenshot's alpha)."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.point(lambda v: v / 256).convert("L")
    return image.convert("L")


def timed_recognize(eng: OcrEngine, image: Any) -> tuple[Recognized, float]:
    """``eng.recognize(image)`` and the seconds it took."""
    started = time.monotonic()
    found = eng.recognize(image)
    return found, time.monotonic() - started
