"""How much the vector side of hybrid search is trusted: its fusion weight.

Why a weight at all: fusing a weak model's ranking with keyword search at equal
weight does not average the two, it drags the good list down. Measured on a
held-out set of 300 documents: BM25 nDCG@10 0.80, an untrained model 0.10, the
two fused at equal weight 0.35; a decent small model (0.85) fused with BM25 gave
0.87, better than either. So the vector vote must be worth nothing for a weak
model and everything for a good one.

Why measured on the index being searched: a model's figures from its training
domain do not carry over to a user's documents. The default model scored 0.573
vs BM25's 0.519 nDCG@10 on held-out R manuals, its own domain, and got full
weight everywhere from them; on 120 real documents unlike its training text
(each found by its own one-line description) it scored 0.690 vs BM25's 0.872,
and hybrid at full weight fell below keyword search (0.862).

Where the weight comes from, in order:

1. ``sr3.eval`` in the GGUF when it was measured on *this* index (its
   ``index`` names this data directory): ``sr3desk tune`` writes such figures,
   from the index's own held-out files. Mapped by :func:`weight_from_scores`.
   Figures from anywhere else are only shown, never used.
2. A calibration on the user's own index (:func:`calibrate`): pseudo-queries
   shaped like real ones (a file's title or opening line, a section heading, a
   sentence), each with the passage it came from left out of both rankings,
   retrieved by keywords and by vectors and scored by nDCG@10 at file level.
   Cached per model and index size; redone when the number of embedded
   passages has grown by half (or shrunk by a third) since, or the model changed.
3. Too few passages to measure: weight 0 (the keyword ranking; files only the
   model found may fill a short list).

Choosing the weight from a calibration (:func:`weight_from_run`): every weight
of :data:`WEIGHT_GRID` is tried on the same pseudo-queries, and the per-query
gain of fused over keyword search is taken with its standard error. The weight
kept is the one whose one-sided 95% lower confidence bound on the gain is
highest, and only if that bound is above 0; otherwise the weight is 0. So the
model takes part only where fusing it measurably helped on the user's own
documents: a noisy or small gain (few queries, a flat model) shrinks to the
keyword ranking, and a model that merely ties keyword search is left out,
because pseudo-queries flatter a model (they share words with their passages)
and on real queries its votes may well hurt.
"""

from __future__ import annotations

import json
import logging
import math
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
from sr3desk.search.metrics import ndcg_at_k, reciprocal_rank
from sr3desk.search.text import STOPWORDS, keyword_text, sentence_spans, words

if TYPE_CHECKING:
    from sr3desk.index.store import Store
    from sr3desk.model.base import Embedder

log = logging.getLogger(__name__)

LOW_RATIO = 0.7  # at or below: weight 0 (sr3.eval figures of this index)
HIGH_RATIO = 1.0  # at or above: full weight
WEIGHT_GRID = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0)  # tried on the pseudo-queries
CONFIDENCE_Z = 1.645  # one-sided 95% bound on the gain over keyword search
MIN_QUERIES = 12  # fewer usable pseudo-queries: too little to judge the model
DEFAULT_QUERIES = 60
FETCH = 50  # passages fetched per retriever and pseudo-query
CACHE_FILE = "search-calibration.json"
CACHE_VERSION = 2  # 2: nDCG@10 with a confidence bound (1 was MRR@10 and a ratio)

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
    compared (nDCG@10); ``n_queries``: queries behind them; ``embedded``:
    embedded passages when calibrated; ``fused_score``: hybrid at ``weight`` on
    the same queries; ``gain_bound``: the lower confidence bound of its gain
    over keyword search (calibration only).
    """

    weight: float
    source: str
    model_score: float | None = None
    keyword_score: float | None = None
    n_queries: int = 0
    embedded: int = 0
    dataset: str = ""
    fused_score: float | None = None
    gain_bound: float | None = None
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
                f"nDCG@10 on {self.n_queries} pseudo-queries from this index: "
                f"{self.model_score:.2f} vs keyword {self.keyword_score:.2f}"
            )
            if self.fused_score is not None and self.weight > 0:
                where += f", hybrid {self.fused_score:.2f}"
        return f"vector weight {self.weight:.2f} ({where})"


def index_identity(home: Path) -> str:
    """What an ``sr3.eval`` names as ``index`` when it was measured on the index in ``home``."""
    return str(Path(home).expanduser().resolve())


def from_eval(meta: Mapping[str, Any] | None, index: str | None = None) -> VectorWeight | None:
    """Weight from a model's ``sr3.eval`` figures; None when they are missing or unusable.

    ``index``: the searched index's :func:`index_identity`; given, figures measured
    elsewhere (no ``index``, or another one) are not evidence about it: None.
    """
    if not meta:
        return None
    if index is not None and meta.get("index") != index:
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


def _title_query(first: ChunkHit) -> str | None:
    # A file's title or opening line: what people most often search a file by. The
    # passage holding it is left out, so the file must be found by the rest of it.
    for line in first.text.splitlines():
        line = " ".join(line.split()).strip("#*=-_ ")
        if not line:
            continue
        n = len(_content_words(line))
        return line if n >= 2 and len(line.split()) <= 16 else None
    return None


def pseudo_queries(store: Store, n: int = DEFAULT_QUERIES, seed: int = 0) -> list[PseudoQuery]:
    """Make up to ``n`` pseudo-queries from the index's embedded passages.

    Three kinds, about a third each: a file's title or opening line (answered by
    the rest of the file, its first passage left out), a section heading, and a
    sentence from a passage's middle (answered by the rest of its file, the
    passage itself left out). Only files whose passages are all embedded take
    part, so the vector side is not blamed for passages it cannot see.
    """
    rng = random.Random(seed)
    sample = store.sample_chunks(n * 4, seed=seed)
    rng.shuffle(sample)
    out: list[PseudoQuery] = []
    seen: set[str] = set()
    firsts: dict[str, ChunkHit | None] = {}
    per_file: dict[str, int] = {}
    kinds = {"title": 0, "heading": 0}
    for hit in sample:
        if len(out) >= n:
            break
        if per_file.get(hit.file_id, 0) >= 2:
            continue  # spread the queries over many files
        if hit.file_id not in firsts:
            chunks = store.file_chunks(hit.file_id)
            ids = [c.chunk_id for c in chunks]
            complete = len(ids) >= 2 and len(store.chunk_vectors(ids)) == len(ids)
            firsts[hit.file_id] = chunks[0] if complete else None
        first = firsts[hit.file_id]
        if first is None:
            continue
        candidates: list[PseudoQuery | None] = []
        if kinds["title"] < n // 3 and per_file.get(hit.file_id, 0) == 0:
            title = _title_query(first)
            candidates.append(
                PseudoQuery(title, hit.file_id, first.chunk_id, "title") if title else None
            )
        if kinds["heading"] < n // 3:
            heading = _heading_query(hit)
            candidates.append(
                PseudoQuery(heading, hit.file_id, None, "heading") if heading else None
            )
        sentence = _sentence_query(hit, rng)
        candidates.append(
            PseudoQuery(sentence, hit.file_id, hit.chunk_id, "sentence") if sentence else None
        )
        query = next((q for q in candidates if q and q.text.lower() not in seen), None)
        if query is not None:
            seen.add(query.text.lower())
            if query.kind in kinds:
                kinds[query.kind] += 1
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

    def rankings(self, weight: float | None) -> list[list[str]]:
        """Per-query file ids, best first: keyword only (None), vector only (-1), or
        fused at ``weight``."""
        out = []
        for kw, vec in zip(self.keyword, self.vector, strict=True):
            if weight is None:
                rankings = [Ranking("keyword", kw)]
            elif weight < 0:
                rankings = [Ranking("vector", vec)]
            else:
                rankings = [Ranking("keyword", kw), Ranking("vector", vec, weight)]
            out.append([g.file_id for g in self.fuse(rankings)])
        return out

    def ndcgs(self, weight: float | None) -> list[float]:
        """Per-query nDCG@10 at file level, ranked as :meth:`rankings` says."""
        return [
            ndcg_at_k(files, {q.file_id})
            for q, files in zip(self.queries, self.rankings(weight), strict=True)
        ]

    def reciprocal_ranks(self, weight: float | None) -> list[float]:
        """Per-query RR@10 at file level, ranked as :meth:`rankings` says."""
        return [
            reciprocal_rank(files, {q.file_id})
            for q, files in zip(self.queries, self.rankings(weight), strict=True)
        ]

    def ndcg(self, weight: float | None) -> float:
        """Mean of :meth:`ndcgs` (0 without queries)."""
        return _mean(self.ndcgs(weight))

    def mrr(self, weight: float | None) -> float:
        """Mean of :meth:`reciprocal_ranks` (0 without queries)."""
        return _mean(self.reciprocal_ranks(weight))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def gain_bound(fused: Sequence[float], keyword: Sequence[float]) -> float:
    """One-sided 95% lower confidence bound of the mean per-query gain ``fused - keyword``.

    >>> gain_bound([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    0.0
    >>> gain_bound([1.0, 0.5, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0]) < 0.125
    True
    """
    gains = [f - k for f, k in zip(fused, keyword, strict=True)]
    n = len(gains)
    if n < 2:
        return -1.0
    mean = sum(gains) / n
    var = sum((g - mean) ** 2 for g in gains) / (n - 1)
    return mean - CONFIDENCE_Z * math.sqrt(var / n)


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
    """Turn a calibration run into a weight: the grid weight with the best lower
    confidence bound on its gain over keyword search, if that bound is positive."""
    if len(run.queries) < MIN_QUERIES:
        return VectorWeight(0.0, SOURCE_UNMEASURED, n_queries=len(run.queries), embedded=embedded)
    kw = run.ndcgs(None)
    weight, fused, best = 0.0, _mean(kw), 0.0
    bound = None
    for candidate in WEIGHT_GRID:
        scores = run.ndcgs(candidate)
        lower = gain_bound(scores, kw)
        bound = lower if bound is None else max(bound, lower)
        if lower > best:
            weight, fused, best = candidate, _mean(scores), lower
    return VectorWeight(
        weight=weight,
        source=SOURCE_CALIBRATION,
        model_score=round(run.ndcg(-1.0), 4),
        keyword_score=round(_mean(kw), 4),
        n_queries=len(run.queries),
        embedded=embedded,
        fused_score=round(fused, 4),
        gain_bound=None if bound is None else round(bound, 4),
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
    """True when the index has grown by half (or shrunk by a third) since it was measured.

    An unmeasured (too small) index is re-tried as soon as it has grown by half
    and by 50 passages.
    """
    if cached.source == SOURCE_UNMEASURED:
        return embedded > max(cached.embedded * 1.5, cached.embedded + 50)
    return embedded > 1.5 * cached.embedded or embedded < cached.embedded / 1.5


__all__ = [
    "HIGH_RATIO",
    "LOW_RATIO",
    "SOURCE_CALIBRATION",
    "SOURCE_EVAL",
    "SOURCE_FIXED",
    "SOURCE_UNMEASURED",
    "WEIGHT_GRID",
    "CalibrationCache",
    "CalibrationRun",
    "PseudoQuery",
    "VectorWeight",
    "calibrate",
    "from_eval",
    "gain_bound",
    "index_identity",
    "pseudo_queries",
    "run_calibration",
    "weight_from_ratio",
    "weight_from_run",
    "weight_from_scores",
]
