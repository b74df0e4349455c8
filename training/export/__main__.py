"""Command line: ``python -m training.export HF_DIR OUT.gguf --type f16 --quant Q8_0 Q4_K_M``.

The app's ``sr3desk model convert`` and ``model fetch`` run this as a child process
(:mod:`sr3desk.model.convert`): progress is the log on stderr, the written paths are
printed on stdout, an error is one ``training.export: error:`` line, and a missing
``train`` extra exits with :data:`~sr3desk.model.convert.EXIT_MISSING_EXTRA`.
``--check`` only tries the imports conversion needs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence

from sr3desk.errors import MissingExtraError, Sr3Error
from sr3desk.model.convert import EXIT_MISSING_EXTRA, EXPORT_MODULES, FEATURE
from training.export import STAGES, convert
from training.export.writer import OUT_TYPES


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m training.export``."""
    parser = argparse.ArgumentParser(
        prog="python -m training.export",
        description="Convert a Search-R3 Hugging Face checkpoint to GGUF (and quantize it).",
    )
    parser.add_argument(
        "hf_dir", nargs="?", help="folder with config.json, *.safetensors, tokenizer"
    )
    parser.add_argument("out", nargs="?", help="output GGUF path, e.g. build/model.F16.gguf")
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
    parser.add_argument(
        "--check", action="store_true", help="only check that conversion can run here, then exit"
    )
    return parser


def _missing_extra() -> str | None:
    """The error line when the ``train`` extra is missing or broken, else None."""
    for module in EXPORT_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            return str(MissingExtraError(FEATURE, "train"))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter; returns the exit status (errors are one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.check and (args.hf_dir is None or args.out is None):
        parser.error("give HF_DIR and OUT.gguf")
    missing = _missing_extra()
    if missing is not None:
        sys.stderr.write(f"training.export: error: {missing}\n")
        return EXIT_MISSING_EXTRA
    if args.check:
        return 0
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
