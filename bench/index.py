"""End-to-end indexing versus embedding alone, on the Python docs' reST sources.

Indexes a copy of the sources (Debian's python3.11-doc) with ``Indexer.run``:
scan, extraction in the worker process, chunking with the model's tokenizer,
writes, index maintenance and embedding. Then embeds the very same chunk texts
with the same model, threads and batch size and nothing else. The ratio
model-only time / end-to-end time must be at least 0.95: the index adds at
most 5% to what the model costs anyway.

Usage: python bench/index.py [--model GGUF] [--sections tutorial,howto | --all]
       [--threads N]
Defaults: smollm2-sr3 Q8_0 from build/models, the tutorial and howto sections
(about 1 MB of text); ``--all`` takes the whole tree (12 MB: hours on 2 cores).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sr3desk.index.indexer import Indexer
from sr3desk.index.store import Store
from sr3desk.index.types import IndexOptions, Progress
from sr3desk.model.runtime import open_embedder

ROOT = Path(__file__).resolve().parent.parent
SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
DEFAULT_MODEL = ROOT / "build" / "models" / "smollm2-sr3" / "smollm2-sr3.Q8_0.gguf"
LIMIT = 0.95
# Warm-up texts, from a section the default corpus does not include.
WARMUP = sorted((SOURCES / "faq").glob("*.rst.txt"))[:8]
WARMUP_SECONDS = 60.0


def main() -> int:
    """Run the benchmark; prints a table; exit status 1 when the ratio misses."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--sections", default="tutorial,howto")
    parser.add_argument("--all", action="store_true", help="index the whole tree")
    parser.add_argument(
        "--files", type=int, default=None, help="only the first N files (by name) of the sections"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if not SOURCES.is_dir():
        sys.exit(f"{SOURCES} is missing: install Debian's python3.11-doc")
    if not args.model.is_file():
        sys.exit(f"{args.model} is missing: run `make models`")

    tmp = Path(tempfile.mkdtemp(prefix="sr3-bench-index-"))
    try:
        tree = tmp / "docs"
        if args.all:
            shutil.copytree(SOURCES, tree)
            what = "all reST sources"
        else:
            for section in args.sections.split(","):
                shutil.copytree(SOURCES / section, tree / section)
            what = f"sections {args.sections}"
        if args.files is not None:
            for extra in sorted(p for p in tree.rglob("*") if p.is_file())[args.files :]:
                extra.unlink()
            what += f", first {args.files} files"
        n_files = sum(1 for p in tree.rglob("*") if p.is_file())
        n_bytes = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
        options = IndexOptions()
        with open_embedder(args.model, threads=args.threads) as embedder:
            # Warm up before timing anything: on this machine the first minute of
            # embedding in a fresh process ran up to 40% slower than the same work later,
            # which would be charged to whichever pass came first.
            t0 = time.perf_counter()
            warm = [p.read_text(encoding="utf-8", errors="replace")[:1500] for p in WARMUP]
            while time.perf_counter() - t0 < WARMUP_SECONDS:
                embedder.embed_documents(warm)
            phases: dict[str, float] = {}
            current = [""]
            since = [time.perf_counter()]

            def progress(p: Progress) -> None:
                now = time.perf_counter()
                if p.phase != current[0]:
                    if current[0]:
                        phases[current[0]] = phases.get(current[0], 0.0) + now - since[0]
                    current[0], since[0] = p.phase, now

            home = tmp / "home"
            with Store.open(home, embedder.info, write=True) as store:
                t0 = time.perf_counter()
                with Indexer(store, embedder, options) as indexer:
                    summary = indexer.run([tree], progress)
                end_to_end = time.perf_counter() - t0
                texts = [
                    hit.text
                    for rec in store.files("indexed")
                    for hit in store.file_chunks(rec.file_id)
                ]
            # The same chunks, the same model and batch size, nothing else.
            t0 = time.perf_counter()
            for i in range(0, len(texts), options.embed_batch):
                embedder.embed_documents(texts[i : i + options.embed_batch])
            model_only = time.perf_counter() - t0
        ratio = model_only / end_to_end
        tokens = summary.tokens_embedded
        print(
            f"\nIndexing {what}: {n_files} files, {n_bytes / 1e6:.1f} MB, model {args.model.name}"
        )
        print(f"{'measure':<34}{'value':>12}")
        rows = [
            ("files read", f"{summary.indexed}"),
            ("files skipped", f"{len(summary.skipped)}"),
            ("chunks", f"{len(texts)}"),
            ("tokens embedded", f"{tokens}"),
            *[(f"  phase {name} (s)", f"{secs:.1f}") for name, secs in phases.items()],
            ("end-to-end (s)", f"{end_to_end:.1f}"),
            ("model-only embedding (s)", f"{model_only:.1f}"),
            ("end-to-end tokens/s", f"{tokens / end_to_end:.0f}"),
            ("model-only tokens/s", f"{tokens / model_only:.0f}"),
            ("ratio model-only / end-to-end", f"{ratio:.3f}"),
            ("limit", f">= {LIMIT}"),
        ]
        for name, value in rows:
            print(f"{name:<34}{value:>12}")
        print("PASS" if ratio >= LIMIT else "FAIL")
        return 0 if ratio >= LIMIT else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
