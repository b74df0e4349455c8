"""Image files (PNG, JPEG, TIFF, WebP, BMP, GIF) read by OCR.

The format is decided by the file's first bytes (:func:`image_format`), so a PNG
named ``.jpg`` or a TIFF without an extension is read, and a text file named
``.png`` is refused. Multi-page TIFFs give one page per frame; an animated GIF or
WebP gives its first frame. With OCR off an image is reported as having no text
layer.
"""

from __future__ import annotations

from sr3desk.extract import ocr
from sr3desk.extract.base import TextBuilder, Unreadable

MAX_FRAMES = 500  # pages of a multi-page TIFF read; more is not a scan
OCR_OFF = "no text layer (image; OCR is off)"

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


def image_format(head: bytes) -> str | None:
    """The image format the first bytes announce ("png", "jpeg", "tiff", "webp",
    "bmp", "gif"), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            # "BM" alone is two letters of text: a BMP also names its header size.
            if name == "bmp" and (len(head) < 18 or head[14] not in (12, 40, 52, 56, 108, 124)):
                return None
            return name
    return None


def extract_image(data: bytes, out: TextBuilder) -> None:
    """The text of an image file by OCR; frames of a multi-page TIFF are pages."""
    if image_format(data[:32]) is None:
        raise Unreadable("not an image (the content is not PNG, JPEG, TIFF, WebP, BMP or GIF)")
    if not out.ocr.enabled:
        raise Unreadable(OCR_OFF)
    limits = out.limits
    picture = ocr.open_image(data, limits.max_image_pixels)
    eng = ocr.engine(out.ocr.languages)
    paged = getattr(picture, "n_frames", 1) > 1 and picture.format == "TIFF"
    pictures = ocr.frames(picture, len(data), limits.max_image_pixels, MAX_FRAMES)
    for number, frame in enumerate(pictures, 1):
        if out.should_stop():
            out.warn(f"read {number - 1} pages of the image")
            break
        found, seconds = ocr.timed_recognize(eng, frame)
        if paged:
            out.start_page(number)
        start = out.block(found.text)
        out.recognized(number, eng.languages, seconds, start >= 0)
    out.end_page()
    if not out.ocr_pages and out.timed_out:
        raise Unreadable(f"timed out after {limits.max_seconds:.0f} s")
    # An image without text (a photo) is a document with no text, like an empty
    # file: indexed once, not a problem to report.
