"""Tabular and structured text: CSV/TSV through the csv module, JSON and JSON Lines.

A CSV row becomes one line with its cells split by " | " (quoted fields with line
breaks and doubled quotes come out clean). JSON is kept as written, except that a
document squeezed onto a few very long lines is re-indented so that it has lines to
break at.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json

from sr3desk.extract.base import TextBuilder, one_line
from sr3desk.extract.text import decode_into

_LONG_LINE = 2000  # characters: beyond this a JSON file is re-indented


def _rows(text: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:32768], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    return [" | ".join(one_line(cell) for cell in row) for row in reader if any(row)]


def _extract_table(data: bytes, out: TextBuilder, delimiter: str | None) -> None:
    text = decode_into(data, out)
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(max(limit, len(text)))
        lines = _rows(text, delimiter)
    except csv.Error as err:
        out.warn(f"CSV not parsed ({err}): kept as plain text")
        out.block(text, cleaned=True)
        return
    finally:
        csv.field_size_limit(limit)
    out.block("\n".join(lines), cleaned=True)


def extract_csv(data: bytes, out: TextBuilder) -> None:
    """Comma-separated values (delimiter sniffed among , ; tab |): one line per row."""
    _extract_table(data, out, None)


def extract_tsv(data: bytes, out: TextBuilder) -> None:
    """Tab-separated values: one line per row."""
    _extract_table(data, out, "\t")


def extract_json(data: bytes, out: TextBuilder) -> None:
    """JSON or JSON Lines: the text as written; one-line documents re-indented."""
    text = decode_into(data, out)
    lines = text.count("\n") + 1
    if len(text) / lines > _LONG_LINE:
        # JSON Lines or not JSON at all: the text as written is still worth indexing.
        with contextlib.suppress(ValueError, RecursionError):
            text = json.dumps(json.loads(text), indent=1, ensure_ascii=False)
    out.block(text, cleaned=True)
