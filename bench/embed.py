"""Document-embedding throughput of the runtime against llama.cpp's own limit.

For each model (smollm2-sr3 Q8_0 and Q4_K_M) it embeds ``--passages`` real
passages (the Python docs' reST sources, paragraphs packed to about 250 tokens)
with ``LlamaEmbedder.embed_documents`` (template rendering, tokenization,
decoding, normalisation: everything), and measures the limit in the same run: a
bare ``llama_decode`` loop over the very same token sequences with the same
threads (one decode per sequence, logits for its last token only: the least
work llama.cpp can do to read them). The two alternate block by block, so load
from other processes hits both alike. Limit: runtime/bare >= 0.95.

Then query latency, without reasoning (one decode) and with it (greedy generation
up to the runtime's bound, then the state at the embed token).

``--batch-sweep 1,2,4,8`` also times the runtime with that many sequences per
decode (the measurement behind the runtime's CPU default of one), and
``--single-pass`` times the obvious alternative to the runtime's split decode
(the whole prompt decoded with embeddings on, which makes llama.cpp run the
output head over every token).

    python bench/embed.py [--passages 200] [--threads N] [--models DIR] [--quants Q8_0 Q4_K_M]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sr3desk.model.native import C  # noqa: E402
from sr3desk.model.runtime import LlamaEmbedder, open_embedder  # noqa: E402
from sr3desk.model.tokenizer import LlamaTokenizer, open_tokenizer  # noqa: E402

SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
TARGET_TOKENS = 250
MIN_TOKENS = 120
BLOCK = 2  # passages per alternation between the runtime and the bare loop
RATIO_LIMIT = 0.95


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
        self.model = embedder._model  # the runtime's own weights: no second copy
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
    seconds: float = 0.0
    cpu: float = 0.0

    def add(self, fn: Callable[[], object]) -> None:
        t, c = time.perf_counter(), time.process_time()
        fn()
        self.seconds += time.perf_counter() - t
        self.cpu += time.process_time() - c


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
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--reason-queries", type=int, default=3)
    parser.add_argument("--batch-sweep", default="", help="e.g. 1,2,4,8 (sequences per decode)")
    parser.add_argument("--single-pass", action="store_true", help="also time a one-pass read")
    args = parser.parse_args(argv)

    ggufs = [args.models / f"smollm2-sr3.{q}.gguf" for q in args.quants]
    for g in ggufs:
        if not g.is_file():
            sys.stderr.write(f"{g} is missing: run `make models`\n")
            return 2
    with open_tokenizer(ggufs[0]) as tok:
        texts = passages(tok, args.passages)
    queries = titles(args.queries)
    print(f"{len(texts)} passages from {SOURCES}, {len(queries)} queries")

    rows = []
    ok = True
    for gguf in ggufs:
        with open_embedder(gguf, threads=args.threads) as emb:
            print(f"{gguf.name}: {emb.threads} threads, n_ctx {emb.n_ctx}")
            n_tok, t_run, t_bare, t_single = measure(emb, texts, args.single_pass)
            plain_ms, reason_ms, gen, forced = query_latency(emb, queries, args.reason_queries)
            ratio = t_bare.seconds / t_run.seconds
            ok &= ratio >= RATIO_LIMIT
            rows.append((emb.info.quantization, emb.threads, n_tok, t_run, t_bare, t_single, ratio))
            print(
                f"  queries: {plain_ms:.0f} ms without reasoning; {reason_ms:.0f} ms with "
                f"({gen:.0f} tokens generated on average, {forced}/{args.reason_queries} forced)"
            )
        for k in [int(x) for x in args.batch_sweep.split(",") if x]:
            with open_embedder(gguf, threads=args.threads, seqs_per_batch=k) as emb:
                emb.embed_documents(texts[:2])
                t = Timing()
                t.add(partial(emb.embed_documents, texts))
                print(f"  {k} sequence(s) per decode: {n_tok / t.seconds:7.1f} tokens/s")

    print()
    head = f"{'model':<8} {'thr':>3} {'passages':>8} {'tokens':>7} {'runtime tok/s':>14} "
    head += f"{'bare tok/s':>11} {'ratio':>6} {'cpu ratio':>9}"
    if args.single_pass:
        head += f" {'one-pass tok/s':>15}"
    print(head)
    for quant, threads, n_tok, t_run, t_bare, t_single, ratio in rows:
        line = f"{quant:<8} {threads:>3} {len(texts):>8} {n_tok:>7} {n_tok / t_run.seconds:>14.1f} "
        line += f"{n_tok / t_bare.seconds:>11.1f} {ratio:>6.3f} {t_bare.cpu / t_run.cpu:>9.3f}"
        if t_single is not None:
            line += f" {n_tok / t_single.seconds:>15.1f}"
        print(line)
    print(f"limit: runtime/bare (wall-clock tokens/s) >= {RATIO_LIMIT}: {'PASS' if ok else 'FAIL'}")
    print("cpu ratio: the same with process CPU time, less sensitive to other load")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
