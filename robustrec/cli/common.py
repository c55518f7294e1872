"""What several commands share: the data options and how results are printed."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from robustrec.cli.options import add_dataclass_arguments, from_namespace
from robustrec.data import DataSpec

#: DataSpec fields exposed under another flag (``path`` is ``--data``).
DATA_FLAGS = {"path": "--data"}


def add_data_arguments(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ("seed",)) -> None:
    """The :class:`~robustrec.data.DataSpec` options, in their own group (the seed comes from ``--seed``)."""
    add_dataclass_arguments(parser.add_argument_group("data"), DataSpec, skip=skip, rename=DATA_FLAGS)


def data_spec(args: argparse.Namespace, **values) -> DataSpec:
    """The DataSpec of parsed options, with an absolute path (a run directory must not depend on the cwd)."""
    spec = from_namespace(DataSpec, args, rename=DATA_FLAGS, **values)
    if spec.path is not None:
        spec = replace(spec, path=str(Path(spec.path).resolve()))
    return spec


def print_metrics(metrics: dict, *, as_json: bool) -> None:
    """One JSON object, or one ``name  value`` line per metric, sorted by name."""
    if as_json:
        print(json.dumps(metrics, sort_keys=True))
        return
    width = max(len(k) for k in metrics)
    for key in sorted(metrics):
        value = metrics[key]
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
