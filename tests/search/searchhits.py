"""Hand-made passages for the unit tests of fusion, grouping and snippets."""

from __future__ import annotations

from sr3desk.index.types import ChunkHit


def hit(
    file: str, n: int = 0, score: float = 1.0, text: str = "", page: int | None = None
) -> ChunkHit:
    """Passage ``n`` of ``/docs/<file>`` with the given score."""
    return ChunkHit(
        chunk_id=f"{file}#{n}",
        file_id=file,
        path=f"/docs/{file}",
        ext=file.rsplit(".", 1)[-1],
        mtime=0.0,
        size=100,
        page=page,
        start=n * 100,
        end=n * 100 + 100,
        heading="",
        text=text or f"passage {n} of {file}",
        score=score,
        ordinal=n,
    )


def ranked(*ids: str) -> list[ChunkHit]:
    """Passages best first from ids like "a.txt#2" (score decreasing)."""
    out = []
    for i, cid in enumerate(ids):
        file, _, n = cid.partition("#")
        out.append(hit(file, int(n or 0), score=float(len(ids) - i)))
    return out
