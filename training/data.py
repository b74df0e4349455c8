"""Training data: BEIR and pair/triplet loaders, the folder builder, negative mining.

A dataset built by ``python -m training.data from-folder SRC... OUT`` is two BEIR
folders and a manifest::

    OUT/train/   corpus.jsonl  queries.jsonl  qrels/train.tsv  negatives.jsonl
    OUT/heldout/ corpus.jsonl  queries.jsonl  qrels/test.tsv
    OUT/manifest.json          the build settings, counts and the document split

Documents are read through the app's own extraction and chunked by the app's own
chunker, so passages look like what the index holds. Pseudo-queries come from the
structure: a section heading for the passages under it, and inverse cloze (a
sentence of a passage is the query, and is taken out of the passage so that the
match is about meaning, not a copied string); optionally a chat model writes
questions. The split is by document: no document has passages on both sides.
Hard negatives for training are the BM25 top hits that are not relevant
(``negatives.jsonl``), or those of a model (``python -m training.data mine``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.bm25 import BM25, top_k
from training.config import (
    BuildConfig,
    ConfigError,
    add_field_arguments,
    from_mapping,
    overrides_from_args,
    read_yaml,
)
from training.sources import iter_documents

if TYPE_CHECKING:
    from sr3desk.extract.types import Document
    from sr3desk.model.base import Embedder

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
NEGATIVES = "negatives.jsonl"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'`])")
LLM_SYSTEM = "You write one short search question that the given passage answers."


# ---------------------------------------------------------------- BEIR


@dataclass(frozen=True)
class Passage:
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

    corpus: dict[str, Passage]
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


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not a JSON line ({exc.msg})") from None


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
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
        str(row["_id"]): Passage(
            id=str(row["_id"]),
            text=str(row.get("text", "")),
            title=str(row.get("title", "") or ""),
            doc=str((row.get("metadata") or {}).get("doc", "")),
        )
        for row in _read_jsonl(root / "corpus.jsonl")
    }
    qrels = read_qrels(qrels_path)
    queries: dict[str, str] = {}
    meta: dict[str, dict[str, Any]] = {}
    for row in _read_jsonl(root / "queries.jsonl"):
        qid = str(row["_id"])
        if qid in qrels:
            queries[qid] = str(row["text"])
            meta[qid] = dict(row.get("metadata") or {})
    return BeirSet(corpus=corpus, queries=queries, qrels=qrels, query_meta=meta)


def write_beir(data: BeirSet, folder: str | Path, split: str) -> None:
    """Write ``data`` as a BEIR folder with qrels/<split>.tsv."""
    root = Path(folder)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    _write_jsonl(
        root / "corpus.jsonl",
        (
            {"_id": p.id, "title": p.title, "text": p.text, "metadata": {"doc": p.doc}}
            for p in data.corpus.values()
        ),
    )
    _write_jsonl(
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


# ---------------------------------------------------------------- training examples


@dataclass(frozen=True)
class Example:
    """One training query with its relevant passages and mined hard negatives (by id)."""

    query_id: str
    query: str
    positive_ids: tuple[str, ...]
    negative_ids: tuple[str, ...] = ()


@dataclass
class TrainSet:
    """Training examples over a corpus of passage texts (id -> text)."""

    corpus: dict[str, str]
    examples: list[Example]

    def __post_init__(self) -> None:
        if not self.examples:
            raise ValueError("the training set has no examples")


@dataclass
class Batch:
    """What one micro-batch feeds the model.

    ``documents`` holds the B positives first (document i is query i's positive),
    then the hard negatives query by query (K per query). ``ignore[i][j]`` is True
    where document j is relevant to query i but is not its positive: it must not
    count as a negative.
    """

    query_ids: list[str]
    queries: list[str]
    documents: list[str]
    document_ids: list[str]
    ignore: list[list[bool]]
    negatives_per_query: int


def _text_id(text: str) -> str:
    return "t" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _first_key(row: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in row:
            return row[key]
    return None


def load_pairs_jsonl(path: str | Path) -> TrainSet:
    """Load pair or triplet JSONL: one object per line with a query and positive(s).

    Accepted keys: query/anchor/question; positive/positives/pos; negative/negatives/neg
    (each a string or a list of strings).
    """
    corpus: dict[str, str] = {}
    examples: list[Example] = []
    for n, row in enumerate(_read_jsonl(Path(path))):
        query = _first_key(row, ("query", "anchor", "question"))
        positives = _as_list(_first_key(row, ("positive", "positives", "pos")))
        negatives = _as_list(_first_key(row, ("negative", "negatives", "neg")))
        if not query or not positives:
            raise ValueError(f"{path}: line {n + 1} needs a query and a positive")
        pos_ids = tuple(_text_id(t) for t in positives)
        neg_ids = tuple(_text_id(t) for t in negatives)
        for did, text in zip(pos_ids + neg_ids, positives + negatives, strict=True):
            corpus[did] = text
        examples.append(Example(f"q{n}", str(query), pos_ids, neg_ids))
    return TrainSet(corpus=corpus, examples=examples)


def read_negatives(path: Path) -> dict[str, list[str]]:
    """Read ``negatives.jsonl`` (query_id -> negative passage ids, hardest first)."""
    if not path.is_file():
        return {}
    return {str(r["query_id"]): [str(d) for d in r["negative_ids"]] for r in _read_jsonl(path)}


def load_train_set(path: str | Path, split: str = "train") -> TrainSet:
    """Load training examples from a BEIR folder (plus its negatives.jsonl) or a JSONL file."""
    p = Path(path)
    if p.is_file():
        return load_pairs_jsonl(p)
    if not p.is_dir():
        raise ValueError(f"training data {p} does not exist")
    splits = qrels_splits(p)
    use = split if split in splits else (splits[0] if len(splits) == 1 else split)
    beir = load_beir(p, use)
    negatives = read_negatives(p / NEGATIVES)
    examples = []
    for qid in beir.judged_queries():
        positives = tuple(d for d, r in beir.qrels[qid].items() if r > 0 and d in beir.corpus)
        negs = tuple(d for d in negatives.get(qid, []) if d in beir.corpus)
        examples.append(Example(qid, beir.queries[qid], positives, negs))
    corpus = {pid: passage.full_text for pid, passage in beir.corpus.items()}
    return TrainSet(corpus=corpus, examples=examples)


class BatchSampler:
    """Endless, seeded micro-batches of distinct queries with K negatives each.

    Each epoch is a seeded permutation of the examples; with ``world`` processes,
    process ``rank`` takes every world-th example, so processes never share a query
    in the same step. The positive is one of the query's relevant passages (a
    different one each epoch when there are several). Missing hard negatives are
    filled with random passages that are not relevant to the query.
    """

    def __init__(
        self,
        data: TrainSet,
        batch_size: int,
        negatives: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if batch_size > len(data.examples) // max(world, 1):
            raise ValueError(
                f"batch_size {batch_size} x {world} processes needs at least "
                f"{batch_size * world} training queries; the set has {len(data.examples)}"
            )
        self.data = data
        self.batch_size = batch_size
        self.negatives = negatives
        self.seed = seed
        self.rank = rank
        self.world = world
        self.ids = list(data.corpus)
        self.epoch = 0
        self.cursor = 0
        self._order = self._permutation()

    def _permutation(self) -> list[int]:
        rng = random.Random(f"{self.seed}:{self.epoch}")
        order = list(range(len(self.data.examples)))
        rng.shuffle(order)
        return order[self.rank :: self.world]

    def state_dict(self) -> dict[str, int]:
        """Position in the stream, for checkpoints."""
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue the stream where a checkpoint left it."""
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])
        self._order = self._permutation()

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        chosen: list[Example] = []
        seen: set[str] = set()
        while len(chosen) < self.batch_size:
            if self.cursor >= len(self._order):
                self.epoch += 1
                self.cursor = 0
                self._order = self._permutation()
            ex = self.data.examples[self._order[self.cursor]]
            self.cursor += 1
            if ex.query not in seen:
                seen.add(ex.query)
                chosen.append(ex)
        return self._assemble(chosen)

    def _assemble(self, chosen: list[Example]) -> Batch:
        rng = random.Random(f"{self.seed}:{self.epoch}:{self.cursor}")
        pos_ids = [ex.positive_ids[self.epoch % len(ex.positive_ids)] for ex in chosen]
        neg_ids: list[str] = []
        for ex in chosen:
            relevant = set(ex.positive_ids)
            negs = [d for d in ex.negative_ids if d not in relevant][: self.negatives]
            tries = 0
            while len(negs) < self.negatives and tries < 100 * (self.negatives + 1):
                tries += 1
                cand = self.ids[rng.randrange(len(self.ids))]
                if cand not in relevant and cand not in negs:
                    negs.append(cand)
            if len(negs) < self.negatives:
                raise ValueError("the corpus is too small for the number of negatives asked")
            neg_ids.extend(negs)
        doc_ids = pos_ids + neg_ids
        ignore = []
        for i, ex in enumerate(chosen):
            relevant = set(ex.positive_ids)
            ignore.append([j != i and d in relevant for j, d in enumerate(doc_ids)])
        return Batch(
            query_ids=[ex.query_id for ex in chosen],
            queries=[ex.query for ex in chosen],
            documents=[self.data.corpus[d] for d in doc_ids],
            document_ids=doc_ids,
            ignore=ignore,
            negatives_per_query=self.negatives,
        )


# ---------------------------------------------------------------- building from documents


def _stable_hash(*parts: object) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def split_documents(keys: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The held-out document keys: the ``fraction`` of keys with the lowest seeded hash.

    At least one document is held out and at least one kept for training when
    there are two or more. The choice of a key depends only on its own hash rank.
    """
    ordered = sorted(keys, key=lambda k: (_stable_hash(seed, "split", k), k))
    n = len(ordered)
    if n < 2:
        raise ValueError(f"{n} document(s): the split needs at least 2 documents")
    n_held = min(max(1, round(fraction * n)), n - 1)
    return set(ordered[:n_held])


def heading_query(heading: str) -> str:
    """The pseudo-query of a section: the last two levels of its heading path.

    >>> heading_query("os — operating system interfaces › Files and Directories › Notes")
    'Files and Directories › Notes'
    """
    parts = [p.strip() for p in heading.split("›") if p.strip()]
    return " › ".join(parts[-2:])


def sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (split after . ! ? before a capital)."""
    spans = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def cloze(text: str, rng: random.Random, keep: float) -> tuple[str, str] | None:
    """Pick a sentence of ``text`` as a query; return (query, passage) or None.

    The sentence (5 to 60 words, not the first: that is often the heading) is cut
    out of the passage unless ``rng.random() < keep``.
    """
    spans = sentences(text)
    candidates = [
        (a, b)
        for a, b in spans[1:]
        if 5 <= len(text[a:b].split()) <= 60 and "\n\n" not in text[a:b]
    ]
    if not candidates:
        return None
    a, b = rng.choice(candidates)
    query = " ".join(text[a:b].split())
    passage = text if rng.random() < keep else (text[:a] + text[b:]).strip()
    return query, passage


class QuestionWriter:
    """Writes one search question per passage with a chat GGUF through llama.cpp."""

    def __init__(self, model_path: str | Path, seed: int = 0, n_ctx: int = 1024) -> None:
        # The app's loader, not llama_cpp.Llama: it keeps llama.cpp's AMX/repack
        # buffers off on CPUs where they crash (sr3desk.model.native).
        from sr3desk.model.generate import ChatGenerator

        if not Path(model_path).is_file():
            raise ValueError(f"build.llm_model {model_path} does not exist: give a chat GGUF")
        self._llm = ChatGenerator(model_path, n_ctx=n_ctx)  # greedy: the seed changes nothing
        self.n_ctx = n_ctx

    def question(self, passage: str) -> str | None:
        """A question the passage answers, or None when the model wrote none."""
        words = passage.split()
        text = " ".join(words[: self.n_ctx // 3])  # leave room for the prompt and answer
        reply = self._llm.reply(
            [
                {"role": "system", "content": LLM_SYSTEM},
                {"role": "user", "content": f"Passage:\n{text}\n\nQuestion:"},
            ],
            max_tokens=40,
        )
        for line in reply.splitlines():
            line = line.strip().strip('"').removeprefix("Question:").strip()
            if line.endswith("?") and 3 <= len(line.split()) <= 30:
                return line
        return None

    def close(self) -> None:
        """Free the model."""
        self._llm.close()


@dataclass
class _DocPassages:
    key: str
    passages: list[Passage]
    headings: list[str]


def _counter(tokenizer: str) -> Any:
    from sr3desk.index.chunking import ApproxCounter

    if not tokenizer:
        return ApproxCounter()
    from sr3desk.model.tokenizer import open_tokenizer

    return open_tokenizer(tokenizer)


def chunk_passages(key: str, doc: Document, cfg: BuildConfig, counter: Any) -> _DocPassages:
    """Chunk one document with the app's chunker into passages (short ones dropped)."""
    from sr3desk.index.chunking import chunk_document

    chunks = chunk_document(
        doc, counter, max_tokens=cfg.chunk_tokens, overlap_tokens=cfg.overlap_tokens
    )
    passages, headings = [], []
    for chunk in chunks:
        if len(chunk.text.strip()) < cfg.min_chars:
            continue
        passages.append(Passage(id=f"{key}#{chunk.ordinal}", text=chunk.text.strip(), doc=key))
        headings.append(chunk.heading or "")
    return _DocPassages(key, passages, headings)


def _doc_queries(
    doc: _DocPassages, cfg: BuildConfig
) -> tuple[list[Passage], list[tuple[str, str, list[str]]]]:
    """Passages (cloze sentences cut out) and (kind, query, relevant ids) of one document."""
    queries: list[tuple[str, str, list[str]]] = []
    passages = list(doc.passages)
    if "cloze" in cfg.queries:
        for i, p in enumerate(passages):
            rng = random.Random(_stable_hash(cfg.seed, "cloze", p.id))
            picked = cloze(p.text, rng, cfg.cloze_keep)
            if picked is None or len(picked[1]) < cfg.min_chars:
                continue
            query, text = picked
            passages[i] = Passage(id=p.id, text=text, title=p.title, doc=p.doc)
            queries.append(("cloze", query, [p.id]))
    if "heading" in cfg.queries:
        sections: dict[str, list[str]] = {}
        for p, heading in zip(passages, doc.headings, strict=True):
            q = heading_query(heading)
            if len(q) >= 3:
                sections.setdefault(q, []).append(p.id)
        queries.extend(("heading", q, ids) for q, ids in sections.items())
    if cfg.max_queries_per_document and len(queries) > cfg.max_queries_per_document:
        rng = random.Random(_stable_hash(cfg.seed, "cap", doc.key))
        queries = rng.sample(queries, cfg.max_queries_per_document)
    return passages, queries


def _assemble_split(docs: Sequence[_DocPassages], cfg: BuildConfig, prefix: str) -> BeirSet:
    corpus: dict[str, Passage] = {}
    by_text: dict[str, tuple[str, dict[str, int], set[str]]] = {}
    for doc in docs:
        passages, found = _doc_queries(doc, cfg)
        corpus.update((p.id, p) for p in passages)
        for kind, text, ids in found:
            # The same text from two places (a heading such as "Examples") is one query
            # with the union of the relevant passages.
            if text not in by_text:
                by_text[text] = (f"{prefix}{len(by_text)}", {}, set())
            _qid, rels, kinds = by_text[text]
            rels.update(dict.fromkeys(ids, 1))
            kinds.add(kind)
    queries = {qid: text for text, (qid, _r, _k) in by_text.items()}
    qrels = {qid: rels for _t, (qid, rels, _k) in by_text.items()}
    meta = {qid: {"kind": "+".join(sorted(kinds))} for _t, (qid, _r, kinds) in by_text.items()}
    return BeirSet(corpus, queries, qrels, meta)


def _add_llm_questions(sets: Sequence[BeirSet], cfg: BuildConfig, prefixes: Sequence[str]) -> int:
    """Add LLM-written questions to each split, sharing build.llm_max_questions by size."""
    writer = QuestionWriter(cfg.llm_model, seed=cfg.seed)
    total = 0
    try:
        sizes = [len(s.corpus) for s in sets]
        for data, prefix, size in zip(sets, prefixes, sizes, strict=True):
            budget = round(cfg.llm_max_questions * size / max(sum(sizes), 1))
            rng = random.Random(_stable_hash(cfg.seed, "llm", prefix))
            ids = sorted(data.corpus)
            for pid in rng.sample(ids, min(budget, len(ids))):
                question = writer.question(data.corpus[pid].text)
                if question is None or question in data.queries.values():
                    continue
                qid = f"{prefix}llm{total}"
                data.queries[qid] = question
                data.qrels[qid] = {pid: 1}
                data.query_meta[qid] = {"kind": "llm"}
                total += 1
    finally:
        writer.close()
    return total


# A scorer maps query texts to an (n_queries, n_passages) score matrix.
Scorer = Callable[[Sequence[str]], np.ndarray]


def bm25_scorer(texts: Sequence[str]) -> Scorer:
    """Score queries against ``texts`` with :class:`~training.bm25.BM25`."""
    index = BM25(texts)
    return lambda queries: (
        np.stack([index.scores(q) for q in queries])
        if queries
        else np.zeros((0, len(texts)), dtype=np.float32)
    )


def embedder_scorer(embedder: Embedder, texts: Sequence[str], batch: int = 64) -> Scorer:
    """Score queries by cosine with a model (the app's runtime) over ``texts``."""
    parts = [embedder.embed_documents(texts[i : i + batch]) for i in range(0, len(texts), batch)]
    matrix = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)

    def score(queries: Sequence[str]) -> np.ndarray:
        vecs = np.stack([embedder.embed_query(q).vector for q in queries])
        return vecs @ matrix.T

    return score


def mine_negatives(data: BeirSet, n: int, scorer: Scorer, batch: int = 256) -> dict[str, list[str]]:
    """For each judged query, the ``n`` best-scored passages that are not relevant to it."""
    ids = list(data.corpus)
    qids = data.judged_queries()
    out: dict[str, list[str]] = {}
    for start in range(0, len(qids), batch):
        block = qids[start : start + batch]
        scores = scorer([data.queries[q] for q in block])
        for row, qid in zip(scores, block, strict=True):
            relevant = {d for d, r in data.qrels[qid].items() if r > 0}
            hits = top_k(row, n + len(relevant))
            out[qid] = [ids[i] for i, _s in hits if ids[i] not in relevant][:n]
    return out


def write_negatives(path: Path, negatives: Mapping[str, Sequence[str]]) -> None:
    """Write ``negatives.jsonl`` (one line per query)."""
    _write_jsonl(path, ({"query_id": q, "negative_ids": list(n)} for q, n in negatives.items()))


def build_dataset(cfg: BuildConfig, out: str | Path) -> dict[str, Any]:
    """Build a training and a held-out BEIR set from ``cfg.sources`` into ``out``.

    Returns the manifest (also written to ``out/manifest.json``). Raises
    ConfigError when there are no sources or too few documents.
    """
    if not cfg.sources:
        raise ConfigError("build.sources is empty: name folders (or FOLDOC/Jargon files) to read")
    root = Path(out)
    counter = _counter(cfg.tokenizer)
    docs: list[_DocPassages] = []
    for source in cfg.sources:
        for key, doc in iter_documents(source, cfg.include, cfg.max_files):
            chunked = chunk_passages(key, doc, cfg, counter)
            if chunked.passages:
                docs.append(chunked)
    if len(docs) < 2:
        raise ConfigError(
            f"build.sources gave {len(docs)} usable document(s): the split needs 2 or more"
        )
    held = split_documents([d.key for d in docs], cfg.heldout_fraction, cfg.seed)
    train = _assemble_split([d for d in docs if d.key not in held], cfg, "q")
    heldout = _assemble_split([d for d in docs if d.key in held], cfg, "h")
    n_llm = 0
    if "llm" in cfg.queries:
        n_llm = _add_llm_questions([train, heldout], cfg, ["q", "h"])
    write_beir(train, root / "train", "train")
    write_beir(heldout, root / "heldout", "test")
    negatives: dict[str, list[str]] = {}
    if cfg.negatives and cfg.miner == "bm25":
        texts = [p.full_text for p in train.corpus.values()]
        negatives = mine_negatives(train, cfg.negatives, bm25_scorer(texts))
    write_negatives(root / "train" / NEGATIVES, negatives)
    manifest = {
        "build": asdict(cfg),
        "documents": {
            "train": sorted(d.key for d in docs if d.key not in held),
            "heldout": sorted(held),
        },
        "counts": {
            "train_passages": len(train.corpus),
            "train_queries": len(train.queries),
            "heldout_passages": len(heldout.corpus),
            "heldout_queries": len(heldout.queries),
            "llm_questions": n_llm,
        },
    }
    (root / MANIFEST).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    log.info("dataset %s: %s", root, manifest["counts"])
    return manifest


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of a built dataset, or None when the folder has none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    return dict(json.loads(path.read_text(encoding="utf-8")))


def ensure_dataset(cfg: BuildConfig, out: str | Path) -> dict[str, Any] | None:
    """Build ``out`` from ``cfg`` unless it already holds a dataset built with the same settings.

    Returns the manifest, or None when there is nothing to build from (no sources)
    and ``out`` holds no built dataset.
    """
    manifest = read_manifest(out)
    if manifest is not None and manifest.get("build") == asdict(cfg):
        return manifest
    if not cfg.sources:
        return manifest
    if manifest is not None:
        log.info("%s was built with other settings: rebuilding", out)
    return build_dataset(cfg, out)


# ---------------------------------------------------------------- command line


def _build_config_from_args(ns: argparse.Namespace) -> tuple[BuildConfig, Path]:
    tree: dict[str, Any] = {}
    out = ""
    if ns.config:
        data = read_yaml(ns.config).get("data", {})
        tree = dict(data.get("build", {}) or {})
        out = str(data.get("dir", ""))
    tree = overrides_from_args(ns, tree)
    paths = list(ns.paths)
    if len(paths) >= 2:
        tree["sources"] = paths[:-1]
        out = paths[-1]
    elif len(paths) == 1:
        if not ns.config:
            raise ConfigError("from-folder needs SOURCE... OUT (or --config with data.build)")
        out = paths[0]
    if not out:
        raise ConfigError("no output folder: give OUT or a --config with data.dir")
    return from_mapping(BuildConfig, tree), Path(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.data``: build a dataset from documents, or re-mine negatives."""
    parser = argparse.ArgumentParser(
        prog="python -m training.data", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser(
        "from-folder",
        help="build train/ and heldout/ BEIR sets from documents",
        description="Build a training set from folders (and FOLDOC/Jargon files).",
    )
    build.add_argument("paths", nargs="*", metavar="SOURCE... OUT", help="sources, then the output")
    build.add_argument("--config", default="", help="take data.build and data.dir from this YAML")
    add_field_arguments(build, BuildConfig)
    mine = sub.add_parser("mine", help="re-mine the hard negatives of a built set with a model")
    mine.add_argument("dataset", help="dataset folder (with train/) or a BEIR folder")
    mine.add_argument("--model", required=True, help="GGUF of the current model")
    mine.add_argument("--negatives", type=int, default=8, help="negatives per query")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if ns.command == "from-folder":
            cfg, out = _build_config_from_args(ns)
            manifest = build_dataset(cfg, out)
            sys.stdout.write(json.dumps(manifest["counts"], indent=2) + "\n")
        else:
            from sr3desk.model.runtime import open_embedder

            folder = Path(ns.dataset)
            folder = folder / "train" if (folder / "train").is_dir() else folder
            train = load_beir(folder, "train")
            texts = [p.full_text for p in train.corpus.values()]
            with open_embedder(ns.model) as embedder:
                negatives = mine_negatives(train, ns.negatives, embedder_scorer(embedder, texts))
            write_negatives(folder / NEGATIVES, negatives)
            sys.stdout.write(f"{len(negatives)} queries mined into {folder / NEGATIVES}\n")
    except (ConfigError, ValueError) as exc:
        sys.stderr.write(f"training.data: error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
