"""Parity of the llama.cpp runtime with transformers over hundreds of real passages.

For smollm2-sr3 (``make models``): the transformers checkpoint gives the reference
vectors (final-norm state at ``<|embed_token|>``); each GGUF (F16, Q8_0, Q4_K_M) is
read through the app's runtime. Prints min/mean cosine per quantization and kind,
with the threshold each must meet, and own@1: the share of runtime vectors whose
nearest transformers vector (among all texts of the run) is their own text's. Also
the cosine between *different* passages: how alike unrelated texts look to this
model, which says how much a given parity cosine means. Exits 1 if a threshold fails.

    .venv/bin/python bench/parity.py [--passages 200] [--queries 50] [--reason 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sr3desk.model.ggufinfo import inspect_gguf  # noqa: E402
from sr3desk.model.runtime import open_embedder  # noqa: E402
from training import modeling  # noqa: E402
from training.export import parity as P  # noqa: E402

THRESHOLD = {"F32": 0.999, "F16": 0.999, "BF16": 0.999, "Q8_0": 0.99, "Q4_K_M": 0.95}
DOCS = Path("/usr/share/doc/python3.11/html/_sources")


def self_at_1(ours: np.ndarray, ref: np.ndarray) -> float:
    """Fraction of runtime vectors whose nearest transformers vector is their own text's."""
    return float(np.mean(np.argmax(ours @ ref.T, axis=1) == np.arange(len(ours))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "build/models/smollm2-sr3")
    parser.add_argument("--quants", nargs="*", default=["F16", "Q8_0", "Q4_K_M"])
    parser.add_argument("--passages", type=int, default=200)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--reason", type=int, default=8, help="reasoning queries per quant")
    parser.add_argument("--reason-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # results as they come

    name = args.model_dir.name
    ggufs = {q: args.model_dir / f"{name}.{q}.gguf" for q in args.quants}
    passages = P.rst_passages(DOCS, args.passages, seed=args.seed)
    queries = P.rst_titles(DOCS, args.queries, seed=args.seed)
    prompts = inspect_gguf(next(iter(ggufs.values()))).prompts

    start = time.perf_counter()
    model, tokenizer = modeling.load_model(args.model_dir)
    doc_ref = P.hf_vectors(model, tokenizer, passages, "document", prompts)
    query_ref = P.hf_vectors(model, tokenizer, queries, "query", prompts)
    print(
        f"transformers reference: {len(passages)} passages, {len(queries)} queries, "
        f"{time.perf_counter() - start:.0f} s"
    )

    rows: list[tuple[str, str, int, float, float, float, str, str]] = []
    failed = False
    for quant, path in ggufs.items():
        limit = THRESHOLD[quant]
        start = time.perf_counter()
        with open_embedder(path, threads=args.threads) as emb:
            bad_ids = P.token_id_mismatches(emb, tokenizer, passages, "document")
            bad_ids += P.token_id_mismatches(emb, tokenizer, queries, "query")
            results = [
                P.document_parity(emb, model, tokenizer, passages, doc_ref),
                P.query_parity(emb, model, tokenizer, queries, query_ref),
            ]
            note = ""
            if args.reason:
                reason = P.reason_parity(emb, model, queries[: args.reason], args.reason_tokens)
                results.append(reason.parity)
                note = f"{reason.emitted} emitted, {reason.forced} forced"
        refs = {"document": doc_ref, "query": query_ref}
        for res in results:
            ok = res.min >= limit and not bad_ids
            failed |= not ok
            own = "-"
            if res.kind in refs:
                own = f"{self_at_1(res.vectors, refs[res.kind]):.3f}"
            rows.append(
                (
                    quant,
                    res.kind,
                    len(res.cosines),
                    res.min,
                    res.mean,
                    limit,
                    own,
                    ("ok" if ok else "FAIL") + (f" ({note})" if res.kind == "reason" else ""),
                )
            )
        print(f"{quant}: {time.perf_counter() - start:.0f} s, token-id mismatches: {len(bad_ids)}")
        for row in rows[-len(results) :]:
            print(f"  {row[1]}: n {row[2]}, min {row[3]:.6f}, mean {row[4]:.6f} -> {row[7]}")

    # How alike different passages look: parity only means something well above this.
    sims = doc_ref @ doc_ref.T
    off_diag = sims[~np.eye(len(sims), dtype=bool)]
    print()
    print(f"model: {name} ({model.config.hidden_size}-d); passages: Python docs reST sources")
    print("| quant | kind | n | min cosine | mean cosine | threshold | own@1 | |")
    print("|---|---|---|---|---|---|---|---|")
    for quant, kind, n, lo, mean, limit, own, verdict in rows:
        print(f"| {quant} | {kind} | {n} | {lo:.6f} | {mean:.6f} | {limit} | {own} | {verdict} |")
    print()
    print(
        f"between different passages (transformers): mean cosine {off_diag.mean():.4f}, "
        f"max {off_diag.max():.4f}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
