"""Does a model's reasoning help search? Plain against reasoned queries, side by side.

For each GGUF and each BEIR folder (a training build's ``heldout`` and ``crossdomain``
splits by default), the passages are embedded once and every query is run twice:
plain (one pass, the prompt ends at the embed token) and reasoned (the model writes
its analysis greedily, up to ``--budget`` tokens, then the token). Rows, nDCG@10:

    vector              the query's vector against the passages'
    bm25                keyword ranking of the query alone
    bm25+words          the query plus the reasoning's own words (not the query's, not
                        stop words, not the answer prefix), each counting
                        ``--word-weight`` of a query word (BM25 adds over terms)
    hybrid@W            min-max normalised keyword and vector scores of the top 100,
                        summed with vector weight W, as the app's score fusion does
                        (every passage its own file)

The plain column uses the query alone on both sides; the reasoned column the
reasoned vector and ``bm25+words``. Below the table: how often the model wrote the
token itself, the median and 90th percentile of its reasoning tokens, the median
seconds of a reasoned query, and a few of its reasonings verbatim.

    python bench/reasoning.py MODEL.gguf [MODEL2.gguf ...] [--data build/data/smollm2-cpu]
        [--sets heldout crossdomain] [--queries 100] [--passages 600] [--budget 48]
        [--weights 0 0.25 0.5] [--word-weight 0.5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sr3desk.model.prompts import ANSWER_PREFIX  # noqa: E402
from sr3desk.model.runtime import open_embedder  # noqa: E402
from sr3desk.search import metrics  # noqa: E402
from sr3desk.search.text import STOPWORDS  # noqa: E402
from training.bm25 import BM25  # noqa: E402
from training.data.beir import BeirSet, load_beir  # noqa: E402

FUSE_DEPTH = 100
WORD = re.compile(r"[A-Za-z][A-Za-z_-]{2,24}")
PREFIX_WORDS = {w.lower() for w in WORD.findall(ANSWER_PREFIX)}


def reasoning_words(reasoning: str | None, query: str) -> list[str]:
    """The words of ``reasoning`` that could widen a keyword query, first use first.

    >>> reasoning_words("Looking for: sorting, heapq. The embedding is", "sort a list")
    ['looking', 'sorting', 'heapq']
    """
    seen = {w.lower() for w in WORD.findall(query)} | PREFIX_WORDS
    out: list[str] = []
    for word in WORD.findall(reasoning or ""):
        w = word.lower()
        if w not in STOPWORDS and w not in seen:
            seen.add(w)
            out.append(w)
    return out


def fuse(keyword: np.ndarray, vector: np.ndarray, weight: float) -> list[int]:
    """Passage indices best first: the weighted sum of each side's min-max scores
    over its top :data:`FUSE_DEPTH` (0 for a passage a side did not return)."""

    def scaled(scores: np.ndarray) -> dict[int, float]:
        top = np.argsort(-scores)[:FUSE_DEPTH]
        lo, hi = float(scores[top].min()), float(scores[top].max())
        return {int(i): (float(scores[i]) - lo) / (hi - lo) if hi > lo else 1.0 for i in top}

    kw, vec = scaled(keyword), scaled(vector)
    fused = {i: (1 - weight) * kw.get(i, 0.0) + weight * vec.get(i, 0.0) for i in kw | vec}
    return sorted(fused, key=lambda i: -fused[i])


@dataclass
class SetResult:
    """One model on one set: per-row nDCG@10 lists and the reasoning's figures."""

    rows: dict[str, list[float]] = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    emitted: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)

    def add(self, row: str, value: float) -> None:
        """Record one query's nDCG@10 in ``row``; returns nothing."""
        self.rows.setdefault(row, []).append(value)

    def summary(self) -> dict[str, float]:
        """Mean of each row, and the reasoning's figures."""
        out = {row: round(float(np.mean(v)), 4) for row, v in self.rows.items()}
        n = len(self.tokens) or 1
        out["emitted"] = round(self.emitted / n, 3)
        out["reason_tokens_median"] = float(statistics.median(self.tokens or [0]))
        out["reason_tokens_p90"] = float(np.percentile(self.tokens or [0], 90))
        out["reason_s_median"] = round(statistics.median(self.seconds or [0.0]), 3)
        return out


def sample(data: BeirSet, queries: int, passages: int) -> tuple[list[str], list[str]]:
    """The first ``queries`` judged queries, and passage ids: all of them, or a seeded
    sample of ``passages`` that keeps every passage those queries are judged on."""
    qids = data.judged_queries()[:queries]
    ids = list(data.corpus)
    if passages and len(ids) > passages:
        relevant = {d for q in qids for d, r in data.qrels[q].items() if r > 0}
        others = [i for i in ids if i not in relevant]
        rng = np.random.default_rng(0)
        keep = rng.choice(len(others), max(0, passages - len(relevant)), replace=False)
        ids = [i for i in ids if i in relevant] + [others[int(k)] for k in sorted(keep)]
    return qids, ids


def measure(gguf: Path, data: BeirSet, args: argparse.Namespace) -> SetResult:
    """Run every row of the table for one model on one set."""
    qids, ids = sample(data, args.queries, args.passages)
    texts = [data.corpus[i].full_text for i in ids]
    keyword = BM25(texts)
    result = SetResult()
    with open_embedder(gguf) as embedder:
        passages = embedder.embed_documents(texts)
        for qid in qids:
            query = data.queries[qid]
            relevant = {d for d, r in data.qrels[qid].items() if r > 0}

            def ndcg(order: list[int] | np.ndarray, rel: set[str] = relevant) -> float:
                return metrics.ndcg_at_k([ids[i] for i in order[:10]], rel, 10)

            plain = embedder.embed_query(query)
            t0 = time.perf_counter()
            reasoned = embedder.embed_query(query, reason=True, max_reason_tokens=args.budget)
            result.seconds.append(time.perf_counter() - t0)
            result.tokens.append(reasoned.n_generated)
            result.emitted += int(not reasoned.forced)
            if len(result.examples) < args.examples:
                result.examples.append((query, reasoned.reasoning or ""))
            words = reasoning_words(reasoned.reasoning, query)
            kw = keyword.scores(query)
            kw_words = kw + args.word_weight * keyword.scores(" ".join(words)) if words else kw
            vp, vr = passages @ plain.vector, passages @ reasoned.vector
            result.add("vector", ndcg(np.argsort(-vp)))
            result.add("vector reasoned", ndcg(np.argsort(-vr)))
            result.add("bm25", ndcg(np.argsort(-kw)))
            result.add("bm25+words", ndcg(np.argsort(-kw_words)))
            for w in args.weights:
                result.add(f"hybrid@{w:g}", ndcg(fuse(kw, vp, w)))
                result.add(f"hybrid@{w:g} reasoned", ndcg(fuse(kw_words, vr, w)))
    return result


def table(name: str, summary: dict[str, float], weights: list[float]) -> list[str]:
    """Markdown lines: the plain and reasoned figures of one model on one set."""
    pairs = [("vector", "vector", "vector reasoned"), ("bm25", "bm25", "bm25+words")]
    pairs += [(f"hybrid@{w:g}", f"hybrid@{w:g}", f"hybrid@{w:g} reasoned") for w in weights]
    lines = [f"### {name}", "", "| row | plain | reasoned | gain |", "|---|---|---|---|"]
    for label, p, r in pairs:
        gain = summary[r] - summary[p]
        lines.append(f"| {label} | {summary[p]:.3f} | {summary[r]:.3f} | {gain:+.3f} |")
    lines.append(
        f"\ntoken written by the model: {summary['emitted']:.0%}; reasoning tokens median "
        f"{summary['reason_tokens_median']:g}, p90 {summary['reason_tokens_p90']:g}; "
        f"{summary['reason_s_median']:.2f} s a reasoned query (median)\n"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Measure, print the tables; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", type=Path, help="Search-R3 GGUFs")
    ap.add_argument("--data", type=Path, default=ROOT / "build/data/smollm2-cpu")
    ap.add_argument("--sets", nargs="+", default=["heldout", "crossdomain"])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--passages", type=int, default=600, help="0: every passage")
    ap.add_argument("--budget", type=int, default=48, help="reasoning tokens at most")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5])
    ap.add_argument("--word-weight", type=float, default=0.5)
    ap.add_argument("--examples", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    report: dict[str, dict[str, dict[str, float]]] = {}
    for gguf in args.models:
        for name in args.sets:
            folder = args.data / name
            split = "test" if (folder / "qrels" / "test.tsv").is_file() else name
            data = load_beir(folder, split)
            result = measure(gguf, data, args)
            summary = result.summary()
            report.setdefault(str(gguf), {})[name] = summary
            print("\n".join(table(f"{gguf.name} on {name}", summary, args.weights)))
            for query, reasoning in result.examples:
                print(f"- {query[:70]!r} -> {reasoning[:120]!r}")
            print()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
