"""Interaction logs: loading, the :class:`Interactions` matrix, splits, and the synthetic default data.

    >>> from robustrec import data
    >>> split = data.load("../shared/data/gowalla")             # a file's own split -> Split
    >>> log = data.load("events.csv")                           # a log -> Interactions
    >>> split = data.random_holdout(log, test_fraction=0.2, seed=0)
    >>> split = data.synthetic.generate(n_users=1000, n_items=500, seed=0)
    >>> prepared = data.prepare_data(data.DataSpec(path="log.csv", inject_noise=0.3))  # a run's data
"""

from robustrec.data import synthetic
from robustrec.data.errors import DataError
from robustrec.data.interactions import Interactions
from robustrec.data.loaders import (
    COLUMN_ALIASES,
    FORMATS,
    LOG_FORMATS,
    deca_noise_mask,
    detect_format,
    load,
    load_csv,
    load_deca,
    load_inter,
    load_lightgcn,
    load_nbpo_json,
    load_parquet,
    load_split,
)
from robustrec.data.prepare import NOISE_SOURCES, DataSpec, PreparedData, inject_noise, prepare_data
from robustrec.data.report import LoadReport
from robustrec.data.split import (
    SPLITS, Split, drop_cold, kcore, leave_last_out, random_holdout, split_log, temporal_cut,
)

generate = synthetic.generate
hide_positives = synthetic.hide_positives

__all__ = [
    "COLUMN_ALIASES",
    "FORMATS",
    "LOG_FORMATS",
    "NOISE_SOURCES",
    "SPLITS",
    "DataError",
    "DataSpec",
    "Interactions",
    "LoadReport",
    "PreparedData",
    "Split",
    "deca_noise_mask",
    "detect_format",
    "drop_cold",
    "generate",
    "hide_positives",
    "inject_noise",
    "kcore",
    "leave_last_out",
    "load",
    "load_csv",
    "load_deca",
    "load_inter",
    "load_lightgcn",
    "load_nbpo_json",
    "load_parquet",
    "load_split",
    "prepare_data",
    "random_holdout",
    "split_log",
    "synthetic",
    "temporal_cut",
]
