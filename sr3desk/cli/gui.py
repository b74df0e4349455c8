"""``sr3desk gui``: the desktop app (also what ``sr3desk`` alone starts)."""

from __future__ import annotations

import argparse
import os

from sr3desk.cli import add_db_argument, add_model_argument


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``gui`` subcommand."""
    parser = sub.add_parser(
        "gui",
        help="open the search window (the default command)",
        description="Open the sr3desk window: search as you type, previews, background "
        "indexing of your folders. A second launch brings the open window forward.",
    )
    add_db_argument(parser)
    add_model_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the app; returns its exit code.

    ``--model`` (else ``$SR3DESK_MODEL``) picks a model for this session only;
    without either the configured model is used.
    """
    from sr3desk.gui.app import run as run_app
    from sr3desk.settings import data_dir

    model = args.model or os.environ.get("SR3DESK_MODEL") or None
    return run_app(data_dir(args.db), model=model)
