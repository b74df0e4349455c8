"""Entry point: ``sr3desk`` and ``python -m sr3desk``."""

from __future__ import annotations

import os
import sys

# Commands that load llama.cpp run in a supervised child, so that a crash in the
# native library is reported in one line instead of a bare "Segmentation fault"
# (sr3desk.model.crash). The window has a child process of its own for that.
_NATIVE_COMMANDS = frozenset({"embed", "index", "search", "watch", "model"})


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code.

    Called with ``argv`` None (the real entry point), a command that loads a model
    runs in a child process watched by this one; with an explicit ``argv`` (tests,
    embedding) it runs here.
    """
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), None)
    if argv is None and command in _NATIVE_COMMANDS:
        # Standard library only: the supervising parent stays a small process.
        from sr3desk.model.crash import SUPERVISED_ENV, supervise

        if not os.environ.get(SUPERVISED_ENV):
            return supervise(args, f"sr3desk {command}")
    from sr3desk.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
