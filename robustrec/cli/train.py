"""``robustrec train``: train a recommender, evaluate it on the clean test set, write the run directory.

Every option is a field of :class:`robustrec.config.TrainConfig` or :class:`robustrec.data.DataSpec`;
``--config FILE`` reads them from YAML or JSON (a run's config.json reproduces the run), flags override it. The
sharding options (under ``torchrun``) are fields of :class:`robustrec.distributed.ShardingConfig`.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from robustrec.cli.common import add_data_arguments, data_spec, print_metrics
from robustrec.cli.options import add_config_argument, add_dataclass_arguments, from_namespace, report_config
from robustrec.config import DEPRECATED_NAMES, TrainConfig
from robustrec.data import DataSpec


class _ShardedAlias(argparse.Action):
    """``--sharded`` of 0.1: table-wise sharding, with a FutureWarning."""

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn("--sharded is deprecated; use --sharding table_wise (or row_wise, column_wise, auto)",
                      FutureWarning, stacklevel=2)
        namespace.sharding = namespace.sharding or "table_wise"


def add_parser(commands, parents=()) -> None:
    from robustrec.distributed import ShardingConfig

    parser = commands.add_parser("train", parents=parents, description=__doc__.splitlines()[0],
                                 help="train a recommender and evaluate it on the clean test set",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_arguments(parser, TrainConfig, deprecated=DEPRECATED_NAMES)
    add_data_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/latest"), help="run directory to write")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint (a finished run: with more --epochs)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in --out; the old one stays intact until the new one has finished")
    add_dataclass_arguments(parser.add_argument_group("sharding (one process per rank, under torchrun)"),
                            ShardingConfig)
    parser.add_argument("--sharded", nargs=0, action=_ShardedAlias, help=argparse.SUPPRESS)
    add_config_argument(parser, {"train": TrainConfig, "data": DataSpec})
    parser.set_defaults(run=run, on_interrupt=on_interrupt)


def run(args: argparse.Namespace) -> int:
    from robustrec import runs

    report_config(args)
    config = from_namespace(TrainConfig, args)
    spec = data_spec(args, seed=config.seed)
    if args.sharding is not None:
        return _run_sharded(config, spec, args)
    metrics = runs.train_run(config, spec, args.out, resume=args.resume, overwrite=args.overwrite,
                             progress=not args.quiet)
    print_metrics(metrics, as_json=False)
    print(f"wrote {args.out}/{runs.METRICS_FILE}")
    return 0


def on_interrupt(args: argparse.Namespace) -> str:
    """What Ctrl-C left: the last checkpoint and the command that continues from it."""
    from robustrec.atomic import UnreadableFileError, load_torch
    from robustrec.training import CHECKPOINT_FILE

    if args.overwrite:
        return f"{args.out} is unchanged (the replacement had not finished)"
    checkpoint = args.out / CHECKPOINT_FILE
    try:
        epoch = load_torch(checkpoint)["epoch"]
    except (FileNotFoundError, UnreadableFileError):
        return f"no epoch had finished; nothing to resume in {args.out}"
    command = " ".join(["robustrec", *args.argv, *([] if args.resume else ["--resume"])])
    return f"the checkpoint of epoch {epoch} in {args.out} is intact; continue with: {command}"


def _run_sharded(config: TrainConfig, spec, args: argparse.Namespace) -> int:
    """One rank of ``torchrun ... -m robustrec train --sharding ...``: every rank trains, rank 0 writes RUN_DIR.

    A rank that torchrun restarted (``--max-restarts``) continues the run from its last checkpoint, or starts it
    anew when no epoch had finished. The rank ends through :func:`_end_rank` on any error, never through
    interpreter shutdown while its process group lives.
    """
    import gc
    import logging
    import os

    import torch
    import torch.distributed as dist

    from robustrec import runs
    from robustrec.distributed import ShardingConfig, checkpoint, init_from_env
    from robustrec.distributed.faults import peer_failures
    from robustrec.distributed.run import train_run_sharded

    try:
        sharding = from_namespace(ShardingConfig, args)
        rank, world = init_from_env(torch.device(config.device), timeout_s=sharding.collective_timeout)
    except BaseException as error:  # noqa: BLE001
        _end_rank(error, args)
    if rank != 0:
        logging.getLogger("robustrec").setLevel(logging.WARNING)
    for noisy in ("torchrec", "torch.distributed.checkpoint"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(torchrec|torch\.distributed|fbgemm_gpu)(\..*)?")
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    try:
        with peer_failures(rank, world, lambda: checkpoint.describe(args.out)):
            metrics = train_run_sharded(config, spec, args.out, sharding=sharding, overwrite=args.overwrite,
                                        resume=args.resume or (restarted and not args.overwrite),
                                        checkpoint_required=not restarted, progress=not args.quiet and rank == 0)
            dist.barrier()
    except BaseException as error:  # noqa: BLE001 - every failure ends the rank the same safe way
        _end_rank(error, args)
    gc.collect()  # the sharded model holds the process group: free it so that its threads end here, not at exit
    dist.destroy_process_group()
    if rank == 0:
        memory = metrics.pop("rank_memory")
        print_metrics(metrics, as_json=False)
        for row in memory:
            print(f"rank {row['rank']}: peak RSS {_size(row['peak_rss_bytes'])}, tables {_size(row['tables_bytes'])}, "
                  f"optimizer state {_size(row['optimizer_state_bytes'])}")
        print(f"wrote {args.out}/{runs.METRICS_FILE}")
    return 0


def _end_rank(error: BaseException, args: argparse.Namespace) -> None:
    """Report ``error`` as the CLI's one error path does (:mod:`robustrec.cli`) and end the process at once.

    Why not return to that path: the process group is still alive (a peer may be dead, the failed step's tensors
    are referenced by the traceback), and its gloo threads, joined during interpreter shutdown, abort the process.
    """
    import os
    import sys
    import traceback

    from robustrec.cli import EXPECTED_ERRORS
    from robustrec.distributed.checkpoint import describe

    if isinstance(error, KeyboardInterrupt):
        print(f"robustrec train: interrupted; {describe(args.out)}", file=sys.stderr)
        code = 130
    elif isinstance(error, EXPECTED_ERRORS) and not args.debug:
        print(f"robustrec train: error: {' '.join(str(error).split()) or type(error).__name__}", file=sys.stderr)
        code = 2
    else:
        traceback.print_exception(error)
        code = 1 if not isinstance(error, EXPECTED_ERRORS) else 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _size(n_bytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} B"
