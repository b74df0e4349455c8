"""BEIR-format I/O: a corpus, queries and relevance judgements (qrels) per split.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``, ``metadata``),
``queries.jsonl`` (``_id``, ``text``, ``metadata``) and ``qrels/<split>.tsv``
(``query-id corpus-id score``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CorpusEntry:
    """One corpus entry: ``text`` with an optional ``title``; ``doc`` is its document key."""

    id: str
    text: str
    title: str = ""
    doc: str = ""

    @property
    def full_text(self) -> str:
        """What is embedded or indexed: the title (when there is one) then the text."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass
class BeirSet:
    """A retrieval set: corpus, queries and relevance judgements (qrels) of one split."""

    corpus: dict[str, CorpusEntry]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    query_meta: dict[str, dict[str, Any]] = field(default_factory=dict)

    def judged_queries(self) -> list[str]:
        """Ids of the queries with at least one relevant passage in the corpus, in file order."""
        return [
            q
            for q in self.queries
            if any(rel > 0 and d in self.corpus for d, rel in self.qrels.get(q, {}).items())
        ]


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not a JSON line ({exc.msg})") from None


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels TSV (``query-id corpus-id score``, header optional)."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if not line.strip() or (n == 1 and parts[0] == "query-id"):
                continue
            if len(parts) < 3:
                raise ValueError(f"{path}:{n}: expected query-id, corpus-id, score")
            qrels.setdefault(parts[0], {})[parts[1]] = int(float(parts[2]))
    return qrels


def qrels_splits(folder: Path) -> list[str]:
    """Names of the splits a BEIR folder has judgements for (``qrels/<name>.tsv``)."""
    return sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))


def load_beir(folder: str | Path, split: str = "test") -> BeirSet:
    """Load a BEIR folder: corpus.jsonl, queries.jsonl and qrels/<split>.tsv.

    Only the queries judged in that split are kept. Raises ValueError when a file
    is missing, naming the splits that exist.
    """
    root = Path(folder)
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (root / name).is_file():
            raise ValueError(f"{root} is not a BEIR folder: {name} is missing")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = ", ".join(qrels_splits(root)) or "none"
        raise ValueError(f"{root} has no qrels/{split}.tsv (splits: {have})")
    corpus = {
        str(row["_id"]): CorpusEntry(
            id=str(row["_id"]),
            text=str(row.get("text", "")),
            title=str(row.get("title", "") or ""),
            doc=str((row.get("metadata") or {}).get("doc", "")),
        )
        for row in read_jsonl(root / "corpus.jsonl")
    }
    qrels = read_qrels(qrels_path)
    queries: dict[str, str] = {}
    meta: dict[str, dict[str, Any]] = {}
    for row in read_jsonl(root / "queries.jsonl"):
        qid = str(row["_id"])
        if qid in qrels:
            queries[qid] = str(row["text"])
            meta[qid] = dict(row.get("metadata") or {})
    return BeirSet(corpus=corpus, queries=queries, qrels=qrels, query_meta=meta)


def write_beir(data: BeirSet, folder: str | Path, split: str) -> None:
    """Write ``data`` as a BEIR folder with qrels/<split>.tsv."""
    root = Path(folder)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    write_jsonl(
        root / "corpus.jsonl",
        (
            {"_id": p.id, "title": p.title, "text": p.text, "metadata": {"doc": p.doc}}
            for p in data.corpus.values()
        ),
    )
    write_jsonl(
        root / "queries.jsonl",
        (
            {"_id": qid, "text": text, "metadata": data.query_meta.get(qid, {})}
            for qid, text in data.queries.items()
        ),
    )
    with (root / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, rels in data.qrels.items():
            for did, rel in rels.items():
                fh.write(f"{qid}\t{did}\t{rel}\n")
