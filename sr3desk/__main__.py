"""Entry point: ``sr3desk`` and ``python -m sr3desk``."""

from __future__ import annotations

import sys

from sr3desk.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    return cli_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
