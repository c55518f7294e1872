"""``robustrec train``: train a recommender, evaluate it on the clean test set, write the run directory.

Every option is a field of :class:`robustrec.config.TrainConfig` or :class:`robustrec.data.DataSpec`;
``--config FILE`` reads them from YAML or JSON (a run's config.json reproduces the run), flags override it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from robustrec.cli.common import add_data_arguments, data_spec, print_metrics
from robustrec.cli.options import add_config_argument, add_dataclass_arguments, from_namespace, report_config
from robustrec.config import DEPRECATED_NAMES, TrainConfig
from robustrec.data import DataSpec


def add_parser(commands, parents=()) -> None:
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
    parser.add_argument("--sharded", action="store_true",
                        help="shard the tables across the ranks of `torchrun --nproc_per_node N` (gloo on CPU)")
    add_config_argument(parser, {"train": TrainConfig, "data": DataSpec})
    parser.set_defaults(run=run, on_interrupt=on_interrupt)


def run(args: argparse.Namespace) -> int:
    from robustrec import runs

    report_config(args)
    config = from_namespace(TrainConfig, args)
    spec = data_spec(args, seed=config.seed)
    if args.sharded:
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
    """One rank of ``torchrun ... -m robustrec train --sharded``: rank 0 writes RUN_DIR."""
    import torch

    from robustrec import distributed, runs

    rank, world = distributed.init_from_env(torch.device(config.device))
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out if rank == 0 else Path(scratch)
        metrics = runs.train_run(config, spec, out, resume=args.resume, progress=not args.quiet and rank == 0,
                                 write_plots=rank == 0, fit_fn=distributed.fit_sharded)
    if rank == 0:
        print_metrics({**metrics, "ranks": world}, as_json=False)
        print(f"wrote {args.out}/{runs.METRICS_FILE}")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    return 0
