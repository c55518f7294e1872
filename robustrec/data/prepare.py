"""The one data-preparation path: a :class:`DataSpec` in, the run's split with its known noise out.

    spec → load (a file's own split; or a log (csv, parquet, inter), optionally k-cored, split by
           ``spec.split``: per-user random, leave-last-out or temporal; or the synthetic default)
         → optional validation part carved out of train (the same way) → optional user subsample
         → optional PLD-style noise injection on the training part (mask kept)

Used by training runs (:mod:`robustrec.runs`), ``compare`` and the noise-share estimate, so that a run
directory's ``config.json`` rebuilds exactly the data a run saw.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields

import numpy as np

from robustrec.data.interactions import Interactions
from robustrec.data.loaders import FORMATS, LOG_FORMATS, deca_noise_mask, detect_format, load
from robustrec.data.split import SPLITS, Split, kcore, split_log
from robustrec.data.synthetic import generate

log = logging.getLogger(__name__)

NOISE_SOURCES = ("injected", "ratings")  # where a run's known-noise mask comes from


@dataclass(frozen=True)
class DataSpec:
    """Where a run's split comes from: a path and format, or the embedded synthetic default."""

    path: str | None = field(default=None, metadata={"help": "file or directory; None = synthetic default"})
    format: str = field(default="auto", metadata={"help": "data format (auto: detected from the path)",
                                                   "choices": FORMATS})
    test_fraction: float = field(default=0.2, metadata={"help": "per-user test share when a log must be split"})
    validation_fraction: float = field(
        default=0.0, metadata={"help": "per-user share of train held out for early stopping when the data has no "
                                       "validation part"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the split (and of the synthetic generator)"})
    synthetic_users: int = field(default=5000, metadata={"help": "users of the synthetic default"})
    synthetic_items: int = field(default=3000, metadata={"help": "items of the synthetic default"})
    max_users: int | None = field(
        default=None, metadata={"help": "keep a seeded sample of this many users (all their interactions); "
                                        "None = all"}
    )
    inject_noise: float = field(
        default=0.0,
        metadata={"help": "PLD's noise protocol on the training part: add floor(R*|train_u|) random unobserved "
                          "items per user (mask kept for diagnostics); 0 = none"},
    )
    # how a log (csv, parquet, inter) is read and split; the directory formats hold their own split
    split: str = field(default="random", metadata={
        "help": "how a log is split: random (per user, test_fraction), leave-last-out (each user's latest "
                "interaction; needs timestamps), temporal (the latest test_fraction of the log; needs timestamps)",
        "choices": SPLITS})
    kcore: int = field(default=0, metadata={"help": "keep only users and items with >= K interactions (iterated "
                                                    "until stable) before splitting a log; 0 = keep all"})
    user_col: str | None = field(default=None, metadata={"help": "user column of a log; None: the first of user, "
                                                                  "user_id, ... found"})
    item_col: str | None = field(default=None, metadata={"help": "item column of a log; None: the first of item, "
                                                                  "item_id, ... found"})
    rating_col: str | None = field(default=None, metadata={"help": "rating column of a log (optional)"})
    timestamp_col: str | None = field(default=None, metadata={"help": "timestamp column of a log (optional; "
                                                                      "the leave-last-out and temporal splits "
                                                                      "need one)"})
    sep: str | None = field(default=None, metadata={"help": "field separator of a csv or inter log ('\\t' or "
                                                           "'tab' for a tab; default: tab for .tsv/.inter, comma "
                                                           "otherwise)"})
    has_header: bool = field(default=True, metadata={"help": "whether a csv log starts with a header line "
                                                             "(without: user, item[, rating[, timestamp]])"})

    def __post_init__(self) -> None:
        if self.sep in ("\\t", "tab"):  # a tab typed on a command line
            object.__setattr__(self, "sep", "\t")
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; expected one of {FORMATS}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; expected one of {SPLITS}")
        if self.kcore < 0:
            raise ValueError(f"kcore must be >= 0, got {self.kcore}")
        if self.sep == "":
            raise ValueError("sep must not be empty")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if not (self.inject_noise >= 0 and math.isfinite(self.inject_noise)):
            raise ValueError(f"inject_noise must be a finite number >= 0, got {self.inject_noise}")
        if self.max_users is not None and self.max_users < 1:
            raise ValueError(f"max_users must be >= 1, got {self.max_users}")


@dataclass(frozen=True)
class PreparedData:
    """A run's split and what is known about the noise in its training part.

    Attributes:
        split: train (with injected interactions when asked), clean test, optional validation.
        injected: (n_train,) bool in ``split.train.coo()`` order, True for an injected interaction, or None.
        known_noise: (n_train,) bool, the data's own known noise (DeCA: rating < 4; False for injected rows),
            or None when the data has none.
        source: where the data came from, in words.
    """

    split: Split
    injected: np.ndarray | None = None
    known_noise: np.ndarray | None = None
    source: str = ""

    @property
    def noise_mask(self) -> np.ndarray | None:
        """The known noise of the training part: the injected interactions, else the data's own, else None."""
        return self.injected if self.injected is not None else self.known_noise

    @property
    def noise_source(self) -> str | None:
        """Where :attr:`noise_mask` comes from: one of ``NOISE_SOURCES``, or None."""
        if self.injected is not None:
            return "injected"
        return "ratings" if self.known_noise is not None else None


def inject_noise(train: Interactions, ratio: float, *, seed: int) -> tuple[Interactions, np.ndarray]:
    """``train`` plus PLD-style random interactions (:func:`robustrec.noise.add_random_interactions`) and the
    (n_train_after,) mask of the added ones in CSR order. Ratings/timestamps are not carried over."""
    from robustrec.noise import add_random_interactions

    users, items = train.coo()
    injected = add_random_interactions(users, items, train.n_items, ratio, seed=seed)
    noisy = Interactions.from_indices(
        injected.users, injected.items, n_users=train.n_users, n_items=train.n_items,
        user_ids=train.user_ids, item_ids=train.item_ids,
    )
    # injected is sorted by (user, item), which is CSR order: the mask lines up with noisy.coo()
    return noisy, np.asarray(injected.is_noise, dtype=bool)


def _sample_users(split: Split, max_users: int, *, seed: int) -> Split:
    """``split`` restricted to a seeded uniform sample of ``max_users`` of its users with training items."""
    active = np.flatnonzero(split.train.user_counts() > 0)
    keep = np.zeros(split.n_users, dtype=bool)
    keep[np.random.default_rng(seed).choice(active, size=min(max_users, active.size), replace=False)] = True

    def restrict(part: Interactions | None) -> Interactions | None:
        return None if part is None else part.select(keep[part.coo()[0]])

    return Split(train=restrict(split.train), test=restrict(split.test), validation=restrict(split.validation),
                 report=split.report)


#: DataSpec fields that only apply to a log (:data:`LOG_FORMATS`), not to data with its own split.
LOG_OPTIONS: tuple[str, ...] = ("split", "kcore", "user_col", "item_col", "rating_col", "timestamp_col", "sep",
                                "has_header")


def _check_log_options(spec: DataSpec, what: str) -> None:
    """ValueError when ``spec`` sets a :data:`LOG_OPTIONS` field for data that is not a log."""
    defaults = {f.name: f.default for f in fields(DataSpec)}
    given = [name for name in LOG_OPTIONS if getattr(spec, name) != defaults[name]]
    if given:
        raise ValueError(f"{', '.join(f'{n}={getattr(spec, n)!r}' for n in given)}: apply to a log "
                         f"({', '.join(LOG_FORMATS)}), not to {what}, which has its own split")


def _load_log_split(spec: DataSpec, fmt: str) -> Split:
    """Load, k-core and split a log as ``spec`` says."""
    data = load(spec.path, format=fmt, user_col=spec.user_col, item_col=spec.item_col, rating_col=spec.rating_col,
                timestamp_col=spec.timestamp_col, sep=spec.sep, has_header=spec.has_header)
    report = data.report
    if spec.kcore:
        before = data
        data = kcore(data, user_k=spec.kcore, item_k=spec.kcore)
        log.info("%d-core: kept %s of %s users, %s of %s items, %s of %s interactions", spec.kcore,
                 f"{data.n_users:,}", f"{before.n_users:,}", f"{data.n_items:,}", f"{before.n_items:,}",
                 f"{data.n_interactions:,}", f"{before.n_interactions:,}")
        if data.n_interactions == 0:
            raise ValueError(f"{spec.path}: no interaction survives the {spec.kcore}-core; lower kcore")
    split = split_log(data, spec.split, test_fraction=spec.test_fraction, seed=spec.seed)
    return Split(split.train, split.test, split.validation, report=report)


def prepare_data(spec: DataSpec) -> PreparedData:
    """The run's split (see the module docstring) with its injected and known noise."""
    if spec.path is None:
        _check_log_options(spec, "the synthetic default")
        split = generate(n_users=spec.synthetic_users, n_items=spec.synthetic_items, seed=spec.seed,
                         test_fraction=spec.test_fraction)
        fmt, source = "synthetic", f"synthetic default ({spec.synthetic_users} users, {spec.synthetic_items} items)"
    else:
        fmt = detect_format(spec.path) if spec.format == "auto" else spec.format
        if fmt in LOG_FORMATS:
            split = _load_log_split(spec, fmt)
        else:
            _check_log_options(spec, f"{fmt} data")
            split = load(spec.path, format=fmt)
        source = str(spec.path)
    if split.validation is None and spec.validation_fraction > 0:
        # the same strategy again, inside train (leave-last-out: the latest training interaction of each user)
        strategy = spec.split if fmt in LOG_FORMATS else "random"
        inner = split_log(split.train, strategy, test_fraction=spec.validation_fraction, seed=spec.seed + 1)
        split = Split(train=inner.train, test=split.test, validation=inner.test, report=split.report)
    if spec.max_users is not None and spec.max_users < split.n_users:
        split = _sample_users(split, spec.max_users, seed=spec.seed)
        source += f", {spec.max_users} sampled users"
    known = deca_noise_mask(split.train) if fmt == "deca" and split.train.ratings is not None else None
    if spec.inject_noise <= 0:
        return PreparedData(split, None, known, source)
    train, injected = inject_noise(split.train, spec.inject_noise, seed=spec.seed)
    if known is not None:  # the original interactions keep their relative (CSR) order among the injected ones
        known = np.zeros(injected.size, dtype=bool)
        known[~injected] = deca_noise_mask(split.train)
    split = Split(train=train, test=split.test, validation=split.validation, report=split.report)
    return PreparedData(split, injected, known, source)
