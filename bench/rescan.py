"""Re-scanning an unchanged tree of 10,000 files versus a bare scandir+stat walk.

Builds a tree of small text files (100 folders of 100), indexes it once
(keyword-only: the model plays no part in a re-scan), then times, on the same
warm cache, a bare walk (``os.scandir`` plus one ``stat`` per entry) and a
re-scan through ``Indexer.run`` on the open store (walk, comparison with the
index, nothing to do). The re-scan must take at most twice the bare walk.

Usage: python bench/rescan.py [--files 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sr3desk.index.indexer import Indexer
from sr3desk.index.store import Store

LIMIT = 2.0


def bare_walk(root: str) -> int:
    """Every entry listed with os.scandir and stat'ed once; returns the file count."""
    count = 0
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif st.st_size >= 0:
                    count += 1
    return count


def build_tree(root: Path, n_files: int) -> None:
    per_dir = 100
    for i in range(n_files):
        folder = root / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            folder.mkdir(parents=True)
        (folder / f"note{i:05d}.txt").write_text(f"Note {i}: a few words about item {i}.\n")


def main() -> int:
    """Run the benchmark; prints a table; exit status 1 when the limit is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sr3-bench-rescan-"))
    try:
        tree = tmp / "tree"
        build_tree(tree, args.files)
        home = tmp / "home"
        with Store.open(home, None, write=True) as store, Indexer(store) as indexer:
            t0 = time.perf_counter()
            first = indexer.run([tree])
            first_s = time.perf_counter() - t0
            assert first.indexed == args.files, first
            walks, rescans = [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                assert bare_walk(str(tree)) == args.files
                walks.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                again = indexer.run([tree])
                rescans.append(time.perf_counter() - t0)
                assert again.unchanged == args.files and again.indexed == 0, again
        t0 = time.perf_counter()
        with Store.open(home, None, write=True):
            pass
        open_s = time.perf_counter() - t0
        # Best of N: the least disturbed run of each (other processes share the CPU).
        walk, rescan = min(walks), min(rescans)
        ratio = rescan / walk
        print(f"\nRe-scan of an unchanged tree of {args.files} files (best of {args.repeat})")
        print(f"{'measure':<40}{'seconds':>10}")
        for name, value in (
            ("first index (keyword-only, for scale)", first_s),
            ("open writer store (not in the re-scan)", open_s),
            ("bare scandir+stat walk", walk),
            ("re-scan (Indexer.run)", rescan),
        ):
            print(f"{name:<40}{value:>10.3f}")
        print(f"{'ratio re-scan / walk':<40}{ratio:>10.2f}")
        print(f"{'limit':<40}{'<= ' + str(LIMIT):>10}")
        print("PASS" if ratio <= LIMIT else "FAIL")
        return 0 if ratio <= LIMIT else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
