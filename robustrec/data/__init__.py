"""Interaction logs: loading, the :class:`Interactions` matrix, splits, and the synthetic default data.

    >>> from robustrec import data
    >>> split = data.load("../shared/data/gowalla")             # a file's own split -> Split
    >>> log = data.load("events.csv")                           # a log -> Interactions
    >>> split = data.random_holdout(log, test_fraction=0.2, seed=0)
    >>> split = data.synthetic.generate(n_users=1000, n_items=500, seed=0)
"""

from robustrec.data import synthetic
from robustrec.data.errors import DataError
from robustrec.data.interactions import Interactions
from robustrec.data.loaders import (
    COLUMN_ALIASES,
    FORMATS,
    deca_noise_mask,
    detect_format,
    load,
    load_csv,
    load_deca,
    load_lightgcn,
    load_nbpo_json,
    load_parquet,
    load_split,
)
from robustrec.data.report import LoadReport
from robustrec.data.split import Split, kcore, leave_last_out, random_holdout, temporal_cut

generate = synthetic.generate

__all__ = [
    "COLUMN_ALIASES",
    "FORMATS",
    "DataError",
    "Interactions",
    "LoadReport",
    "Split",
    "deca_noise_mask",
    "detect_format",
    "generate",
    "kcore",
    "leave_last_out",
    "load",
    "load_csv",
    "load_deca",
    "load_lightgcn",
    "load_nbpo_json",
    "load_parquet",
    "load_split",
    "random_holdout",
    "synthetic",
    "temporal_cut",
]
