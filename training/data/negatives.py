"""The hard-negatives file of a training set: ``negatives.jsonl`` beside it.

One line per query, ``{"query_id": ..., "negative_ids": [...]}``, hardest first.
:mod:`training.data.mining` writes it; :mod:`training.data.batches` reads it when
a training set is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from training.data.beir import read_jsonl, write_jsonl

NEGATIVES = "negatives.jsonl"


def write_negatives(path: Path, negatives: Mapping[str, Sequence[str]]) -> None:
    """Write ``negatives`` (query id -> passage ids) to ``path`` (one line per query)."""
    write_jsonl(path, ({"query_id": q, "negative_ids": list(n)} for q, n in negatives.items()))


def read_negatives(path: Path) -> dict[str, list[str]]:
    """Read ``negatives.jsonl``: returns query_id -> negative passage ids, hardest first;
    {} when ``path`` does not exist."""
    if not path.is_file():
        return {}
    return {str(r["query_id"]): [str(d) for d in r["negative_ids"]] for r in read_jsonl(path)}


__all__ = ["NEGATIVES", "read_negatives", "write_negatives"]
