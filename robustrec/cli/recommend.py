"""``robustrec recommend RUN_DIR``: top-N items for users of a trained run, with raw ids, to a table.

    python -m robustrec recommend runs/gowalla --users all -N 20 --out recs.parquet
    python -m robustrec recommend runs/gowalla --users users.txt --no-filter-seen --out recs.csv

Columns ``user, item, rank, score`` (rank 1 first). ``--users`` is ``all`` or a file of raw user ids (one per line,
or a csv/parquet table's ``user`` column); ids the model does not know are counted and reported, never skipped
silently. Users are scored in batches (a batched matrix product and top-k); the output is written batch by batch
and renamed into place at the end. Without ``--out`` the table is printed as CSV.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from robustrec.cli.common import (
    as_id_type, check_table_path, load_recommender, read_id_file, split_known, write_table,
)

log = logging.getLogger(__name__)


def add_parser(commands, parents=()) -> None:
    parser = commands.add_parser("recommend", parents=parents, description=__doc__.split("\n\n")[0],
                                 help="top-N items for users of a trained run, raw ids, to a table",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a training run directory (or a saved Recommender)")
    parser.add_argument("--users", default="all", metavar="FILE|all",
                        help="'all', or a file of raw user ids (one per line, or a csv/parquet 'user' column)")
    parser.add_argument("-N", dest="n", type=int, default=20, help="items per user")
    parser.add_argument("--filter-seen", action=argparse.BooleanOptionalAction, default=True,
                        help="leave out each user's training items")
    parser.add_argument("--out", type=Path, default=None,
                        help="table to write (.parquet or .csv); default: CSV on stdout")
    parser.add_argument("--batch-size", type=int, default=None, help="users scored at once (default: by memory)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from robustrec.api import SCORE_BUDGET

    if args.n < 1:
        raise ValueError(f"-N must be >= 1, got {args.n}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out is not None:
        check_table_path(args.out)
    model = load_recommender(args.run_dir)
    unknown = np.array([], dtype=object)
    if args.users == "all":
        users = np.arange(len(model.user_ids))
    else:
        raw = as_id_type(read_id_file(Path(args.users), "user"), model.user_ids)
        users, unknown = split_known(model, raw, "user", args.users)
    step = args.batch_size or max(1, SCORE_BUDGET // len(model.item_ids))
    batches = model.recommendation_batches(users, args.n, filter_already_liked_items=args.filter_seen,
                                           batch_size=step)
    bar = tqdm(total=len(users), desc="recommend", unit="user", disable=args.quiet, file=sys.stderr)

    def counted():
        for frame in batches:
            yield frame
            bar.update(min(step, bar.total - bar.n))

    if args.out is None:
        rows = 0
        for number, frame in enumerate(counted()):
            sys.stdout.write(frame.to_csv(index=False, header=number == 0))
            rows += len(frame)
    else:
        rows = write_table(counted(), args.out)
    bar.close()
    log.info("wrote %s: %s rows for %s users%s", args.out or "stdout", f"{rows:,}", f"{len(users):,}",
             f"; {unknown.size:,} unknown user ids got none" if unknown.size else "")
    return 0
