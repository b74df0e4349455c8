"""EPUB through ebooklib; each chapter's XHTML through the HTML extractor.

Chapters follow the spine (reading order). A chapter that does not open with a heading
gets its table-of-contents title as one, so that chunks know their chapter. Books whose
text is encrypted (DRM) are refused; obfuscated fonts alone are fine.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from typing import Any

from sr3desk.extract.base import TextBuilder, Unreadable, one_line
from sr3desk.extract.html import html_into
from sr3desk.extract.zipcheck import check_zip


def _toc_titles(toc: Any, titles: dict[str, str]) -> None:
    for entry in toc:
        if isinstance(entry, tuple | list):
            head, children = entry[0], entry[1] if len(entry) > 1 else []
            _toc_titles([head], titles)
            _toc_titles(children, titles)
            continue
        href = getattr(entry, "href", None)
        title = one_line(str(getattr(entry, "title", "") or ""))
        if href and title:
            titles.setdefault(href.split("#", 1)[0], title)


def extract_epub(data: bytes, out: TextBuilder) -> None:
    """An EPUB book: spine chapters in order, headings kept, TOC titles as fallback."""
    names = check_zip(data, out.limits, "EPUB")
    if "META-INF/encryption.xml" in names:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            manifest = archive.read("META-INF/encryption.xml")
        if b"html" in manifest.lower():
            raise Unreadable("encrypted EPUB (DRM)")
    import ebooklib
    from ebooklib import epub

    try:
        book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True})
    except Exception as err:  # ebooklib raises EpubException, KeyError, lxml errors, ...
        text = one_line(str(err)) or type(err).__name__
        raise Unreadable(f"corrupt EPUB: {text[:80]}") from err
    titles = book.get_metadata("DC", "title")
    if titles and titles[0] and titles[0][0]:
        out.title = one_line(str(titles[0][0]))
    toc: dict[str, str] = {}
    _toc_titles(book.toc, toc)
    for idref, _linear in book.spine:
        if out.should_stop():
            break
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        if isinstance(item, epub.EpubNav):
            continue
        name = item.get_name()
        fallback = toc.get(name) or toc.get(posixpath.basename(name))
        html_into(item.get_content().decode("utf-8", errors="replace"), out, fallback)
