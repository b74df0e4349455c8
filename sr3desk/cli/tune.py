"""``sr3desk tune [--minutes N] [--db DIR]``: retrain the current model on your own index.

Needs the ``train`` extra (without it: one line saying what to install, exit 2,
nothing changed). Passages are sampled from the index, whole files held out, the
current model trained on the CPU for about ``--minutes``, then the tuned and the
current model (and keyword search) are measured on the held-out files'
pseudo-queries. The tuned model becomes the default only when it beats the current
one by the margin (``training.tune.MARGIN``, +0.02 nDCG@10); else it is kept in the
models folder and the figures say why. ``--undo`` returns to the previous model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sr3desk.cli import add_db_argument


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``tune`` subcommand."""
    p = sub.add_parser(
        "tune",
        help="retrain the model on your own index (needs the train extra)",
        description="Tune the current model to your indexed documents on the CPU; it "
        "becomes the default only when it measures better on files held out from training.",
    )
    add_db_argument(p)
    p.add_argument(
        "--minutes", type=float, default=60.0, help="time to spend, roughly (default 60)"
    )
    p.add_argument("--undo", action="store_true", help="return to the previous default model")
    p.add_argument("--base", metavar="HF_DIR", help="the current model's checkpoint folder")
    p.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)  # tests, benchmarks
    p.add_argument("--margin", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-teacher", action="store_true", help="no teacher filter of the queries")
    p.add_argument(
        "--no-index",
        action="store_true",
        help="after a switch, do not start re-embedding (the next index run does it)",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help=argparse.SUPPRESS
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Tune, or undo the last switch; returns the exit code."""
    from sr3desk.cli.terminal import TerminalLine
    from sr3desk.errors import Sr3Error
    from sr3desk.settings import Settings, data_dir
    from sr3desk.tuning import (
        INDEX_LOG,
        checkpoint_of,
        missing_train_extra,
        run_tune,
        start_background_index,
        switch_default,
        tune_command,
        undo,
    )

    home = data_dir(args.db)
    if args.undo:
        previous = undo(home)
        sys.stdout.write(f"default model: {previous or 'none (keyword search only)'}\n")
        return 0
    missing = missing_train_extra()
    if missing:
        sys.stderr.write(f"sr3desk: {missing}\n")
        return 2
    current = Settings.load(home).model_path
    if not current or not Path(current).is_file():
        raise Sr3Error("Cannot tune: no default model is set (sr3desk model install --default)")
    model = Path(current)
    found = (Path(args.base), None) if args.base else checkpoint_of(model)
    if found is None:
        raise Sr3Error(
            f"Cannot tune {model.name}: its training checkpoint is not beside it; "
            "give it with --base HF_DIR"
        )
    base, delta = found
    command = tune_command(
        home,
        model,
        base,
        args.minutes,
        steps=args.steps,
        margin=args.margin,
        teacher=not args.no_teacher,
        overrides=args.set,
        delta=delta,
    )
    line = TerminalLine(sys.stderr)
    tty = sys.stderr.isatty()

    def show(text: str) -> None:
        if tty:
            line.draw(text)
        elif " == " in text:  # a stage starts: its name, not its command line
            sys.stderr.write(f"tune: {text.split(' == ', 1)[1].split(':', 1)[0]}\n")
        elif "error" in text:
            sys.stderr.write(text + "\n")

    try:
        result = run_tune(command, home, show)
    finally:
        line.close()
    figures = result["figures"]
    rows = ", ".join(f"{k} {v['ndcg@10']:.3f}" for k, v in figures.items())
    out = sys.stdout
    out.write(f"held-out nDCG@10 on {result['counts']['heldout_queries']} queries: {rows}\n")
    tuned = result["tuned"]
    if result["wins"]:
        switch_default(home, Path(tuned))
        out.write(f"{Path(tuned).name} is now the default model: {result['reason']}\n")
        pid = None if args.no_index else start_background_index(home)
        if pid is not None:
            out.write(
                "its vectors are being built (log: "
                f"{home / INDEX_LOG}); the current ones serve until then\n"
            )
        else:
            out.write("the next `sr3desk index` builds its vectors; the current ones serve\n")
        out.write("`sr3desk tune --undo` returns to the previous model\n")
    else:
        out.write(f"kept the current model: {result['reason']}; the tuned one is in {tuned}\n")
    return 0
