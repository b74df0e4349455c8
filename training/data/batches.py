"""Training sets and batching: examples (query, positives, negatives) and the sampler.

A training set comes from a BEIR folder (plus its ``negatives.jsonl``) or from a
pair/triplet JSONL file; :class:`BatchSampler` turns it into an endless, seeded,
resumable stream of micro-batches with in-batch and hard negatives.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data.beir import load_beir, qrels_splits, read_jsonl
from training.data.negatives import NEGATIVES, read_negatives


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
    for n, row in enumerate(read_jsonl(Path(path))):
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


def sample_corpus(data: TrainSet, max_passages: int, seed: int = 0) -> TrainSet:
    """A seeded part of ``data`` holding at most ``max_passages`` passages.

    Takes the training set whole when it is small enough (or ``max_passages`` is 0).
    Otherwise whole examples are kept, in a seeded order, while their positives and
    hard negatives fit in three quarters of the budget; random other passages fill
    the rest, so retrieval still has distractors that no kept query was mined
    against. Used where every passage must be encoded up front (the RL
    environment) and the whole corpus would cost more than the run.
    """
    if max_passages <= 0 or len(data.corpus) <= max_passages:
        return data
    rng = random.Random(seed)
    order = list(data.examples)
    rng.shuffle(order)
    kept: dict[str, None] = {}
    examples: list[Example] = []
    for ex in order:
        needed = [p for p in (*ex.positive_ids, *ex.negative_ids) if p not in kept]
        if len(kept) + len(needed) > max_passages * 3 // 4:
            continue
        kept.update(dict.fromkeys(needed))
        examples.append(ex)
    rest = [p for p in data.corpus if p not in kept]
    rng.shuffle(rest)
    kept.update(dict.fromkeys(rest[: max_passages - len(kept)]))
    return TrainSet(corpus={p: data.corpus[p] for p in kept}, examples=examples)


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
