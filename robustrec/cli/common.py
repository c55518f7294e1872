"""What several commands share: the data options and how results are printed."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
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


class _StderrHandler(logging.StreamHandler):
    """A handler writing to ``sys.stderr`` as it is when a record is emitted (tests replace it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"robustrec: warning: {message}\n"


def configure_logging(*, quiet: bool) -> None:
    """Show the ``robustrec`` loggers' messages on stderr from INFO up (WARNING with ``quiet``); other libraries'
    from WARNING up; Python warnings as one ``robustrec: warning: ...`` line.

    ``force=True``: importing fbgemm_gpu (through torchrec, before any command runs) installs a root handler,
    which would make a plain ``logging.basicConfig`` do nothing and hide every INFO message.
    """
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[_StderrHandler()], force=True)
    logging.getLogger("robustrec").setLevel(logging.WARNING if quiet else logging.INFO)
    warnings.formatwarning = _one_line_warning


def print_metrics(metrics: dict, *, as_json: bool) -> None:
    """One JSON object, or one ``name  value`` line per metric, sorted by name."""
    if as_json:
        print(json.dumps(metrics, sort_keys=True))
        return
    width = max(len(k) for k in metrics)
    for key in sorted(metrics):
        value = metrics[key]
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
