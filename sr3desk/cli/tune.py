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
from typing import IO, TYPE_CHECKING, Any

from sr3desk.cli import add_db_argument

if TYPE_CHECKING:
    from sr3desk.tuning import TuneEvent


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
    from sr3desk.settings import data_dir
    from sr3desk.tuning import missing_train_extra, run_tune, undo

    home = data_dir(args.db)
    if args.undo:
        previous = undo(home)
        sys.stdout.write(f"default model: {previous or 'none (keyword search only)'}\n")
        return 0
    missing = missing_train_extra()
    if missing:
        sys.stderr.write(f"sr3desk: {missing}\n")
        return 2
    progress = EventLine(sys.stderr)
    try:
        result = run_tune(_command(args, home), progress.show)
    finally:
        progress.close()
    _report(result, home, args.no_index)
    return 0


def _command(args: argparse.Namespace, home: Path) -> list[str]:
    """The tune's command line for ``args``; raises Sr3Error when the default model or
    its checkpoint is missing."""
    from sr3desk.errors import Sr3Error
    from sr3desk.settings import Settings
    from sr3desk.tuning import checkpoint_of, tune_command

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
    return tune_command(
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


class EventLine:
    """Shows the tune's events on ``stream``: redrawn in one line on a terminal, else
    one line a stage (and the error, if any)."""

    def __init__(self, stream: IO[str]) -> None:
        from sr3desk.cli.terminal import TerminalLine

        self.stream = stream
        self.tty = stream.isatty()
        self.line = TerminalLine(stream)

    def show(self, event: TuneEvent) -> None:
        """Show one event of the run (a :class:`sr3desk.tuning.TuneEvent`)."""
        from sr3desk.tuning import EVENT_ERROR, EVENT_PROGRESS, EVENT_STAGE

        if event.event == EVENT_ERROR:
            self.line.close()
            self.stream.write(f"tune: error: {event.message}\n")
        elif event.event == EVENT_STAGE and self.tty:
            self.line.draw(f"tune: {event.stage}")
        elif event.event == EVENT_STAGE:
            self.stream.write(f"tune: {event.stage}\n")
        elif event.event == EVENT_PROGRESS and self.tty:
            left = f", {event.s_per_step:.1f} s/step" if event.s_per_step else ""
            self.line.draw(f"tune: {event.stage}: step {event.step} of {event.steps}{left}")

    def close(self) -> None:
        """End the redrawn line (nothing when none was drawn)."""
        self.line.close()


def _report(result: dict[str, Any], home: Path, no_index: bool) -> None:
    """Write the figures and the verdict of ``result``; a winning model becomes the
    default, its vectors built at once unless ``no_index``."""
    from sr3desk.index.background import INDEX_LOG, start_background_index
    from sr3desk.settings import Settings
    from sr3desk.tuning import switch_default

    figures = result["figures"]
    rows = ", ".join(f"{k} {v['ndcg@10']:.3f}" for k, v in figures.items())
    out = sys.stdout
    out.write(f"held-out nDCG@10 on {result['counts']['heldout_queries']} queries: {rows}\n")
    tuned = result["tuned"]
    if not result["wins"]:
        out.write(f"kept the current model: {result['reason']}; the tuned one is in {tuned}\n")
        return
    switch_default(home, Path(tuned))
    out.write(f"{Path(tuned).name} is now the default model: {result['reason']}\n")
    pid = None if no_index else start_background_index(home, Settings.load(home))
    if pid is not None:
        out.write(
            f"its vectors are being built (log: {home / INDEX_LOG}); "
            "the current ones serve until then\n"
        )
    else:
        out.write("the next `sr3desk index` builds its vectors; the current ones serve\n")
    out.write("`sr3desk tune --undo` returns to the previous model\n")
