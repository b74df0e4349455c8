"""Building a dataset from folders of documents: passages, pseudo-queries, split, manifest.

``python -m training.data from-folder SRC... OUT`` (:func:`build_dataset`) writes
two BEIR folders and a manifest::

    OUT/train/   corpus.jsonl  queries.jsonl  qrels/train.tsv  negatives.jsonl
    OUT/heldout/ corpus.jsonl  queries.jsonl  qrels/test.tsv
    OUT/manifest.json          the build settings, counts and the document split

Documents are read through the app's own extraction and chunked by the app's own
chunker, so passages look like what the index holds. Pseudo-queries come from the
structure: a section heading for the passages under it, and inverse cloze (a
sentence of a passage is the query, and is taken out of the passage so that the
match is about meaning, not a copied string); optionally a chat model writes
questions. The split is by document: no document has passages on both sides.
Hard negatives are BM25's top hits that are not relevant (:mod:`training.data.mining`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.config import BuildConfig, ConfigError
from training.data.beir import BeirSet, CorpusEntry, write_beir
from training.data.filtering import teacher_filter
from training.data.mining import (
    NEGATIVES,
    bm25_scorer,
    mine_negatives,
    teacher_scorer,
    write_negatives,
)
from training.data.teacher_vectors import (
    TEACHER_VECTORS,
    TeacherVectors,
    compute_teacher_vectors,
    write_teacher_vectors,
)
from training.sources import iter_documents

if TYPE_CHECKING:
    from sr3desk.extract.types import Document

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CROSSDOMAIN = "crossdomain"
# The space between two sentences of a cloze passage: after . ! ?, before a capital,
# a digit, a bracket or a quote (stricter than search's splits: a query is a whole
# sentence).
_SENTENCE_GAP = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'`])")
LLM_SYSTEM = "You write one short search question that the given passage answers."


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
    for m in _SENTENCE_GAP.finditer(text):
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
        # The answer is begun with "Question:": SmolLM2-135M then wrote a question for
        # 5 of 6 test passages, against 2 of 6 when asked for one in the user's turn.
        reply = self._llm.reply(
            [
                {"role": "system", "content": LLM_SYSTEM},
                {"role": "user", "content": f"Passage:\n{text}"},
            ],
            max_tokens=40,
            prefix="Question:",
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
class DocPassages:
    """One document's passages under its ``key``, with the heading path of each (``""``:
    none): what the pseudo-queries are made from."""

    key: str
    passages: list[CorpusEntry]
    headings: list[str]


def _counter(tokenizer: str) -> Any:
    from sr3desk.index.chunking import ApproxCounter

    if not tokenizer:
        return ApproxCounter()
    from sr3desk.model.tokenizer import open_tokenizer

    return open_tokenizer(tokenizer)


def chunk_passages(key: str, doc: Document, cfg: BuildConfig, counter: Any) -> DocPassages:
    """Chunk one document with the app's chunker into passages (short ones dropped)."""
    from sr3desk.index.chunking import chunk_document

    chunks = chunk_document(
        doc, counter, max_tokens=cfg.chunk_tokens, overlap_tokens=cfg.overlap_tokens
    )
    passages, headings = [], []
    for chunk in chunks:
        if len(chunk.text.strip()) < cfg.min_chars:
            continue
        passages.append(CorpusEntry(id=f"{key}#{chunk.ordinal}", text=chunk.text.strip(), doc=key))
        headings.append(chunk.heading or "")
    return DocPassages(key, passages, headings)


def _doc_queries(
    doc: DocPassages, cfg: BuildConfig
) -> tuple[list[CorpusEntry], list[tuple[str, str, list[str]]]]:
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
            passages[i] = CorpusEntry(id=p.id, text=text, title=p.title, doc=p.doc)
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


def _assemble_split(docs: Sequence[DocPassages], cfg: BuildConfig, prefix: str) -> BeirSet:
    corpus: dict[str, CorpusEntry] = {}
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


def build_dataset(cfg: BuildConfig, out: str | Path) -> dict[str, Any]:
    """Build a training and a held-out BEIR set from ``cfg.sources`` into ``out``.

    Returns the manifest (also written to ``out/manifest.json``). Raises
    ConfigError when there are no sources or too few documents.
    """
    if not cfg.sources and not cfg.corpora:
        raise ConfigError(
            "build.sources and build.corpora are empty: name folders (or FOLDOC/Jargon "
            "files) or corpora to read"
        )
    copies = _check_reserved_copies(cfg)
    counter = _counter(cfg.tokenizer)
    docs: list[DocPassages] = []
    cross: list[DocPassages] = []
    for label, documents in _labelled_sources(cfg):
        n_docs = 0
        for key, doc in documents:
            chunked = chunk_passages(key, doc, cfg, counter)
            if chunked.passages:
                (cross if label == cfg.crossdomain else docs).append(chunked)
                n_docs += 1
        log.info("%s: %d documents", label, n_docs)
    if len(docs) < 2:
        raise ConfigError(
            f"build.sources gave {len(docs)} usable document(s): the split needs 2 or more"
        )
    splits = split_dataset(docs, cfg)
    return write_dataset(splits, cfg, out, cross=cross, meta={"reserved_copies": copies})


@dataclass
class Splits:
    """A dataset before it is written: its ``train`` and ``heldout`` sets and the keys
    of the documents on each side (no document has passages on both)."""

    train: BeirSet
    heldout: BeirSet
    train_documents: list[str]
    heldout_documents: list[str]


def split_dataset(docs: Sequence[DocPassages], cfg: BuildConfig) -> Splits:
    """Hold out whole documents of ``docs`` (:func:`split_documents`, by
    ``cfg.heldout_fraction`` and ``cfg.seed``) and make each side's pseudo-queries
    (``cfg.queries``: heading and cloze); returns both sides. Needs 2 or more documents."""
    held = split_documents([d.key for d in docs], cfg.heldout_fraction, cfg.seed)
    train = _assemble_split([d for d in docs if d.key not in held], cfg, "q")
    heldout = _assemble_split([d for d in docs if d.key in held], cfg, "h")
    kept = sorted(d.key for d in docs if d.key not in held)
    return Splits(train, heldout, kept, sorted(held))


def write_dataset(
    splits: Splits,
    cfg: BuildConfig,
    out: str | Path,
    *,
    cross: Sequence[DocPassages] = (),
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``splits`` as the dataset folder ``out`` (the layout in this module's
    docstring), as ``cfg`` says: LLM questions, the teacher's vectors and filter, a
    sample of the training queries, mined negatives, cross-encoder targets; ``cross``:
    documents of the cross-domain evaluation set (``out/crossdomain``).

    Returns the manifest (also written to ``out/manifest.json``): the build settings,
    the documents on each side, ``meta``'s fields and the counts.
    """
    root = Path(out)
    train, heldout = splits.train, splits.heldout
    if cross:
        write_beir(_assemble_split(cross, cfg, "x"), root / CROSSDOMAIN, "test")
    n_llm = 0
    if "llm" in cfg.queries:
        n_llm = _add_llm_questions([train, heldout], cfg, ["q", "h"])
    vectors: TeacherVectors | None = None
    n_filtered = 0
    if cfg.uses_teacher:
        vectors = _teacher_vectors(train, cfg)
        if cfg.teacher_filter_k:
            n_filtered = len(teacher_filter(train, vectors, cfg.teacher_filter_k))
    if cfg.max_train_queries:
        _sample_queries(train, cfg.max_train_queries, cfg.seed)
    write_beir(train, root / "train", "train")
    write_beir(heldout, root / "heldout", "test")
    n_cross = _write_negatives(train, cfg, vectors, root / "train")
    if vectors is not None:
        write_teacher_vectors(root / "train" / TEACHER_VECTORS, vectors)
    manifest = {
        "build": asdict(cfg),
        "documents": {
            "train": splits.train_documents,
            "heldout": splits.heldout_documents,
            CROSSDOMAIN: sorted(d.key for d in cross),
        },
        **(meta or {}),
        "counts": {
            "train_passages": len(train.corpus),
            "train_queries": len(train.queries),
            "heldout_passages": len(heldout.corpus),
            "heldout_queries": len(heldout.queries),
            "llm_questions": n_llm,
            "teacher_filtered": n_filtered,
            "cross_scored_queries": n_cross,
            "crossdomain_passages": sum(len(d.passages) for d in cross),
        },
    }
    (root / MANIFEST).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    log.info("dataset %s: %s", root, manifest["counts"])
    return manifest


def _write_negatives(
    train: BeirSet, cfg: BuildConfig, vectors: TeacherVectors | None, folder: Path
) -> int:
    """Mine ``train``'s hard negatives (``cfg.miner``) into ``folder``, and with
    ``cfg.cross_targets`` the cross-encoder's scores of them; returns how many queries
    the cross-encoder scored."""
    negatives: dict[str, list[str]] = {}
    if cfg.negatives and cfg.miner == "bm25":
        texts = [p.full_text for p in train.corpus.values()]
        negatives = mine_negatives(train, cfg.negatives, bm25_scorer(texts))
    elif cfg.negatives and cfg.miner == "teacher" and vectors is not None:
        by_text = {train.queries[q]: q for q in train.judged_queries()}
        # A scorer maps query texts to an (n_queries, n_passages) score matrix.
        scorer = teacher_scorer(vectors, by_text, list(train.corpus))
        negatives = mine_negatives(train, cfg.negatives, scorer)
    n_cross = 0
    if cfg.cross_targets:
        from training.data.cross_targets import (
            CROSS_TARGETS,
            compute_cross_targets,
            cross_encoder_scorer,
            write_cross_targets,
        )

        targets, negatives = compute_cross_targets(train, negatives, cross_encoder_scorer())
        write_cross_targets(folder / CROSS_TARGETS, targets)
        n_cross = len(targets)
    write_negatives(folder / NEGATIVES, negatives)
    return n_cross


def _labelled_sources(
    cfg: BuildConfig,
) -> Iterator[tuple[str, Iterator[tuple[str, Document]]]]:
    """(label, documents) for each source path and each named corpus."""
    from training.data.corpora import iter_corpus

    for source in cfg.sources:
        yield source, iter_documents(source, cfg.include, cfg.max_files)
    sizes = cfg.sample_sizes()
    for name in cfg.corpora:
        yield name, iter_corpus(name, cfg.max_files, sizes.get(name, 0), cfg.seed)


def _check_reserved_copies(cfg: BuildConfig) -> dict[str, list[str]]:
    """Per trained corpus, the files its package also ships as info manuals or manual pages.

    Logged as a warning, or a ConfigError with ``build.reserved_copies=refuse``. The
    cross-domain corpus is not trained on: its copies are listed, never refused.
    """
    from training.data.corpora import reserved_copies

    found = {name: reserved_copies(name) for name in cfg.corpora}
    found = {name: files for name, files in found.items() if files}
    for name, files in found.items():
        if name == cfg.crossdomain:
            continue
        message = (
            f"corpus {name}: its package also ships {', '.join(files[:3])}"
            f"{' ...' if len(files) > 3 else ''}, the same text kept for evaluation"
        )
        if cfg.reserved_copies == "refuse":
            raise ConfigError(f"{message}; drop it from build.corpora or hold it out whole")
        log.warning("%s: an evaluation on the info manuals must leave it out", message)
    return found


def _teacher_vectors(data: BeirSet, cfg: BuildConfig) -> TeacherVectors:
    """The teacher's vectors of ``data``'s judged queries and passages (as training reads them)."""
    from training.teacher import make_teacher

    teacher = make_teacher(cfg.teacher, max_tokens=cfg.teacher_max_tokens)
    queries = {q: data.queries[q] for q in data.judged_queries()}
    passages = {pid: p.full_text for pid, p in data.corpus.items()}
    return compute_teacher_vectors(teacher, queries, passages)


def _sample_queries(data: BeirSet, n: int, seed: int) -> None:
    """Keep a seeded sample of ``n`` of ``data``'s judged queries (in place)."""
    qids = sorted(data.judged_queries())
    if len(qids) <= n:
        return
    rng = random.Random(f"{seed}:train-queries")
    keep = set(rng.sample(qids, n))
    for qid in qids:
        if qid not in keep:
            data.queries.pop(qid, None)
            data.qrels.pop(qid, None)
            data.query_meta.pop(qid, None)
    log.info("kept a sample of %d of %d training queries", n, len(qids))


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of a built dataset, or None when the folder has none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    return dict(json.loads(path.read_text(encoding="utf-8")))


def ensure_dataset(cfg: BuildConfig, out: str | Path) -> dict[str, Any] | None:
    """Build ``out`` from ``cfg`` unless it already holds a dataset built with the same settings.

    Returns the manifest, or None when there is nothing to build from (no sources or corpora)
    and ``out`` holds no built dataset.
    """
    manifest = read_manifest(out)
    if manifest is not None and manifest.get("build") == asdict(cfg):
        return manifest
    if not cfg.sources and not cfg.corpora:
        return manifest
    if manifest is not None:
        log.info("%s was built with other settings: rebuilding", out)
    return build_dataset(cfg, out)
