"""``python -m training.data``: build a dataset from documents, or re-mine its negatives.

python -m training.data from-folder SOURCE... OUT [--chunk_tokens 200 ...]
python -m training.data from-folder --config CONFIG.yaml     # data.build -> data.dir
python -m training.data mine OUT --model MODEL.gguf [--negatives 8]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.config import (
    BuildConfig,
    ConfigError,
    add_field_arguments,
    from_mapping,
    overrides_from_args,
    read_yaml,
)
from training.data.beir import load_beir
from training.data.build import build_dataset
from training.data.mining import NEGATIVES, embedder_scorer, mine_negatives, write_negatives


def _build_config_from_args(ns: argparse.Namespace) -> tuple[BuildConfig, Path]:
    tree: dict[str, Any] = {}
    out = ""
    if ns.config:
        data = read_yaml(ns.config).get("data", {})
        tree = dict(data.get("build", {}) or {})
        out = str(data.get("dir", ""))
    tree = overrides_from_args(ns, tree)
    paths = list(ns.paths)
    if len(paths) >= 2:
        tree["sources"] = paths[:-1]
        out = paths[-1]
    elif len(paths) == 1:
        if not ns.config:
            raise ConfigError("from-folder needs SOURCE... OUT (or --config with data.build)")
        out = paths[0]
    if not out:
        raise ConfigError("no output folder: give OUT or a --config with data.dir")
    return from_mapping(BuildConfig, tree), Path(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.data``: build a dataset from documents, or re-mine negatives."""
    parser = argparse.ArgumentParser(
        prog="python -m training.data",
        description="Build a training set from documents, or re-mine its hard negatives.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser(
        "from-folder",
        help="build train/ and heldout/ BEIR sets from documents",
        description="Build a training set from folders (and FOLDOC/Jargon files).",
    )
    build.add_argument("paths", nargs="*", metavar="SOURCE... OUT", help="sources, then the output")
    build.add_argument("--config", default="", help="take data.build and data.dir from this YAML")
    add_field_arguments(build, BuildConfig)
    mine = sub.add_parser("mine", help="re-mine the hard negatives of a built set with a model")
    mine.add_argument("dataset", help="dataset folder (with train/) or a BEIR folder")
    mine.add_argument("--model", required=True, help="GGUF of the current model")
    mine.add_argument("--negatives", type=int, default=8, help="negatives per query")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if ns.command == "from-folder":
            cfg, out = _build_config_from_args(ns)
            manifest = build_dataset(cfg, out)
            sys.stdout.write(json.dumps(manifest["counts"], indent=2) + "\n")
        else:
            from sr3desk.model.runtime import open_embedder

            folder = Path(ns.dataset)
            folder = folder / "train" if (folder / "train").is_dir() else folder
            train = load_beir(folder, "train")
            texts = [p.full_text for p in train.corpus.values()]
            with open_embedder(ns.model) as embedder:
                negatives = mine_negatives(train, ns.negatives, embedder_scorer(embedder, texts))
            write_negatives(folder / NEGATIVES, negatives)
            sys.stdout.write(f"{len(negatives)} queries mined into {folder / NEGATIVES}\n")
    except (ConfigError, ValueError) as exc:
        sys.stderr.write(f"training.data: error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
