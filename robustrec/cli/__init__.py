"""Command line: ``python -m robustrec COMMAND ...`` (console script ``robustrec``).

One module per command (:data:`COMMANDS`), each with ``add_parser(commands)`` and ``run(args) -> int``; options
are generated from the dataclasses they configure (:mod:`robustrec.cli.options`).

One error path: an expected failure (bad data or options, a missing, unreadable or truncated file, a diverged
run, an unavailable device) prints one line naming the problem and exits 2; ``--debug`` shows the traceback
instead. Ctrl-C exits 130 and says what was kept.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from robustrec.cli.common import configure_logging
from robustrec.cli.options import ConfigFileParser

#: The command modules, in the order ``--help`` lists them: module ``robustrec.cli.<name>`` defines each
#: (``similar`` defines ``similar-items`` and ``similar-users``).
COMMANDS: tuple[str, ...] = ("train", "evaluate", "recommend", "similar", "compare", "tune", "noise")

#: Library loggers whose warnings concern their own internals, not the user's run: torch asks torchrec (its
#: caller) to move off ``is_fx_tracing`` on every first forward pass.
QUIETED_LOGGERS = ("torch.fx._symbolic_trace",)

#: Failures that are the user's input or environment, not a bug: one line, exit 2.
EXPECTED_ERRORS = (ValueError, OSError, FloatingPointError, MemoryError)


class ArgumentParser(ConfigFileParser):
    """argparse with a one-line error (argparse prints the whole usage first: dozens of lines for ``train``), and
    ``--config FILE`` for the commands that take one (:class:`~robustrec.cli.options.ConfigFileParser`); the
    commands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="robustrec", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    every_command = argparse.ArgumentParser(add_help=False)
    every_command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"robustrec.cli.{name}").add_parser(commands, parents=[every_command])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    configure_logging(quiet=args.quiet)
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        kept = args.on_interrupt(args) if hasattr(args, "on_interrupt") else "nothing was written"
        print(f"robustrec {args.command}: interrupted; {kept}", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as error:
        if args.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, MemoryError):
            message = f"out of memory{': ' + message if message != 'MemoryError' else ''}; use a smaller --batch-size"
        print(f"robustrec {args.command}: error: {message}", file=sys.stderr)
        return 2
