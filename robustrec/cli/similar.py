"""``robustrec similar-items RUN_DIR --items ID ...`` and ``similar-users RUN_DIR --users ID ...``: the most similar
items (users) of a trained run by cosine of the factors, with raw ids.

    python -m robustrec similar-items runs/gowalla --items 123 456 -N 10
    python -m robustrec similar-users runs/gowalla --users alice --out similar.csv

Columns ``item, similar_item, rank, score`` (``user, similar_user, ...``); the query itself is left out. Ids the
model does not know are counted and reported. Without ``--out`` the table is printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from robustrec.cli.common import as_id_type, check_table_path, load_recommender, split_known, write_table

log = logging.getLogger(__name__)

#: The two commands this module defines: command name -> the side it works on.
SIDES = {"similar-items": "item", "similar-users": "user"}


def add_parser(commands, parents=()) -> None:
    for command, side in SIDES.items():
        parser = commands.add_parser(command, parents=parents, description=__doc__.split("\n\n")[0],
                                     help=f"the most similar {side}s of {side}s of a trained run, raw ids",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        parser.add_argument("run_dir", type=Path, help="a training run directory (or a saved Recommender)")
        parser.add_argument(f"--{side}s", dest="ids", nargs="+", required=True, metavar="ID",
                            help=f"raw {side} ids")
        parser.add_argument("-N", dest="n", type=int, default=10, help=f"similar {side}s per {side}")
        parser.add_argument("--out", type=Path, default=None, help="table to write (.parquet or .csv)")
        parser.set_defaults(run=run, side=side)


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ValueError(f"-N must be >= 1, got {args.n}")
    if args.out is not None:
        check_table_path(args.out)
    model = load_recommender(args.run_dir)
    like = model.item_ids if args.side == "item" else model.user_ids
    raw = as_id_type(np.asarray(args.ids, dtype=object), like)
    index, _ = split_known(model, raw, args.side, f"--{args.side}s")
    known = like[index]
    frame = (model.similar_items_frame if args.side == "item" else model.similar_users_frame)(known, N=args.n)
    if args.out is None:
        sys.stdout.write(frame.to_string(index=False) + "\n")
    else:
        rows = write_table([frame], args.out)
        log.info("wrote %s: %s rows", args.out, f"{rows:,}")
    return 0
