"""Markdown: the source is the text, markdown-it finds the headings.

Markdown is written to be read as it is, so the document text is the file itself (a
snippet then looks like the file, and spans point into it); markdown-it-py's parser
supplies the headings, ATX and setext alike, and skips "#" lines inside code blocks.
"""

from __future__ import annotations

from sr3desk.extract.base import TextBuilder, one_line
from sr3desk.extract.text import decode_into


def _line_starts(text: str) -> list[int]:
    starts = [0]
    find = text.find
    pos = find("\n")
    while pos >= 0:
        starts.append(pos + 1)
        pos = find("\n", pos + 1)
    return starts


def extract_markdown(data: bytes, out: TextBuilder) -> None:
    """Markdown (CommonMark plus tables): source text, headings by level."""
    from markdown_it import MarkdownIt

    text = decode_into(data, out)
    start = out.block(text, cleaned=True)
    if start < 0:
        return
    # block() strips blank lines at both ends: parse what it kept, so lines match.
    body = text.strip("\n")
    tokens = MarkdownIt("commonmark").enable("table").parse(body)
    starts: list[int] | None = None
    for i, token in enumerate(tokens):
        if token.type != "heading_open" or token.map is None:
            continue
        inline = tokens[i + 1] if i + 1 < len(tokens) else None
        if inline is None or inline.type != "inline":
            continue
        parts = [c.content for c in inline.children or () if c.type in ("text", "code_inline")]
        title = one_line("".join(parts)) or one_line(inline.content)
        if not title:
            continue
        if starts is None:
            starts = _line_starts(body)
        line = token.map[0]
        if line < len(starts):
            out.mark_heading(start + starts[line], int(token.tag[1:]), title)
