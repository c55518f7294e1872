"""What several commands share: the data options and how results are printed."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from robustrec.cli.options import add_dataclass_arguments, from_namespace
from robustrec.data import COLUMN_ALIASES, DataError, DataSpec

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


#: Output files of the commands that write tables (recommend, similar-*), by suffix.
TABLE_SUFFIXES: tuple[str, ...] = (".parquet", ".csv")


def check_table_path(path: Path, option: str = "--out") -> Path:
    """``path`` when it ends with one of :data:`TABLE_SUFFIXES`, else a ValueError naming ``option``."""
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"{option} {path} must end with one of {list(TABLE_SUFFIXES)}")
    return path


def _plain_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns of mixed types as strings (parquet needs one type per column)."""
    for column in frame.columns:
        if frame[column].dtype == object and not all(isinstance(v, str) for v in frame[column]):
            frame[column] = frame[column].astype(str)
    return frame


def write_table(frames: Iterable[pd.DataFrame], path: Path) -> int:
    """Write the concatenation of ``frames`` to ``path`` (parquet or csv by suffix) batch by batch, atomically
    (a temporary file renamed at the end); returns the number of rows."""
    from robustrec import atomic

    check_table_path(path)
    rows = 0

    def write(handle) -> None:
        nonlocal rows
        if path.suffix.lower() == ".csv":
            for number, frame in enumerate(frames):
                handle.write(frame.to_csv(index=False, header=number == 0).encode())
                rows += len(frame)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            for frame in frames:
                table = pa.Table.from_pandas(_plain_ids(frame), preserve_index=False)
                writer = writer or pq.ParquetWriter(handle, table.schema)
                writer.write_table(table.cast(writer.schema))
                rows += len(frame)
        finally:
            if writer is not None:
                writer.close()

    atomic.atomic_write(path, write)
    return rows


def read_id_file(path: Path, role: str) -> np.ndarray:
    """Raw ids listed in ``path``: a ``.csv``/``.tsv``/``.parquet`` table's ``role`` column (``user``, or one of
    its :data:`~robustrec.data.COLUMN_ALIASES`; or its only column), else a text file with one id per line
    (blank lines skipped). Values keep the file's types (text: strings)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith((".csv", ".tsv", ".parquet", ".pq")):
        frame = (pd.read_parquet(path) if name.endswith((".parquet", ".pq"))
                 else pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ","))
        by_name = {str(c).strip().lower(): c for c in frame.columns}
        column = next((by_name[a] for a in COLUMN_ALIASES[role] if a in by_name), None)
        if column is None and len(frame.columns) == 1:
            column = frame.columns[0]
        if column is None:
            raise DataError(f"no {role} column: looked for {list(COLUMN_ALIASES[role])}; available columns: "
                            f"{list(frame.columns)}", source=path)
        values = frame[column]
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataError(f"missing {role} id", source=path, column=column, line=row + 2)
        return values.to_numpy()
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"no {role} ids (empty file)", source=path)
    return np.asarray(ids, dtype=object)


def as_id_type(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``values`` (e.g. text read from a file) converted to the type of the model's raw ids ``like``: integers
    where ``like`` holds integers, floats where floats, strings where strings. A value that does not convert
    stays as it is (and is then an unknown id)."""
    values = np.asarray(values, dtype=object)
    like = np.asarray(like)
    if like.dtype.kind in "iu":
        parse = int
    elif like.dtype.kind == "f":
        parse = float
    elif all(isinstance(v, str) for v in like[:1000]):
        parse = str
    else:  # ids of mixed types: matched as given
        return values
    out = np.empty(len(values), dtype=object)
    for k, value in enumerate(values):
        try:
            out[k] = parse(str(value).strip())
        except ValueError:
            out[k] = value
    return out


def split_known(model, raw: np.ndarray, role: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the known ids, the unknown raw ids) of ``raw`` for the model's users or items; the unknown ones
    are reported on the ``robustrec`` logger (count and the first few), never skipped silently. A ValueError when
    none is known."""
    index = (model.user_index if role == "user" else model.item_index)(raw)
    unknown = raw[index < 0]
    if unknown.size == len(raw):
        raise ValueError(f"{source}: none of the {len(raw):,} {role} ids is known to the model "
                         f"(e.g. {unknown[:5].tolist()}; the model's ids look like {_sample(model, role)})")
    if unknown.size:
        logging.getLogger("robustrec.cli").warning(
            "%s: %d of %d %s ids are unknown to the model and get no row (e.g. %s)",
            source, unknown.size, len(raw), role, unknown[:5].tolist())
    return index[index >= 0], unknown


def _sample(model, role: str) -> list:
    ids = model.user_ids if role == "user" else model.item_ids
    return ids[:3].tolist()


def load_recommender(run_dir: Path):
    """The :class:`~robustrec.api.Recommender` of a training run directory, or of a directory written by
    ``Recommender.save``."""
    from robustrec import persistence, runs
    from robustrec.api import Recommender

    if (run_dir / runs.CONFIG_FILE).exists():
        return Recommender.from_run(run_dir)
    if persistence.is_saved(run_dir):
        return Recommender.load(run_dir)
    raise FileNotFoundError(f"{run_dir} is neither a training run (no {runs.CONFIG_FILE}) nor a saved "
                            f"recommender (no {persistence.META_FILE})")
