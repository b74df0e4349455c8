"""Document-embedding throughput of the runtime against llama.cpp's own limit.

For each model (smollm2-sr3 Q8_0 and Q4_K_M) it embeds ``--passages`` real
passages (the Python docs' reST sources, paragraphs packed to about 250 tokens)
with ``LlamaEmbedder.embed_documents`` (template rendering, tokenization,
decoding, normalisation: everything), and measures the limit in the same run: a
bare ``llama_decode`` loop over the very same token sequences with the same
threads (one decode per sequence, logits for its last token only: the least
work llama.cpp can do to read them). The two alternate passage by passage, in
turns, so load from other processes hits both alike. Limit: runtime/bare >= 0.95,
judged on the median of the per-passage ratios (each pair ran seconds apart, so a
burst of other load skews one pair, not the verdict); the ratio of the totals is
printed beside it and agrees with it on a quiet machine.

Then query latency, without reasoning (one decode) and with it (greedy generation
up to the runtime's bound, then the state at the embed token).

Sequences per decode: the runtime packs several passages into one decode when that
pays. ``--batch-sweep 1,4`` (the default; on the first model only) opens one
embedder per setting and times them in turns over ``--sweep-passages`` passages:
the measurement behind the runtime's CPU default (``CPU_SEQS_PER_BATCH``).
``--single-pass`` also times the obvious alternative to the runtime's split decode
(the whole prompt decoded with embeddings on, which makes llama.cpp run the
output head over every token).

    python bench/embed.py [--passages 200] [--threads N] [--models DIR] [--quants Q8_0 Q4_K_M]
                          [--batch-sweep 1,4] [--sweep-passages 32] [--single-pass]

Exit status 0 when every model meets the limit, 1 when one does not, 2 when the
models are missing.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sr3desk.model.native import C  # noqa: E402
from sr3desk.model.runtime import (  # noqa: E402
    CPU_SEQS_PER_BATCH,
    LlamaEmbedder,
    open_embedder,
)
from sr3desk.model.tokenizer import LlamaTokenizer, open_tokenizer  # noqa: E402

SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
TARGET_TOKENS = 250
MIN_TOKENS = 120
BLOCK = 1  # passages per turn between the runtime and the bare loop
RATIO_LIMIT = 0.95


def models_and_passages(
    models: Path, quants: Sequence[str], n: int, files: Sequence[Path] = ()
) -> tuple[list[Path], list[str]]:
    """The smollm2-sr3 GGUFs of ``quants`` in ``models`` (or the GGUF ``files`` when
    given) and ``n`` real passages.

    Exits with status 2 and a line saying what to run when either is missing.
    """
    ggufs = list(files) or [models / f"smollm2-sr3.{q}.gguf" for q in quants]
    for g in ggufs:
        if not g.is_file():
            sys.stderr.write(f"{g} is missing: run `make models`\n")
            raise SystemExit(2)
    with open_tokenizer(ggufs[0]) as tok:
        texts = passages(tok, n)
    if not texts:
        sys.stderr.write(f"no passages in {SOURCES}: install python3.11-doc (`make testdata`)\n")
        raise SystemExit(2)
    return ggufs, texts


def passages(tok: LlamaTokenizer, n: int, target: int = TARGET_TOKENS) -> list[str]:
    """``n`` passages of about ``target`` tokens: consecutive paragraphs of one file
    packed together (a paragraph longer than ``target`` is cut)."""
    out: list[str] = []
    files = sorted((SOURCES / "library").glob("*.rst.txt")) + sorted(SOURCES.glob("*/*.rst.txt"))
    for path in files:
        current: list[str] = []
        size = 0
        for para in path.read_text(encoding="utf-8").split("\n\n"):
            para = para.strip()
            if not para:
                continue
            count = tok.count_tokens(para)
            if count > target:
                para = tok.detokenize(tok.tokenize(para)[:target])
                count = target
            if size + count > target and size >= MIN_TOKENS:
                out.append("\n\n".join(current))
                if len(out) == n:
                    return out
                current, size = [], 0
            current.append(para)
            size += count
    return out


class BareLoop:
    """The limit: ``llama_decode`` over token sequences, nothing else, same threads.

    With ``embeddings`` the context reads the last state instead of logits, which
    makes llama.cpp output (and run the output head over) every token.
    """

    def __init__(self, embedder: LlamaEmbedder, embeddings: bool = False) -> None:
        self.model = embedder.llama_model  # the runtime's own weights: no second copy
        params = C.llama_context_default_params()
        params.n_ctx = params.n_batch = embedder.n_ctx
        params.n_ubatch = min(512, embedder.n_ctx)
        params.n_threads = params.n_threads_batch = embedder.threads
        params.embeddings = embeddings
        params.pooling_type = C.LLAMA_POOLING_TYPE_LAST
        params.kv_unified = False
        self.ctx = C.llama_init_from_model(self.model, params)
        self.mem = C.llama_get_memory(self.ctx)
        self.batch = C.llama_batch_init(embedder.n_ctx, 0, 1)

    def run(self, seqs: Sequence[Sequence[int]]) -> None:
        """Decode each sequence in one call, logits for its last token only."""
        b = self.batch
        for ids in seqs:
            C.llama_memory_clear(self.mem, False)
            for i, tok in enumerate(ids):
                b.token[i] = tok
                b.pos[i] = i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = 0
            b.logits[len(ids) - 1] = 1
            b.n_tokens = len(ids)
            if C.llama_decode(self.ctx, b) != 0:
                raise RuntimeError("llama_decode failed")

    def close(self) -> None:
        C.llama_batch_free(self.batch)
        C.llama_free(self.ctx)


@dataclass
class Timing:
    """Wall-clock and process CPU seconds, in total and per timed call."""

    seconds: float = 0.0
    cpu: float = 0.0
    calls: list[float] = field(default_factory=list)

    def add(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` and add its time."""
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall = time.perf_counter() - t
        self.seconds += wall
        self.cpu += time.process_time() - c
        self.calls.append(wall)


def paired_ratio(fast: Timing, slow: Timing) -> float:
    """Median over the timed calls of ``fast``/``slow`` time: the pairs ran side by side."""
    return statistics.median(f / s for f, s in zip(fast.calls, slow.calls, strict=True))


def measure(
    embedder: LlamaEmbedder, texts: list[str], single_pass: bool
) -> tuple[int, Timing, Timing, Timing | None]:
    """Time the runtime and the bare loop (and optionally single-pass) block by block."""
    info = embedder.info
    chat = info.chat()
    seqs = [embedder.tokenize(chat.document_prompt(info.prompts, t)) for t in texts]
    n_tokens = sum(len(s) for s in seqs)
    bare = BareLoop(embedder)
    single = BareLoop(embedder, embeddings=True) if single_pass else None
    t_run, t_bare, t_single = Timing(), Timing(), Timing()
    # Warm both paths (first-call allocations, page faults) outside the timings.
    embedder.embed_documents(texts[:2])
    bare.run(seqs[:2])
    try:
        for k, i in enumerate(range(0, len(texts), BLOCK)):
            block, block_ids = texts[i : i + BLOCK], seqs[i : i + BLOCK]
            steps: list[tuple[Timing, Callable[[], object]]] = [
                (t_run, partial(embedder.embed_documents, block)),
                (t_bare, partial(bare.run, block_ids)),
            ]
            if single is not None:
                steps.append((t_single, partial(single.run, block_ids)))
            if k % 2:
                steps.reverse()
            for timing, fn in steps:
                timing.add(fn)
            done = min(i + BLOCK, len(texts))
            sys.stderr.write(f"\r  {done}/{len(texts)} passages")
            sys.stderr.flush()
        sys.stderr.write("\n")
    finally:
        bare.close()
        if single is not None:
            single.close()
    return n_tokens, t_run, t_bare, t_single if single is not None else None


def query_latency(
    embedder: LlamaEmbedder, queries: list[str], reason_queries: int
) -> tuple[float, float, float, int]:
    """Median ms without reasoning; median ms, mean generated tokens with; forced count."""
    plain = []
    for q in queries:
        t = time.perf_counter()
        embedder.embed_query(q)
        plain.append((time.perf_counter() - t) * 1000)
    reasoned, generated, forced = [], [], 0
    for q in queries[:reason_queries]:
        t = time.perf_counter()
        r = embedder.embed_query(q, reason=True)
        reasoned.append((time.perf_counter() - t) * 1000)
        prompt = embedder.tokenize(embedder.info.chat().reason_prompt(embedder.info.prompts, q))
        generated.append(r.n_tokens - len(prompt))
        forced += r.forced
    return (
        statistics.median(plain),
        statistics.median(reasoned) if reasoned else float("nan"),
        float(np.mean(generated)) if generated else float("nan"),
        forced,
    )


def batch_sweep(
    gguf: Path, texts: list[str], sizes: list[int], threads: int | None
) -> list[tuple[int, int, float]]:
    """Tokens/s of embed_documents with each number of sequences per decode.

    One embedder per setting (the model file is mapped, so its pages are shared),
    timed in turns over blocks of ``max(sizes)`` passages so each setting fills its
    decodes and other load hits every setting alike. Returns (size, passages, tokens/s).
    """
    block = max(sizes)
    texts = texts[: len(texts) // block * block] or texts
    embedders = [open_embedder(gguf, threads=threads, seqs_per_batch=k) for k in sizes]
    try:
        info = embedders[0].info
        chat = info.chat()
        ids = [embedders[0].tokenize(chat.document_prompt(info.prompts, t)) for t in texts]
        n_tok = sum(len(x) for x in ids)
        timings = [Timing() for _ in sizes]
        for emb in embedders:
            emb.embed_documents(texts[:block])  # warm-up
        for n, i in enumerate(range(0, len(texts), block)):
            turn = list(zip(embedders, timings, strict=True))
            turn = turn[n % len(turn) :] + turn[: n % len(turn)]
            for emb, timing in turn:
                timing.add(partial(emb.embed_documents, texts[i : i + block]))
            sys.stderr.write(f"\r  sequences per decode: {i + block}/{len(texts)} passages")
            sys.stderr.flush()
        sys.stderr.write("\n")
        return [(k, len(texts), n_tok / t.seconds) for k, t in zip(sizes, timings, strict=True)]
    finally:
        for emb in embedders:
            emb.close()


def titles(n: int) -> list[str]:
    """Section titles of the Python docs: short, query-like texts."""
    out = []
    for path in sorted((SOURCES / "library").glob("*.rst.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for a, b in itertools.pairwise(lines):
            if b and set(b) <= set("=-~^") and len(b) >= len(a) > 8 and a.strip():
                out.append(a.strip().strip(":`*"))
                if len(out) == n:
                    return out
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument("--models", type=Path, default=ROOT / "build" / "models" / "smollm2-sr3")
    parser.add_argument("--quants", nargs="+", default=["Q8_0", "Q4_K_M"])
    parser.add_argument(
        "--gguf",
        type=Path,
        action="append",
        default=[],
        help="time this GGUF instead of --models/--quants (repeat: several in one run)",
    )
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--reason-queries", type=int, default=3)
    parser.add_argument(
        "--batch-sweep", default="1,4", help="sequences per decode to compare ('' skips it)"
    )
    parser.add_argument("--sweep-passages", type=int, default=32)
    parser.add_argument("--single-pass", action="store_true", help="also time a one-pass read")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # results as they come

    ggufs, texts = models_and_passages(args.models, args.quants, args.passages, args.gguf)
    queries = titles(args.queries)
    print(f"{len(texts)} passages from {SOURCES}, {len(queries)} queries")

    rows = []
    sweep_rows: list[tuple[int, int, float]] = []
    ok = True
    for gguf in ggufs:
        with open_embedder(gguf, threads=args.threads) as emb:
            print(f"{gguf.name}: {emb.threads} threads, n_ctx {emb.n_ctx}")
            n_tok, t_run, t_bare, t_single = measure(emb, texts, args.single_pass)
            plain_ms, reason_ms, gen, forced = query_latency(emb, queries, args.reason_queries)
            ratio = paired_ratio(t_bare, t_run)
            ok &= ratio >= RATIO_LIMIT
            label = gguf.stem if args.gguf else emb.info.quantization
            rows.append((label, emb.threads, n_tok, t_run, t_bare, t_single, ratio))
            print(
                f"  queries: {plain_ms:.0f} ms without reasoning; {reason_ms:.0f} ms with "
                f"({gen:.0f} tokens generated on average, {forced}/{args.reason_queries} forced)"
            )
        sweep = [int(x) for x in args.batch_sweep.split(",") if x]
        if sweep and gguf == ggufs[0]:
            sweep_rows = batch_sweep(gguf, texts[: args.sweep_passages], sweep, args.threads)

    print()
    width = max([8, *(len(r[0]) for r in rows)])
    head = f"{'model':<{width}} {'thr':>3} {'passages':>8} {'tokens':>7} {'runtime tok/s':>14} "
    head += f"{'bare tok/s':>11} {'ratio':>6} {'totals':>6} {'cpu':>6}"
    if args.single_pass:
        head += f" {'one-pass tok/s':>15}"
    print(head)
    for quant, threads, n_tok, t_run, t_bare, t_single, ratio in rows:
        line = f"{quant:<{width}} {threads:>3} {len(texts):>8} {n_tok:>7} "
        line += f"{n_tok / t_run.seconds:>14.1f} "
        line += f"{n_tok / t_bare.seconds:>11.1f} {ratio:>6.3f} "
        line += f"{t_bare.seconds / t_run.seconds:>6.3f} {t_bare.cpu / t_run.cpu:>6.3f}"
        if t_single is not None:
            line += f" {n_tok / t_single.seconds:>15.1f}"
        print(line)
    print(f"limit: runtime/bare >= {RATIO_LIMIT} (ratio column): {'PASS' if ok else 'FAIL'}")
    print("ratio: median per-passage bare/runtime time; totals: the same over all passages;")
    print("cpu: the same with process CPU time")
    if sweep_rows:
        print()
        print(f"sequences per decode ({ggufs[0].name}; runtime CPU default {CPU_SEQS_PER_BATCH}):")
        print(f"{'seqs':>4} {'passages':>8} {'tokens/s':>9} {'vs 1':>6}")
        base = next((tps for k, _, tps in sweep_rows if k == 1), sweep_rows[0][2])
        for k, n, tps in sweep_rows:
            print(f"{k:>4} {n:>8} {tps:>9.1f} {tps / base:>6.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
