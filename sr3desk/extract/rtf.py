"""RTF through striprtf, with the code page the file declares (``\\ansicpgNNNN``)."""

from __future__ import annotations

import codecs
import re

from sr3desk.extract.base import TextBuilder, Unreadable

_CODEPAGE = re.compile(rb"\\ansicpg(\d+)")


def extract_rtf(data: bytes, out: TextBuilder) -> None:
    """An RTF document's text (paragraph breaks kept)."""
    from striprtf.striprtf import rtf_to_text

    if not data.lstrip()[:5] == b"{\\rtf":
        raise Unreadable("corrupt RTF: no RTF header")
    encoding = "cp1252"
    match = _CODEPAGE.search(data[:4096])
    if match:
        try:
            encoding = codecs.lookup(f"cp{int(match.group(1))}").name
        except LookupError:
            out.warn(f"unknown code page {match.group(1).decode()}: read as cp1252")
    out.encoding = encoding
    # RTF is 7-bit: latin-1 maps raw bytes one to one; striprtf decodes \\'hh escapes.
    out.block(rtf_to_text(data.decode("latin-1"), encoding=encoding, errors="replace"))
