"""How much the vector side of hybrid search is trusted: its fusion weight.

Why a weight at all: fusing a weak model's ranking with keyword search at equal
weight does not average the two, it drags the good list down. Measured on a
held-out set of 300 documents: BM25 nDCG@10 0.80, an untrained model 0.10, the
two fused at equal weight 0.35; a decent small model (0.85) fused with BM25 gave
0.87, better than either. So the vector vote must be worth nothing for a weak
model and everything for a good one.

Where the model's quality comes from, in order:

1. ``sr3.eval`` in the GGUF (:attr:`ModelInfo.eval`): held-out nDCG@10 of the
   model and of BM25 on the same set, written by the training pipeline.
2. A calibration on the user's own index (:func:`calibrate`): pseudo-queries
   made from indexed passages, retrieved by keywords and by vectors, scored by
   MRR@10 at file level. Cached per model and index size; redone when the
   number of embedded passages has doubled (or halved) since.

The mapping from quality to weight uses the ratio ``r = model / keyword`` of the
two scores on the same queries:

    weight = clip((r - 0.7) / (1.0 - 0.7), 0, 1)

* ``r >= 1``: the model is at least as good as keyword search: full weight
  (equal to the keyword side), where fusion helps because the two make
  different mistakes (the 0.85 model above has r = 1.06).
* ``r <= 0.7``: clearly worse: weight 0, hybrid returns exactly the keyword
  ranking (files only the model found may fill a short list at the end). The
  bar sits this high because pseudo-queries share words with their passages,
  which flatters a weak model: the untrained smollm2-sr3 scores r = 0.46 to
  0.77 on them (MRR 0.41 vs 0.75 on 150 Python docs pages, 0.53 to 0.56 vs 0.79
  to 0.81 on 40, 0.71 vs 0.93 on 10; the pseudo-queries are a random sample)
  but far less on real queries
  (nDCG@10 0.10 vs 0.80 on the held-out set above), and fused at the weight
  0.32 an earlier mapping gave it, it lowered nDCG@10 from 1.00 to 0.94 (RRF) on
  a 40-page version of bench/search_quality.py's set.
* in between, linearly: a model somewhat worse than keywords still adds recall
  for paraphrased queries, but its votes count for less.

A calibrated weight is then tried on the same pseudo-queries: hybrid at that
weight must score more than keyword search (MRR@10), or as much for a model
that matched keyword search (full weight); if it does not, half and then a
quarter of it are tried, else the weight is 0. So a weaker model takes part
only where fusing it helped on the user's own documents: merely not losing is
not enough, because pseudo-queries flatter a weak model (measured: the
untrained smollm2-sr3 passed the earlier "not worse" rule at weight 0.05 on 40
Python docs pages, and RRF at that weight then lowered nDCG@10 on the real
queries from 0.966 to 0.959).
Figures from ``sr3.eval`` come from a proper held-out set and are used as they
are.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sr3desk.index.types import ChunkHit
from sr3desk.search.fusion import FileGroup, Ranking, score_fuse
from sr3desk.search.metrics import reciprocal_rank
from sr3desk.search.text import STOPWORDS, keyword_text, sentence_spans, words

if TYPE_CHECKING:
    from sr3desk.index.store import Store
    from sr3desk.model.base import Embedder

log = logging.getLogger(__name__)

LOW_RATIO = 0.7  # at or below: weight 0
HIGH_RATIO = 1.0  # at or above: full weight
GUARD_STEPS = (1.0, 0.5, 0.25)  # fractions of the mapped weight tried on the pseudo-queries
MIN_QUERIES = 12  # fewer usable pseudo-queries: too little to judge the model
DEFAULT_QUERIES = 40
FETCH = 50  # passages fetched per retriever and pseudo-query
CACHE_FILE = "search-calibration.json"
CACHE_VERSION = 1

SOURCE_EVAL = "eval"  # sr3.eval metadata of the model
SOURCE_CALIBRATION = "calibration"  # measured on the user's index
SOURCE_UNMEASURED = "unmeasured"  # too few passages to measure: keyword ranking kept
SOURCE_FIXED = "fixed"  # given by the caller (benchmarks, tests)


def weight_from_ratio(ratio: float) -> float:
    """Map ``model score / keyword score`` to the vector weight in [0, 1].

    >>> [weight_from_ratio(r) for r in (0.125, 0.63, 0.7, 0.85, 1.0, 1.06)]
    [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    """
    w = (ratio - LOW_RATIO) / (HIGH_RATIO - LOW_RATIO)
    return round(min(1.0, max(0.0, w)), 4)


def weight_from_scores(model: float, keyword: float) -> float:
    """Vector weight for a model scoring ``model`` where keyword search scores ``keyword``."""
    if keyword <= 0.0:
        # Keyword search found nothing: any working model is better.
        return 1.0 if model > 0.0 else 0.0
    return weight_from_ratio(model / keyword)


@dataclass(frozen=True)
class VectorWeight:
    """The fusion weight of the vector side and where it came from.

    ``source``: :data:`SOURCE_EVAL`, :data:`SOURCE_CALIBRATION` or
    :data:`SOURCE_UNMEASURED`; ``model_score``/``keyword_score``: the two figures
    compared (nDCG@10 for eval, MRR@10 for calibration); ``n_queries``: queries
    behind them; ``embedded``: embedded passages when calibrated.
    """

    weight: float
    source: str
    model_score: float | None = None
    keyword_score: float | None = None
    n_queries: int = 0
    embedded: int = 0
    dataset: str = ""
    fused_score: float | None = None
    measured_at: float = field(default=0.0, compare=False)

    def describe(self) -> str:
        """One line for notes and logs: the weight and the figures behind it."""
        if self.source == SOURCE_UNMEASURED:
            return "model not yet measured on this index (too few embedded passages)"
        if self.model_score is None or self.keyword_score is None:
            return f"vector weight {self.weight:.2f} (set by the caller)"
        if self.source == SOURCE_EVAL:
            where = f"held-out nDCG@10 {self.model_score:.2f} vs keyword {self.keyword_score:.2f}"
            if self.dataset:
                where += f" ({self.dataset})"
        else:
            where = (
                f"MRR@10 on {self.n_queries} pseudo-queries from this index: "
                f"{self.model_score:.2f} vs keyword {self.keyword_score:.2f}"
            )
        return f"vector weight {self.weight:.2f} ({where})"


def from_eval(meta: Mapping[str, Any] | None) -> VectorWeight | None:
    """Weight from a model's ``sr3.eval`` figures; None when they are missing or unusable."""
    if not meta:
        return None
    try:
        model = float(meta["ndcg@10"])
        keyword = float(meta["bm25_ndcg@10"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (0.0 <= model <= 1.0 and 0.0 <= keyword <= 1.0):
        return None
    return VectorWeight(
        weight=weight_from_scores(model, keyword),
        source=SOURCE_EVAL,
        model_score=model,
        keyword_score=keyword,
        n_queries=int(meta.get("n_queries", 0) or 0),
        dataset=str(meta.get("dataset", "")),
    )


# -- calibration ---------------------------------------------------------------


@dataclass(frozen=True)
class PseudoQuery:
    """A query made from the index: its text, the file that answers it, and the
    passage it was cut from (left out of both rankings: the inverse-cloze task)."""

    text: str
    file_id: str
    exclude_chunk: str | None
    kind: str


def _content_words(text: str) -> list[str]:
    return [w for _, _, w in words(text) if w.lower() not in STOPWORDS and not w.isdigit()]


def _heading_query(hit: ChunkHit) -> str | None:
    leaf = hit.heading.rsplit(" › ", 1)[-1].strip()
    n = len(_content_words(leaf))
    return leaf if n >= 2 and len(leaf.split()) <= 12 else None


def _sentence_query(hit: ChunkHit, rng: random.Random) -> str | None:
    # Only sentences from the middle half of the passage: the ends are shared with
    # the neighbouring passages (chunk overlap), which would leave the answer in.
    n = len(hit.text)
    candidates = []
    for s, e in sentence_spans(hit.text):
        if s < n * 0.2 or e > n * 0.8:
            continue
        sent = " ".join(hit.text[s:e].split())
        content = _content_words(sent)
        if len(content) >= 5 and len(sent.split()) <= 40 and sum(c.isalpha() for c in sent) > 30:
            candidates.append(sent)
    return rng.choice(candidates) if candidates else None


def pseudo_queries(store: Store, n: int = DEFAULT_QUERIES, seed: int = 0) -> list[PseudoQuery]:
    """Make up to ``n`` pseudo-queries from the index's embedded passages.

    Two kinds, about half each: a section heading (answered by its file) and a
    sentence from a passage's middle (answered by the rest of its file, the
    passage itself left out). Only files whose passages are all embedded take
    part, so the vector side is not blamed for passages it cannot see.
    """
    rng = random.Random(seed)
    sample = store.sample_chunks(n * 4, seed=seed)
    rng.shuffle(sample)
    out: list[PseudoQuery] = []
    seen: set[str] = set()
    complete: dict[str, bool] = {}
    per_file: dict[str, int] = {}
    n_headings = 0
    for hit in sample:
        if len(out) >= n:
            break
        if per_file.get(hit.file_id, 0) >= 2:
            continue  # spread the queries over many files
        if hit.file_id not in complete:
            chunks = store.file_chunks(hit.file_id)
            ids = [c.chunk_id for c in chunks]
            complete[hit.file_id] = len(ids) >= 2 and len(store.chunk_vectors(ids)) == len(ids)
        if not complete[hit.file_id]:
            continue
        query: PseudoQuery | None = None
        heading = _heading_query(hit) if n_headings < n // 2 else None
        if heading and heading.lower() not in seen:
            query = PseudoQuery(heading, hit.file_id, None, "heading")
            n_headings += 1
        else:
            sentence = _sentence_query(hit, rng)
            if sentence and sentence.lower() not in seen:
                query = PseudoQuery(sentence, hit.file_id, hit.chunk_id, "sentence")
        if query is not None:
            seen.add(query.text.lower())
            per_file[hit.file_id] = per_file.get(hit.file_id, 0) + 1
            out.append(query)
    return out


Fuse = Callable[[Sequence[Ranking]], list[FileGroup]]


@dataclass
class CalibrationRun:
    """Per-query rankings of a calibration, kept to score any fusion weight.

    ``fuse``: the fusion the searcher uses (``score_fuse`` or ``rrf_fuse``).
    """

    queries: list[PseudoQuery]
    keyword: list[list[ChunkHit]]
    vector: list[list[ChunkHit]]
    fuse: Fuse = score_fuse

    def reciprocal_ranks(self, weight: float | None) -> list[float]:
        """Per-query RR@10 at file level: keyword only (None), vector only (-1), or
        fused at ``weight``."""
        out = []
        for q, kw, vec in zip(self.queries, self.keyword, self.vector, strict=True):
            if weight is None:
                rankings = [Ranking("keyword", kw)]
            elif weight < 0:
                rankings = [Ranking("vector", vec)]
            else:
                rankings = [Ranking("keyword", kw), Ranking("vector", vec, weight)]
            files = [g.file_id for g in self.fuse(rankings)]
            out.append(reciprocal_rank(files, {q.file_id}))
        return out

    def mrr(self, weight: float | None) -> float:
        """Mean of :meth:`reciprocal_ranks` (0 without queries)."""
        rr = self.reciprocal_ranks(weight)
        return sum(rr) / len(rr) if rr else 0.0


def run_calibration(
    store: Store, embedder: Embedder, queries: Sequence[PseudoQuery], fuse: Fuse = score_fuse
) -> CalibrationRun:
    """Retrieve every pseudo-query by keywords and by vectors (source passage left out)."""
    run = CalibrationRun(list(queries), [], [], fuse)
    for q in queries:
        vector = embedder.embed_query(q.text).vector
        found = store.keyword_search(keyword_text(q.text), FETCH)
        kw = [h for h in found if h.chunk_id != q.exclude_chunk]
        vec = [h for h in store.vector_search(vector, FETCH) if h.chunk_id != q.exclude_chunk]
        run.keyword.append(kw)
        run.vector.append(vec)
    return run


def weight_from_run(run: CalibrationRun, embedded: int) -> VectorWeight:
    """Turn a calibration run into a weight: the ratio mapping, then the guard."""
    if len(run.queries) < MIN_QUERIES:
        return VectorWeight(0.0, SOURCE_UNMEASURED, n_queries=len(run.queries), embedded=embedded)
    kw = run.mrr(None)
    vec = run.mrr(-1.0)
    mapped = weight_from_scores(vec, kw)
    weight, fused = 0.0, kw
    for fraction in GUARD_STEPS if mapped > 0 else ():
        candidate = run.mrr(mapped * fraction)
        # A model at least as good as keywords may tie them; one measurably worse
        # must show that fusing it helps: a tie means its votes changed nothing
        # that was checked, and on real queries they may well hurt.
        if candidate > kw or (candidate == kw and mapped * fraction >= 1.0):
            weight, fused = mapped * fraction, candidate
            break
    return VectorWeight(
        weight=round(weight, 4),
        source=SOURCE_CALIBRATION,
        model_score=round(vec, 4),
        keyword_score=round(kw, 4),
        n_queries=len(run.queries),
        embedded=embedded,
        fused_score=round(fused, 4),
        measured_at=time.time(),
    )


def calibrate(
    store: Store,
    embedder: Embedder,
    n: int = DEFAULT_QUERIES,
    seed: int = 0,
    fuse: Fuse = score_fuse,
) -> VectorWeight:
    """Measure the model against keyword search on the index; returns its weight.

    Takes the store (served generation of ``embedder``'s model), the model and
    the fusion the searcher uses; costs ``n`` query embeddings and ``2n`` searches.
    """
    embedded = store.status().embedded
    queries = pseudo_queries(store, n, seed)
    # Too small an index to judge: skip the query embeddings, keep keyword ranking.
    run = run_calibration(store, embedder, queries if len(queries) >= MIN_QUERIES else [], fuse)
    result = weight_from_run(run, embedded)
    log.info("Calibrated %s: %s", embedder.model_id, result.describe())
    return result


class CalibrationCache:
    """Calibrations per model id in ``<home>/search-calibration.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("Ignoring unreadable calibration cache %s (%s)", self.path, exc)
            return {}
        if not isinstance(raw, dict) or raw.get("version") != CACHE_VERSION:
            return {}
        models = raw.get("models")
        return models if isinstance(models, dict) else {}

    def get(self, model_id: str, embedded: int) -> VectorWeight | None:
        """Return the cached weight when it still fits an index of ``embedded`` passages."""
        entry = self._load().get(model_id)
        if not isinstance(entry, dict):
            return None
        try:
            cached = VectorWeight(**entry)
        except TypeError:
            return None
        if not stale(cached, embedded):
            return cached
        return None

    def put(self, model_id: str, weight: VectorWeight) -> None:
        """Store ``weight`` for ``model_id`` (atomic replace; errors only logged)."""
        models = self._load()
        models[model_id] = asdict(weight)
        data = {"version": CACHE_VERSION, "models": models}
        try:
            fd, tmp = tempfile.mkstemp(prefix=".calibration-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("Cannot save calibration to %s: %s", self.path, exc)


def stale(cached: VectorWeight, embedded: int) -> bool:
    """True when the index has grown past twice (or shrunk below half) the measured size.

    An unmeasured (too small) index is re-tried as soon as it has grown by half.
    """
    if cached.source == SOURCE_UNMEASURED:
        return embedded > max(cached.embedded * 1.5, cached.embedded + 50)
    return embedded > 2 * cached.embedded or embedded < cached.embedded / 2


__all__ = [
    "HIGH_RATIO",
    "LOW_RATIO",
    "SOURCE_CALIBRATION",
    "SOURCE_EVAL",
    "SOURCE_FIXED",
    "SOURCE_UNMEASURED",
    "CalibrationCache",
    "CalibrationRun",
    "PseudoQuery",
    "VectorWeight",
    "calibrate",
    "from_eval",
    "pseudo_queries",
    "run_calibration",
    "weight_from_ratio",
    "weight_from_run",
    "weight_from_scores",
]
