"""The ``sr3desk`` command line.

Each subcommand lives in its own module with ``register(subparsers)``, which adds
its parser and sets ``func`` to a callable taking the parsed namespace and
returning an exit code. Modules import heavy libraries inside ``func`` so that
``sr3desk --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from sr3desk import __version__
from sr3desk.errors import Sr3Error

log = logging.getLogger("sr3desk")

# Subcommand modules, in the order --help lists them.
COMMANDS = (
    "search",
    "index",
    "watch",
    "status",
    "embed",
    "model",
    "reranker",
    "tune",
    "gui",
    "desktop",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="sr3desk",
        description="Offline semantic search over your documents (Search-R3).",
    )
    parser.add_argument("--version", action="version", version=f"sr3desk {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"sr3desk.cli.{name}")
        module.register(sub)
    return parser


def setup_logging(verbosity: int) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str]) -> int:
    """Parse ``argv`` and run the subcommand; returns the exit code.

    Without a subcommand the desktop app starts. User errors (:class:`Sr3Error`)
    print one line on stderr and return their exit code, never a traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.command is None:
        args = parser.parse_args([*argv, "gui"])
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # inside the try: a closed pipe shows up here
        return code
    except BrokenPipeError:
        # The reader went away (`sr3desk embed ... | head`): stop quietly, as other
        # command-line tools do; stdout goes to /dev/null so the interpreter's last
        # flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Sr3Error as exc:
        sys.stderr.write(f"sr3desk: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("sr3desk: interrupted\n")
        return 130


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--db DIR`` (the data directory) to a subcommand parser."""
    parser.add_argument(
        "--db",
        metavar="DIR",
        help="data directory (default: $SR3DESK_HOME, else the user data directory)",
    )


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--model GGUF`` to a subcommand parser."""
    parser.add_argument(
        "--model",
        metavar="GGUF",
        help="embedding model (default: $SR3DESK_MODEL, else the configured model)",
    )
