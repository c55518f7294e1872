"""``robustrec tune``: select a method's settings on a validation split with Optuna (seeded TPE, median pruning).

    python -m robustrec tune --loss nbpo --data ../shared/data/ml-100k-deca --trials 20 --epochs 30 \\
        --out runs/tune-nbpo
    python -m robustrec train --config runs/tune-nbpo/best_config.json --out runs/nbpo-tuned

The method is ``--model/--loss/--sampler``; every other training option fixes a setting the study does not search
(``--epochs`` is each trial's epoch budget, ``--early-stop-metric`` the validation metric selected on). The
validation part is the data's own or ``--validation-fraction`` of each user's training interactions (default
0.1 here); the test part is never read. See :mod:`robustrec.tune` for what is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from robustrec.cli.common import add_data_arguments, data_spec
from robustrec.cli.options import add_config_argument, add_dataclass_arguments, from_namespace, report_config
from robustrec.config import DEPRECATED_NAMES, TrainConfig
from robustrec.data import DataSpec

#: The validation share ``tune`` carves out of the training part when the data has no validation part.
DEFAULT_VALIDATION_FRACTION = 0.1


def add_parser(commands, parents=()) -> None:
    from robustrec.tune import TuneSettings

    parser = commands.add_parser("tune", parents=parents, description=__doc__.split("\n\n")[0],
                                 help="select a method's settings on a validation split (Optuna)",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_arguments(parser.add_argument_group("the study"), TuneSettings)
    add_dataclass_arguments(parser.add_argument_group("training (the method and its fixed settings)"), TrainConfig,
                            deprecated=DEPRECATED_NAMES)
    add_data_arguments(parser)
    parser.set_defaults(validation_fraction=DEFAULT_VALIDATION_FRACTION)
    parser.add_argument("--out", type=Path, default=Path("runs/tune"), help="directory to write")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the study in --out; the old one stays intact until the new one has finished")
    add_config_argument(parser, {"train": TrainConfig, "data": DataSpec})
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from robustrec.compare import to_markdown
    from robustrec.tune import BEST_CONFIG_FILE, TuneSettings, describe, tune

    report_config(args)
    settings = from_namespace(TuneSettings, args)
    config = from_namespace(TrainConfig, args)
    config.warn_schedule()
    result = tune(config, data_spec(args, seed=config.seed), args.out, settings, overwrite=args.overwrite)
    shown = [c for c in result.trials.columns if c not in ("datetime_start", "datetime_complete")]
    table = result.trials[shown].map(lambda v: f"{v:.4g}" if isinstance(v, float) and v == v else v)  # 8e-06, not 0.0
    print(to_markdown(table.fillna("")))
    metric = config.early_stop_metric
    defaults = "n/a (pruned)" if result.default_value is None else f"{result.default_value:.4f}"
    print(f"best: validation {metric} {result.best_value:.4f} (defaults: {defaults}) with {describe(result.selected)}")
    print(f"wrote {args.out}; train it with: python -m robustrec train --config {args.out / BEST_CONFIG_FILE}")
    return 0
