"""Which module reads which file, and the safe way to read it.

Formats are chosen by file name (extension, or a known name such as ``Makefile``) and
confirmed or overridden by the first bytes ("%PDF-", a zip's members, "{\\rtf", an
image's signature): a PDF named ``.txt`` is read as a PDF, a PNG named ``.jpg`` as an
image, and a text file named ``.png`` is refused as not an image. Files are opened
only after ``stat`` says they are regular files, with ``O_NONBLOCK`` so that a FIFO
swapped in between cannot hang the open, and are read up to the size limit and no
further.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sr3desk.errors import ExtractError
from sr3desk.extract import (
    epub,
    html,
    image,
    mail,
    markdown,
    office,
    pdf,
    rst,
    rtf,
    tabular,
    text,
)
from sr3desk.extract.base import FormatFn, TextBuilder, Unreadable
from sr3desk.extract.types import Document, Limits, OcrOptions, human_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    """A family of files: ``kind`` for the Document, the function that reads it, and
    whether it is plain text (bounded by ``Limits.max_text_file_bytes``)."""

    kind: str
    read: FormatFn
    plain_text: bool


PLAIN = Format("text", text.extract_plain, True)
CODE = Format("code", text.extract_plain, True)
LOG = Format("log", text.extract_plain, True)
MARKDOWN = Format("markdown", markdown.extract_markdown, True)
RST = Format("rst", rst.extract_rst, True)
HTML = Format("html", html.extract_html, True)
CSV = Format("csv", tabular.extract_csv, True)
TSV = Format("csv", tabular.extract_tsv, True)
JSON = Format("json", tabular.extract_json, True)
EMAIL = Format("email", mail.extract_email, False)
RTF = Format("rtf", rtf.extract_rtf, False)
PDF = Format("pdf", pdf.extract_pdf, False)
DOCX = Format("docx", office.extract_docx, False)
PPTX = Format("pptx", office.extract_pptx, False)
ODT = Format("odt", office.extract_odt, False)
EPUB = Format("epub", epub.extract_epub, False)
IMAGE = Format("image", image.extract_image, False)
IMAGE_EXTS = ("png", "jpg", "jpeg", "jpe", "jfif", "tif", "tiff", "webp", "bmp", "gif")

_CODE_EXTS = (
    "py pyi pyw pyx pxd c h cc cpp cxx hpp hh hxx java js mjs cjs ts tsx jsx go rs rb "
    "php pl pm sh bash zsh fish lua r jl scala kt kts swift m mm cs fs fsx vb sql hs "
    "ml mli clj cljs ex exs erl hrl dart groovy gradle ps1 bat cmd el lisp scm rkt "
    "tex bib sty cls css scss sass less vue svelte proto thrift cmake mk asm s f f90 "
    "f95 nim zig toml ini cfg conf yaml yml xml xsd xsl properties diff patch tf nix "
    "dockerfile awk sed tcl vim d pas ada adb ads cob hx"
)
FORMATS: dict[str, Format] = {
    **{ext: CODE for ext in _CODE_EXTS.split()},
    **{ext: PLAIN for ext in ("txt", "text", "me", "nfo", "adoc", "asciidoc", "org", "textile")},
    "log": LOG,
    **{ext: MARKDOWN for ext in ("md", "markdown", "mdown", "mkd", "mkdn", "mdx")},
    **{ext: RST for ext in ("rst", "rest", "rst.txt")},
    "md.txt": MARKDOWN,
    **{ext: HTML for ext in ("html", "htm", "xhtml", "shtml")},
    "csv": CSV,
    **{ext: TSV for ext in ("tsv", "tab")},
    **{ext: JSON for ext in ("json", "jsonl", "ndjson", "geojson", "ipynb")},
    "eml": EMAIL,
    "rtf": RTF,
    "pdf": PDF,
    "docx": DOCX,
    "pptx": PPTX,
    "odt": ODT,
    "epub": EPUB,
    **{ext: IMAGE for ext in IMAGE_EXTS},
}
"""Extension (lower case, no dot; two-part ones like "rst.txt" first) -> format."""

NAMES: dict[str, Format] = {
    **{
        name: CODE
        for name in [
            "makefile",
            "gnumakefile",
            "dockerfile",
            "containerfile",
            "vagrantfile",
            "gemfile",
            "rakefile",
            "jenkinsfile",
            "procfile",
            "cmakelists.txt",
        ]
    },
    **{
        name: PLAIN
        for name in [
            "readme",
            "license",
            "licence",
            "copying",
            "changelog",
            "changes",
            "news",
            "authors",
            "install",
            "todo",
            "notice",
            "contributors",
            "thanks",
        ]
    },
}
"""Whole file names (lower case) known without an extension."""

_ZIP_KINDS = (
    ("word/document.xml", DOCX),
    ("ppt/presentation.xml", PPTX),
)
_ODF_MIMETYPES = {
    b"application/vnd.oasis.opendocument.text": ODT,
    b"application/epub+zip": EPUB,
}
_HEAD = 4096


def format_for_name(path: Path) -> Format | None:
    """The format a file's name implies, or None (unknown extension, or none)."""
    name = path.name.lower()
    if name in NAMES:
        return NAMES[name]
    parts = name.split(".")
    if len(parts) >= 3 and ".".join(parts[-2:]) in FORMATS:
        return FORMATS[".".join(parts[-2:])]
    if len(parts) >= 2 and parts[0]:
        return FORMATS.get(parts[-1])
    return None


def sniff(head: bytes, data: bytes | None = None) -> Format | None:
    """The format the first bytes announce, or None when they announce nothing.

    ``data`` (the whole file) lets zip containers be told apart by their members.
    """
    stripped = head.lstrip()
    if head.startswith(b"%PDF-"):
        return PDF
    if stripped.startswith(b"{\\rtf"):
        return RTF
    if head.startswith(b"PK\x03\x04") and data is not None:
        return _zip_kind(data)
    if image.image_format(head[:32]) is not None:
        return IMAGE
    lower = stripped[:64].lower()
    if lower.startswith((b"<!doctype html", b"<html")):
        return HTML
    return None


def _zip_kind(data: bytes) -> Format | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            for member, fmt in _ZIP_KINDS:
                if member in names:
                    return fmt
            if "mimetype" in names:
                return _ODF_MIMETYPES.get(archive.read("mimetype").strip())
    except (zipfile.BadZipFile, OSError, ValueError, KeyError):
        return None
    return None


def supported(path: Path, images: bool = True) -> bool:
    """True when extraction will try ``path``: its name is known, or it has no extension
    and its first bytes look like text or a known format. ``images``: image files
    count (they are read by OCR; False when OCR is off). Never opens anything but a
    regular file."""
    path = Path(path)
    fmt = format_for_name(path)
    if fmt is not None:
        return images or fmt is not IMAGE
    if "." in path.name.lstrip("."):
        return False  # an extension we do not read (.zip, .exe, ...)
    try:
        head = _read(path, _HEAD, allow_larger=True)
    except ExtractError:
        return False
    found = sniff(head)
    if found is not None:
        return images or found is not IMAGE
    return b"\x00" not in head and _looks_like_text(head)


def _looks_like_text(head: bytes) -> bool:
    try:
        text.decode(head)
    except Unreadable:
        return False
    return True


def _stat_reason(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    for test, what in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return f"not a regular file ({what})"
    return "not a regular file"


def _os_reason(err: OSError) -> str:
    if err.errno == errno.ENOENT:
        return "file vanished"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.ELOOP:
        return "symlink loop"
    return f"cannot open: {err.strerror or err}"


def _read(path: Path, limit: int, *, allow_larger: bool = False) -> bytes:
    """Read at most ``limit`` bytes of the regular file ``path`` (all of it, unless
    ``allow_larger``, in which case a longer file is an error)."""
    try:
        reason = _stat_reason(os.stat(path).st_mode)
    except OSError as err:
        raise ExtractError(str(path), _os_reason(err)) from err
    if reason:
        raise ExtractError(str(path), reason)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        raise ExtractError(str(path), _os_reason(err)) from err
    try:
        # The path may have been swapped for something else between stat and open.
        reason = _stat_reason(os.fstat(fd).st_mode)
        if reason:
            raise ExtractError(str(path), reason)
        pieces: list[bytes] = []
        left = limit + (0 if allow_larger else 1)
        while left > 0:
            piece = os.read(fd, min(left, 8 * 1024 * 1024))
            if not piece:
                break
            pieces.append(piece)
            left -= len(piece)
    except OSError as err:
        raise ExtractError(str(path), _os_reason(err)) from err
    finally:
        os.close(fd)
    data = b"".join(pieces)
    if not allow_larger and len(data) > limit:
        raise ExtractError(str(path), f"exceeds {human_bytes(limit)} limit")
    return data


def extract(path: Path, limits: Limits | None = None, ocr: OcrOptions | None = None) -> Document:
    """Extract the text of ``path`` in this process; returns a :class:`Document`.

    ``ocr``: whether and in which languages scanned PDF pages and image files are
    read by OCR (default: on, English).

    Raises :class:`~sr3desk.errors.ExtractError` with a short reason for anything
    unreadable. Paged formats stop at ``limits.max_seconds`` and keep what they read;
    nothing here can interrupt a parser that hangs: :class:`~sr3desk.extract.Extractor`
    runs this in a worker process that can be killed. A 0-byte file is a document with
    empty text (no chunks), not an error.
    """
    limits = limits or Limits()
    path = Path(path)
    started = time.monotonic()
    by_name = format_for_name(path)
    try:
        size = os.stat(path).st_size
    except OSError as err:
        raise ExtractError(str(path), _os_reason(err)) from err
    if size > limits.max_file_bytes:
        raise ExtractError(str(path), f"exceeds {human_bytes(limits.max_file_bytes)} limit")
    if by_name is not None and by_name.plain_text and size > limits.max_text_file_bytes:
        raise ExtractError(
            str(path), f"exceeds {human_bytes(limits.max_text_file_bytes)} limit for text files"
        )
    data = _read(path, limits.max_file_bytes)
    if by_name is IMAGE:
        # The content decides (a PDF named .png is a PDF; a text file is refused).
        found = sniff(data[:_HEAD], data)
        fmt = found if found is not None and not found.plain_text else IMAGE
    elif by_name is not None and not by_name.plain_text:
        fmt = by_name
    else:
        # Magic bytes win over a text extension (a PDF saved as .txt is still a PDF).
        fmt = sniff(data[:_HEAD], data) or by_name or PLAIN
    if fmt.plain_text and len(data) > limits.max_text_file_bytes:
        raise ExtractError(
            str(path), f"exceeds {human_bytes(limits.max_text_file_bytes)} limit for text files"
        )
    out = TextBuilder(limits, deadline=started + limits.max_seconds, path=path, ocr=ocr)
    try:
        fmt.read(data, out)
    except Unreadable as err:
        raise ExtractError(str(path), str(err)) from err
    except MemoryError as err:
        raise ExtractError(str(path), "out of memory") from err
    except RecursionError as err:
        raise ExtractError(str(path), f"{fmt.kind} nested too deeply") from err
    except Exception as err:  # a parser bug on odd input: skip this file, keep going
        log.debug("%s parser failed on %s", fmt.kind, path, exc_info=True)
        raise ExtractError(str(path), f"{fmt.kind} parser failed: {type(err).__name__}") from err
    return out.build(path, fmt.kind)


def extensions() -> Iterable[str]:
    """All extensions with a format, for file dialogs and filters."""
    return sorted(FORMATS)


def register(ext: str, fmt: Format) -> None:
    """Read files ending in ``.ext`` with ``fmt`` (for plugins and tests)."""
    FORMATS[ext.lower().lstrip(".")] = fmt
