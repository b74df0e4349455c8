"""Command line: ``python -m training.export HF_DIR OUT.gguf --type f16 --quant Q8_0 Q4_K_M``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from sr3desk.errors import Sr3Error
from training.export import STAGES, convert
from training.export.writer import OUT_TYPES


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m training.export``."""
    parser = argparse.ArgumentParser(
        prog="python -m training.export",
        description="Convert a Search-R3 Hugging Face checkpoint to GGUF (and quantize it).",
    )
    parser.add_argument("hf_dir", help="folder with config.json, *.safetensors, tokenizer")
    parser.add_argument("out", help="output GGUF path, e.g. build/model.F16.gguf")
    parser.add_argument("--type", default="f16", choices=sorted(OUT_TYPES), help="float type")
    parser.add_argument(
        "--quant", nargs="*", default=[], metavar="QUANT", help="llama.cpp quantizations"
    )
    parser.add_argument("--name", help="model name for sr3.model.name (default: folder name)")
    parser.add_argument("--stage", choices=STAGES, help="training stage (default: base)")
    parser.add_argument("--eval-json", help="JSON file of held-out metrics for sr3.eval")
    parser.add_argument("--pre", help="llama.cpp pre-tokenizer name, if detection fails")
    parser.add_argument(
        "--no-keep-base", action="store_true", help="delete the float GGUF after quantizing"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter; returns the exit status (errors are one line on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        metrics = None
        if args.eval_json:
            with open(args.eval_json, encoding="utf-8") as fh:
                metrics = json.load(fh)
        paths = convert(
            args.hf_dir,
            args.out,
            out_type=args.type,
            quants=args.quant,
            name=args.name,
            stage=args.stage,
            eval_metrics=metrics,
            keep_base=not args.no_keep_base,
            pre=args.pre,
        )
    except Sr3Error as err:
        sys.stderr.write(f"training.export: error: {err}\n")
        return err.exit_code
    except (OSError, json.JSONDecodeError) as err:
        sys.stderr.write(f"training.export: error: {err}\n")
        return 2
    for path in paths:
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
