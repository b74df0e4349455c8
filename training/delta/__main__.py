"""Command line: ``python -m training.delta extract|apply`` (see :mod:`training.delta`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sr3desk.errors import Sr3Error
from training.delta import MAX_BYTES, apply_delta, extract_delta
from training.delta.extract import STAGES


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m training.delta``."""
    parser = argparse.ArgumentParser(
        prog="python -m training.delta",
        description="Extract a trained model's delta over its base, or apply one.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    ext = actions.add_parser("extract", help="write the delta of a trained HF checkpoint")
    ext.add_argument("trained", type=Path, help="trained HF checkpoint (e.g. .../sft/final)")
    ext.add_argument("--base", type=Path, required=True, help="the base HF checkpoint")
    ext.add_argument("--out", type=Path, required=True, help="delta folder to write")
    ext.add_argument("--name", help="model name (default: the --out folder's name)")
    ext.add_argument("--stage", choices=STAGES, help="default: the checkpoint's sr3.json")
    ext.add_argument(
        "--eval-json", type=Path, help="sr3.eval figures (python -m training.eval --sr3-eval)"
    )
    ext.add_argument(
        "--max-mb", type=float, default=MAX_BYTES / 1e6, help="size cap of the delta's tensors"
    )
    ext.add_argument("--threads", type=int, help="llama.cpp threads for the reference vectors")

    app = actions.add_parser("apply", help="rebuild, check and quantize the model of a delta")
    app.add_argument("delta", type=Path, help="delta folder")
    app.add_argument("--base", type=Path, required=True, help="the base HF checkpoint")
    app.add_argument("--out", type=Path, required=True, help="folder for the GGUFs")
    app.add_argument("--quant", nargs="*", default=["Q8_0"], metavar="QUANT")
    app.add_argument("--threads", type=int, help="llama.cpp threads for the check")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run an action; returns the exit status (errors are one line on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.action == "extract":
            metrics = None
            if args.eval_json:
                metrics = json.loads(args.eval_json.read_text(encoding="utf-8"))
            manifest = extract_delta(
                args.base,
                args.trained,
                args.out,
                name=args.name,
                stage=args.stage,
                eval_metrics=metrics,
                max_bytes=int(args.max_mb * 1e6),
                threads=args.threads,
            )
            sys.stdout.write(f"{args.out}: {manifest.name} ({manifest.nbytes / 1e6:.1f} MB)\n")
        else:
            applied = apply_delta(
                args.delta, args.base, args.out, quants=args.quant, threads=args.threads
            )
            for path in applied.paths:
                sys.stdout.write(f"{path}\n")
    except Sr3Error as err:
        sys.stderr.write(f"training.delta: error: {err}\n")
        return err.exit_code
    except (OSError, json.JSONDecodeError) as err:
        sys.stderr.write(f"training.delta: error: {err}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
