"""Plain text, source code and logs, and the encoding detection every text format uses.

The encoding is detected, not assumed: a byte-order mark wins; UTF-16 without one is
recognised by its zero bytes; valid UTF-8 is UTF-8; anything else goes to
charset-normalizer. Text that is mostly UTF-8 with a few bad bytes stays UTF-8 with
those bytes replaced (and a warning), rather than being read as some legacy code page.
Zero bytes or a high share of control characters mean the file is binary.
"""

from __future__ import annotations

import codecs
import re

from sr3desk.extract.base import TextBuilder, Unreadable, clean

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Detection looks at this much of a file; decoding always covers all of it.
_SAMPLE = 256 * 1024
# Control characters that do not occur in text (tab, line ends, form feed, escape do).
_BINARY_CONTROL = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f]")
# Legacy encodings by how common they are: the tie-breaker between close candidates.
_COMMON = ("cp1252", "cp1251", "shift_jis", "gb18030", "big5", "euc_kr", "cp1250", "koi8_r")
_NON_ASCII = re.compile("[^\x00-\x7f]")


def _utf16_without_bom(data: bytes) -> str | None:
    """``"utf-16-le"``/``"utf-16-be"`` when the zero bytes say so, else None."""
    sample = data[: 4096 - (min(len(data), 4096) % 2)]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    for zeros, other, name in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if zeros > 0.3 * half and other < 0.02 * half:
            try:
                sample.decode(name)
            except UnicodeDecodeError:
                return None
            return name
    return None


def _mostly_utf8(data: bytes) -> bool:
    """True when valid multi-byte UTF-8 outnumbers the invalid bytes in a sample."""
    sample = data[:_SAMPLE].decode("utf-8", errors="replace")
    bad = sample.count("\ufffd")
    good = len(_NON_ASCII.findall(sample)) - bad
    return good >= bad


def _detect(sample: bytes) -> str:
    """charset-normalizer's choice, except that among candidates it rates about equally
    (short texts often tie), the more widespread encoding wins: a few French lines in
    Windows-1252 otherwise come out as Baltic cp1257."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(sample))
    if not matches:
        raise Unreadable("binary file")
    best = matches[0]
    for preferred in _COMMON:
        for match in matches:
            if (
                preferred in match.could_be_from_charset
                and match.chaos <= best.chaos + 0.2
                and match.coherence >= best.coherence - 0.05
            ):
                return codecs.lookup(preferred).name
    return codecs.lookup(best.encoding).name


def decode(data: bytes) -> tuple[str, str, list[str]]:
    """Decode a text file's bytes: returns (text, encoding, warnings).

    Raises :class:`Unreadable` ("binary file") when the bytes are not text.
    """
    warnings: list[str] = []
    for bom, name in _BOMS:
        if data.startswith(bom):
            text = data[len(bom) :].decode(name, errors="replace")
            if "\ufffd" in text:
                warnings.append(f"invalid {name} bytes replaced")
            return text, name, warnings
    utf16 = _utf16_without_bom(data)
    if utf16 is not None:
        text = data.decode(utf16, errors="replace")
        return text, utf16, warnings
    if b"\x00" in data:
        raise Unreadable("binary file")
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        encoding = "utf-8" if _mostly_utf8(data) else _detect(data[:_SAMPLE])
        text = data.decode(encoding, errors="replace")
        if "\ufffd" in text:
            warnings.append(f"invalid {encoding} bytes replaced")
    sample = text[:_SAMPLE]
    if sample and len(_BINARY_CONTROL.findall(sample)) > 0.05 * len(sample):
        raise Unreadable("binary file")
    return text, encoding, warnings


def decode_into(data: bytes, out: TextBuilder) -> str:
    """Decode ``data`` with :func:`decode`, note encoding and warnings on ``out``."""
    text, encoding, warnings = decode(data)
    out.encoding = encoding
    for warning in warnings:
        out.warn(warning)
    return clean(text)


def extract_plain(data: bytes, out: TextBuilder) -> None:
    """Plain text, source code, logs: the decoded text as one block."""
    out.block(decode_into(data, out), cleaned=True)
