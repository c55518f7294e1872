"""Command line: ``python -m robustrec {train,evaluate} ...`` (console script ``robustrec``).

Options of ``train`` are generated from the fields of :class:`~robustrec.training.TrainConfig`
and :class:`~robustrec.runs.DataSpec` (their help texts and choices), so the CLI,
the config file and the Python API share one list of names.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from robustrec.data import FORMATS, DataError
from robustrec.engines import ENGINES
from robustrec.evaluate import DEFAULT_KS
from robustrec.models import MODELS
from robustrec.objectives import LOSSES
from robustrec.optim import OPTIMIZERS
from robustrec.samplers import SAMPLERS
from robustrec.training import TrainConfig

# Modules adding a subcommand: each defines ``add_parser(commands)`` and ``run(args) -> int``.
SUBCOMMAND_MODULES: tuple[str, ...] = ("robustrec.compare", "robustrec.noise_cli")

CHOICES = {"model": MODELS, "loss": LOSSES, "sampler": SAMPLERS, "optimizer": OPTIMIZERS, "format": FORMATS,
           "engine": ENGINES}
# DataSpec fields exposed under another flag (``path`` is ``--data``) or shared (``seed``).
DATA_FLAGS = {"path": "--data", "format": "--format", "test_fraction": "--test-fraction",
              "validation_fraction": "--validation-fraction"}


def _add_dataclass_options(parser: argparse.ArgumentParser, cls, *, skip=(), rename=None) -> None:
    rename = rename or {}
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = rename.get(f.name, "--" + f.name.replace("_", "-"))
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        kwargs = {"dest": f.name, "default": default, "help": f.metadata.get("help", "")}
        if isinstance(default, bool):  # --flag / --no-flag (type=bool would read "False" as True)
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs.update(nargs="+", type=type(default[0]))
        elif default is not None:
            kwargs["type"] = type(default)
        if f.name in CHOICES:
            kwargs["choices"] = CHOICES[f.name]
        parser.add_argument(flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from robustrec.runs import DataSpec

    parser = argparse.ArgumentParser(prog="robustrec", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a recommender and evaluate it on the clean test set")
    _add_dataclass_options(train, TrainConfig)
    data_group = train.add_argument_group("data")
    _add_dataclass_options(data_group, DataSpec, skip=("seed",), rename=DATA_FLAGS)
    train.add_argument("--out", type=Path, default=Path("runs/latest"), help="run directory to write")
    train.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    train.add_argument("--sharded", action="store_true",
                       help="shard the tables across the ranks of `torchrun --nproc_per_node N` (gloo on CPU)")

    evaluate = commands.add_parser("evaluate", help="re-evaluate a saved run on its clean test set")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--k", nargs="+", type=int, default=list(DEFAULT_KS), help="cut-offs")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(commands)
    return parser


def _split_args(args: argparse.Namespace):
    from robustrec.runs import DataSpec

    train_names = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in train_names})
    spec_values = {f.name: getattr(args, f.name) for f in fields(DataSpec) if hasattr(args, f.name) and f.name != "seed"}
    if spec_values.get("path") is not None:
        spec_values["path"] = str(Path(spec_values["path"]).resolve())
    return config, DataSpec(seed=args.seed, **spec_values)


def _print_metrics(metrics: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(metrics, sort_keys=True))
        return
    width = max(len(k) for k in metrics)
    for key in sorted(metrics):
        value = metrics[key]
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


def _train_sharded(config: TrainConfig, spec, args: argparse.Namespace) -> int:
    """One rank of ``torchrun ... -m robustrec train --sharded``: rank 0 writes RUN_DIR."""
    import tempfile

    import torch

    from robustrec import distributed, runs

    rank, world = distributed.init_from_env(torch.device(config.device))
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out if rank == 0 else Path(scratch)
        metrics = runs.train_run(config, spec, out, resume=args.resume, progress=not args.quiet and rank == 0,
                                 plots=rank == 0, fit_fn=distributed.fit_sharded)
    if rank == 0:
        _print_metrics({**metrics, "ranks": world}, as_json=False)
        print(f"wrote {args.out}/{runs.METRICS_FILE}")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    from robustrec import runs

    try:
        if args.command == "train":
            config, spec = _split_args(args)
            if args.sharded:
                return _train_sharded(config, spec, args)
            metrics = runs.train_run(config, spec, args.out, resume=args.resume, progress=not args.quiet)
            _print_metrics(metrics, as_json=False)
            print(f"wrote {args.out}/{runs.METRICS_FILE}")
        elif args.command == "evaluate":
            _print_metrics(runs.evaluate_run(args.run_dir, ks=args.k), as_json=args.json)
        else:
            return args.run(args)
    except (DataError, ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"robustrec {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
