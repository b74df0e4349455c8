"""How soon a saved file is searchable in watch mode.

Indexes a folder of tutorial sources with the model, starts a ``Watcher`` on
it, then saves new files one at a time and measures, from the moment the save
returns, when a reader (a separate ``Store``, as ``sr3desk search`` would open)
finds the file by keyword and when it finds it by vector. The same file's
chunks are then embedded alone to measure their embedding time. Limit: the
file is searchable within 2 s plus its embedding time.

Usage: python bench/watch.py [--model GGUF] [--saves 5] [--debounce 0.5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sr3desk.index.indexer import Indexer
from sr3desk.index.store import Store
from sr3desk.index.watcher import Watcher
from sr3desk.model.runtime import open_embedder

ROOT = Path(__file__).resolve().parent.parent
SOURCES = Path("/usr/share/doc/python3.11/html/_sources/tutorial")
DEFAULT_MODEL = ROOT / "build" / "models" / "smollm2-sr3" / "smollm2-sr3.Q8_0.gguf"
SLACK_S = 2.0

TEXT = """Field report {i}
================

The {word} colony on the northern ridge grew this season. Observers counted
nests at dawn and again at dusk, and noted the weather each time.

Feeding
-------

Adults returned with fish every twenty minutes on average; chicks fledged
after six weeks. The {word} census will be repeated next spring.
"""
WORDS = ["puffin", "gannet", "kittiwake", "guillemot", "razorbill", "fulmar", "shag", "tern"]


def main() -> int:
    """Run the benchmark; prints a table; exit status 1 when the limit is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--debounce", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sr3-bench-watch-"))
    rows = []
    try:
        docs = tmp / "docs"
        docs.mkdir()
        for name in ("appetite.rst.txt", "interpreter.rst.txt", "whatnow.rst.txt"):
            shutil.copy(SOURCES / name, docs / name)
        home = tmp / "home"
        with (
            open_embedder(args.model, threads=args.threads) as embedder,
            Store.open(home, embedder.info, write=True) as store,
            Indexer(store, embedder) as indexer,
            Store.open(home) as reader,
        ):
            indexer.run([docs])
            with Watcher(indexer, [docs], debounce_s=args.debounce) as watcher:
                watcher.wait_idle(60)  # the start-up catch-up scan is not a save
                for i in range(args.saves):
                    word = WORDS[i % len(WORDS)]
                    path = docs / f"report{i}.rst"
                    path.write_text(TEXT.format(i=i, word=word), encoding="utf-8")
                    saved = time.perf_counter()
                    keyword_s = vector_s = None
                    while vector_s is None and time.perf_counter() - saved < 120:
                        hits = reader.keyword_search(word, 1)
                        if keyword_s is None and hits and hits[0].path == str(path):
                            keyword_s = time.perf_counter() - saved
                        if keyword_s is not None:
                            chunk = hits[0]
                            if reader.chunk_vectors([chunk.chunk_id]):
                                vector_s = time.perf_counter() - saved
                        time.sleep(0.01)
                    assert keyword_s is not None and vector_s is not None, "never searchable"
                    watcher.wait_idle(60)
                    rec = reader.file(str(path))
                    assert rec is not None
                    texts = [h.text for h in reader.file_chunks(rec.file_id)]
                    t0 = time.perf_counter()
                    embedder.embed_documents(texts)
                    embed_s = time.perf_counter() - t0
                    rows.append((i, len(texts), keyword_s, vector_s, embed_s))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nWatch mode: save -> searchable (debounce {args.debounce} s, model {args.model.name})")
    header = ("save", "chunks", "keyword s", "vector s", "embed s", "limit s", "ok")
    print("".join(f"{h:>11}" for h in header))
    ok_all = True
    for i, n, kw, vec, emb in rows:
        limit = SLACK_S + emb
        ok = vec <= limit
        ok_all &= ok
        cells = (
            i,
            n,
            f"{kw:.2f}",
            f"{vec:.2f}",
            f"{emb:.2f}",
            f"{limit:.2f}",
            "yes" if ok else "NO",
        )
        print("".join(f"{c:>11}" for c in cells))
    med = statistics.median(r[3] - r[4] for r in rows)
    print(f"median (vector-searchable - embedding time): {med:.2f} s; limit {SLACK_S:.1f} s")
    print("PASS" if ok_all else "FAIL")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
