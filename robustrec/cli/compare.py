"""``robustrec compare``: several configurations trained on the same split, one table.

    python -m robustrec compare --models mf --losses bpr nbpo tce rce --samplers uniform pld \\
        --data ../shared/data/gowalla --inject-noise 0.1 0.3 --seeds 0 1 --epochs 20 --out runs/compare

See :mod:`robustrec.compare` for what is written.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from robustrec.cli.common import add_data_arguments, data_spec
from robustrec.cli.options import add_config_argument, add_dataclass_arguments, from_namespace, report_config
from robustrec.compare import SUMMARY_MD, VARIED, compare_runs, method_name, parse_method, summarize, to_markdown
from robustrec.config import DEPRECATED_NAMES, TrainConfig
from robustrec.data import DataSpec
from robustrec.models import MODELS
from robustrec.objectives import LOSSES
from robustrec.samplers import SAMPLERS
from robustrec.tune import TuneSettings


def add_parser(commands, parents=()) -> None:
    parser = commands.add_parser("compare", parents=parents, description=__doc__.split("\n\n")[0],
                                 help="train several configurations on the same split; one table",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mf"], choices=MODELS)
    parser.add_argument("--losses", nargs="+", default=["bpr", "nbpo", "tce", "rce"], choices=LOSSES)
    parser.add_argument("--samplers", nargs="+", default=["uniform"], choices=SAMPLERS)
    parser.add_argument("--configs", nargs="+", metavar="MODEL/LOSS[/SAMPLER]",
                        help="explicit configurations instead of the product of --models/--losses/--samplers")
    parser.add_argument("--inject-noise", dest="ratios", nargs="+", type=float, default=[0.0],
                        help="noise ratios R (PLD's protocol on the training part); several give a curve")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (model, split and noise)")
    parser.add_argument("--metric", default="recall@20", help="metric of the summary's first column and the plot")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), help="directory to write")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the comparison in --out; the old one stays intact until the new one has finished")
    tune_group = parser.add_argument_group("validation selection (--tune): the same budget for every configuration")
    tune_group.add_argument("--tune", action="store_true",
                            help="select each configuration's settings on the validation part first (Optuna); the "
                                 "tables show the selected settings")
    add_dataclass_arguments(tune_group, TuneSettings, skip=("params",))
    train_group = parser.add_argument_group("training options shared by every configuration")
    add_dataclass_arguments(train_group, TrainConfig, skip=VARIED, deprecated=DEPRECATED_NAMES)
    add_data_arguments(parser, skip=("seed", "inject_noise"))
    add_config_argument(parser, {"train": TrainConfig, "data": DataSpec})
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report_config(args)
    if args.configs:
        triples = [parse_method(text) for text in args.configs]
    else:
        triples = list(itertools.product(args.models, args.losses, args.samplers))
    configs = []
    for model, loss, sampler in triples:
        config = from_namespace(TrainConfig, args, model=model, loss=loss, sampler=sampler, seed=args.seeds[0])
        config.warn_schedule()  # before any run trains
        configs.append((method_name(config), config))
    tuning = from_namespace(TuneSettings, args) if args.tune else None
    frame = compare_runs(configs, data_spec(args), args.out, ratios=args.ratios, seeds=args.seeds,
                         metric=args.metric, progress=not args.quiet, overwrite=args.overwrite, tuning=tuning)
    print(to_markdown(summarize(frame, metric=args.metric)))
    print(f"wrote {args.out}/{SUMMARY_MD} ({len(frame)} runs)")
    return 0
