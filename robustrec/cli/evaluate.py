"""``robustrec evaluate RUN_DIR``: re-evaluate a saved run on its clean test set (the split is rebuilt)."""

from __future__ import annotations

import argparse
from pathlib import Path

from robustrec.cli.common import print_metrics
from robustrec.evaluate import DEFAULT_KS


def add_parser(commands, parents=()) -> None:
    parser = commands.add_parser("evaluate", parents=parents, description=__doc__.splitlines()[0],
                                 help="re-evaluate a saved run on its clean test set")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--k", nargs="+", type=int, default=list(DEFAULT_KS), help="cut-offs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from robustrec import runs

    print_metrics(runs.evaluate_run(args.run_dir, ks=args.k), as_json=args.json)
    return 0
