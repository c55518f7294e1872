"""Command line: ``python -m robustrec COMMAND ...`` (console script ``robustrec``).

One module per command (:data:`COMMANDS`), each with ``add_parser(commands)`` and ``run(args) -> int``; options
are generated from the dataclasses they configure (:mod:`robustrec.cli.options`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from robustrec.data import DataError

#: The commands, in the order ``--help`` lists them: module ``robustrec.cli.<name>`` defines each.
COMMANDS: tuple[str, ...] = ("train", "evaluate", "compare", "noise")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustrec", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"robustrec.cli.{name}").add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        return args.run(args)
    except (DataError, ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"robustrec {args.command}: error: {error}", file=sys.stderr)
        return 2
