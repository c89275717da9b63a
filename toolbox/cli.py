"""The ``toolbox`` command line: the same services the GUI uses, headless."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from toolbox import __version__
from toolbox.errors import EXIT_INTERRUPTED, ToolboxError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toolbox",
        description="Create and control the Docker VM, and talk to its engine.",
    )
    parser.add_argument("--version", action="version", version=f"toolbox {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args) or 0)
    except ToolboxError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"Hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
