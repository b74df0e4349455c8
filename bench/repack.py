"""Embedding throughput with llama.cpp's repacked weight buffers on and off.

llama.cpp can load weights into "extra" buffer types: layouts repacked for the
CPU's matrix kernels and, on CPUs with Intel AMX, the AMX buffer (which crashes
there, so the runtime keeps them off on AMX CPUs: sr3desk.model.native). This
measures, on this machine, what they are worth where they are safe: for each
quantization, two embedders of the same GGUF, one per setting, embed the same
real passages in turns (so other load hits both alike), and the table gives
tokens/s for each and the ratio. The runtime's default
(``REPACK_BY_DEFAULT``) should be the faster one; the verdict line says
whether it is.

    python bench/repack.py [--passages 48] [--quants Q8_0 Q4_K_M] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.embed import Timing, models_and_passages  # noqa: E402
from sr3desk.model.cpufeatures import cpu_flags, has_amx  # noqa: E402
from sr3desk.model.crash import REPACK_ENV  # noqa: E402
from sr3desk.model.native import REPACK_BY_DEFAULT  # noqa: E402
from sr3desk.model.runtime import LlamaEmbedder, open_embedder  # noqa: E402

BLOCK = 4  # passages per turn


def open_with(gguf: Path, repack: bool, threads: int | None) -> LlamaEmbedder:
    """An embedder whose model was loaded with the repack buffers on or off."""
    os.environ[REPACK_ENV] = "on" if repack else "off"
    try:
        return open_embedder(gguf, threads=threads)
    finally:
        del os.environ[REPACK_ENV]


def compare(gguf: Path, texts: list[str], threads: int | None) -> tuple[int, float, float]:
    """Returns (tokens, tokens/s with repack off, tokens/s with repack on)."""
    off, on = open_with(gguf, False, threads), open_with(gguf, True, threads)
    try:
        info = off.info
        n_tok = sum(len(off.tokenize(info.chat().document_prompt(info.prompts, t))) for t in texts)
        timing = {False: Timing(), True: Timing()}
        for emb in (off, on):
            emb.embed_documents(texts[:BLOCK])  # warm-up: page the weights in
        for n, i in enumerate(range(0, len(texts), BLOCK)):
            order = [(off, False), (on, True)][:: 1 if n % 2 == 0 else -1]
            for emb, key in order:
                timing[key].add(partial(emb.embed_documents, texts[i : i + BLOCK]))
        return n_tok, n_tok / timing[False].seconds, n_tok / timing[True].seconds
    finally:
        off.close()
        on.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=48)
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument("--models", type=Path, default=ROOT / "build" / "models" / "smollm2-sr3")
    parser.add_argument("--quants", nargs="+", default=["Q8_0", "Q4_K_M"])
    args = parser.parse_args(argv)
    if has_amx():
        print("this CPU has AMX: the repack/AMX buffers crash here, so only 'off' is safe")
        return 0
    ggufs, texts = models_and_passages(args.models, args.quants, args.passages)
    print(f"CPU flags: {' '.join(sorted(cpu_flags()))}")
    print(f"{'model':<26} {'tokens':>7} {'off tok/s':>10} {'on tok/s':>9} {'on/off':>7}")
    faster_on = []
    for gguf in ggufs:
        n_tok, t_off, t_on = compare(gguf, texts, args.threads)
        faster_on.append(t_on > t_off)
        print(f"{gguf.name:<26} {n_tok:>7} {t_off:>10.1f} {t_on:>9.1f} {t_on / t_off:>7.3f}")
    default = "on" if REPACK_BY_DEFAULT else "off"
    best = "on" if all(faster_on) else "off" if not any(faster_on) else "mixed"
    verdict = "OK" if best in (default, "mixed") else "CHANGE THE DEFAULT"
    print(f"runtime default on CPUs without AMX: {default}; faster here: {best}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
