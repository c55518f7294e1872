"""The one data-preparation path: a :class:`DataSpec` in, the run's split with its known noise out.

    spec → load (a file's own split, or a per-user random split; or the synthetic default)
         → optional validation part carved out of train → optional user subsample
         → optional PLD-style noise injection on the training part (mask kept)

Used by training runs (:mod:`robustrec.runs`), ``compare`` and the noise-share estimate, so that a run
directory's ``config.json`` rebuilds exactly the data a run saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from robustrec.data.interactions import Interactions
from robustrec.data.loaders import FORMATS, deca_noise_mask, detect_format, load_split
from robustrec.data.split import Split, random_holdout
from robustrec.data.synthetic import generate

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

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; expected one of {FORMATS}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
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


def prepare_data(spec: DataSpec) -> PreparedData:
    """The run's split (see the module docstring) with its injected and known noise."""
    if spec.path is None:
        split = generate(n_users=spec.synthetic_users, n_items=spec.synthetic_items, seed=spec.seed,
                         test_fraction=spec.test_fraction)
        fmt, source = "synthetic", f"synthetic default ({spec.synthetic_users} users, {spec.synthetic_items} items)"
    else:
        fmt = detect_format(spec.path) if spec.format == "auto" else spec.format
        split = load_split(spec.path, format=fmt, test_fraction=spec.test_fraction, seed=spec.seed)
        source = str(spec.path)
    if split.validation is None and spec.validation_fraction > 0:
        inner = random_holdout(split.train, test_fraction=spec.validation_fraction, seed=spec.seed + 1)
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
