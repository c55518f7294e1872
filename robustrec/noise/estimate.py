"""The result type of every noise-rate estimator, and the seeded bootstrap behind its interval.

Every estimator in :mod:`robustrec.noise` returns an :class:`Estimate`: a point value, a percentile
bootstrap confidence interval (Efron & Tibshirani 1993, ch. 13), the name of the method and the number of
examples it used. Intervals come from :func:`bootstrap_ci`, which resamples rows (optionally whole groups,
e.g. users, or within strata, e.g. a noisy and a clean sample) with a seeded generator, so the same inputs
and seed always give the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, NamedTuple

import numpy as np

__all__ = ["Estimate", "Interval", "bootstrap_ci", "bootstrap_estimate", "DEFAULT_N_RESAMPLES"]

#: Default number of bootstrap resamples used by the estimators.
DEFAULT_N_RESAMPLES = 1000


@dataclass(frozen=True)
class Estimate:
    """A noise-rate estimate with its confidence interval, and whether the data identify it at all.

    Attributes:
        value: the point estimate computed on the full data; NaN when the data do not identify one (then
            ``identifiable`` is false and ``reason`` says why).
        ci_low, ci_high: bounds of the interval at level ``confidence``. Each estimator documents how it is
            built; nothing forces it to contain ``value`` (a percentile bootstrap interval of a skewed
            statistic may not), and the interval is never widened to do so.
        method: name of the estimator (e.g. ``"agreement"``, ``"dawid_skene"``).
        n: number of examples (pairs, items, interactions, ...) the estimate is computed from,
            after the exclusions counted in ``n_excluded``.
        confidence: the interval's nominal coverage, e.g. 0.95.
        n_excluded: examples left out by an explicit option (dropped ties, missing annotations), 0 if none.
        identifiable: whether the data pin the quantity down at all. For flip rates: a point value exists in
            [0, 1/2) and the interval stays below 1/2 (the data exclude "labels carry no signal").
        reason: one sentence saying why the estimate is not identifiable, or what it assumes; "" if nothing.
        details: further named numbers of the estimator (e.g. a scorer's clean error ``clean_error`` and
            ``n_clean``); plain floats, ints or strings, written beside the fields by :meth:`to_dict`.
    """

    value: float
    ci_low: float
    ci_high: float
    method: str
    n: int
    confidence: float = 0.95
    n_excluded: int = 0
    identifiable: bool = True
    reason: str = ""
    details: dict[str, float | int | str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_confidence(self.confidence)
        if self.identifiable and not np.isfinite(self.value):
            raise ValueError(f"an identifiable estimate needs a finite value; got {self.value} (method {self.method})")
        if not self.identifiable and not self.reason:
            raise ValueError("an estimate that is not identifiable must say why (reason)")
        if self.ci_low > self.ci_high:
            raise ValueError(f"ci_low {self.ci_low} > ci_high {self.ci_high} (method {self.method})")
        clash = set(self.details) & {f.name for f in fields(self)}
        if clash:
            raise ValueError(f"details may not reuse the field names {sorted(clash)}")

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies inside the closed interval ``[ci_low, ci_high]``."""
        return bool(self.ci_low <= x <= self.ci_high)

    @property
    def width(self) -> float:
        """``ci_high - ci_low``."""
        return float(self.ci_high - self.ci_low)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, JSON-serialisable: the fields with ``details`` merged in beside them, NaN as None."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "details"}
        out.update(self.details)
        return {k: _json_scalar(v) for k, v in out.items()}

    def __str__(self) -> str:
        text = (
            f"{self.value:.4f} [{self.ci_low:.4f}, {self.ci_high:.4f}] "
            f"({self.method}, n={self.n}, {self.confidence:.0%} CI)"
        )
        if not self.identifiable:
            text += f"; not identifiable: {self.reason}"
        return text


def _json_scalar(v: Any) -> Any:
    """numpy scalars to Python ones; NaN and infinities to None (JSON has neither)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v


class Interval(NamedTuple):
    """Bounds of a confidence interval."""

    low: float
    high: float


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _group_rows(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row order sorted by group, start offset and size of each group."""
    order = np.argsort(groups, kind="stable")
    _, starts, sizes = np.unique(groups[order], return_index=True, return_counts=True)
    return order, starts, sizes


def _gather_groups(order: np.ndarray, starts: np.ndarray, sizes: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Row indices of the chosen groups (with repetition), vectorised."""
    lens = sizes[chosen]
    total = int(lens.sum())
    offsets = np.repeat(starts[chosen] - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
    return order[np.arange(total) + offsets]


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: np.ndarray,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = 0.95,
    seed: int | None = 0,
    groups: np.ndarray | None = None,
    strata: np.ndarray | None = None,
) -> Interval:
    """Percentile bootstrap interval of ``statistic(*arrays)``.

    Args:
        statistic: function of the resampled arrays returning a float. It should not raise on a
            degenerate resample; a resample whose statistic is NaN is ignored (at most half of them).
        *arrays: arrays sharing their first dimension ``n``; rows are resampled jointly.
        n_resamples: number of bootstrap resamples (keyword-only, like every option below).
        confidence: nominal coverage of the interval.
        seed: seed of the ``numpy.random.Generator``; the same seed gives the same interval.
        groups: optional (n,) labels; whole groups (e.g. all interactions of a user) are resampled with
            replacement (cluster bootstrap), for statistics whose rows are dependent within a group.
        strata: optional (n,) labels; rows are resampled within each stratum so that every stratum keeps
            its size (e.g. a large noisy sample and a small clean sample that were drawn independently).

    Returns:
        ``Interval(low, high)``, the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
        bootstrap distribution.
    """
    _check_confidence(confidence)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    for a in arrays:
        if len(a) != n:
            raise ValueError(f"arrays must share their first dimension; got lengths {[len(x) for x in arrays]}")
    if groups is not None and strata is not None:
        raise ValueError("pass either groups or strata, not both")
    rng = np.random.default_rng(seed)

    if groups is not None:
        groups = np.asarray(groups)
        if len(groups) != n:
            raise ValueError("groups must have one entry per row")
        order, starts, sizes = _group_rows(groups)
        n_groups = len(starts)

        def draw() -> np.ndarray:
            return _gather_groups(order, starts, sizes, rng.integers(0, n_groups, size=n_groups))

    elif strata is not None:
        strata = np.asarray(strata)
        if len(strata) != n:
            raise ValueError("strata must have one entry per row")
        members = [np.flatnonzero(strata == s) for s in np.unique(strata)]

        def draw() -> np.ndarray:
            return np.concatenate([m[rng.integers(0, len(m), size=len(m))] for m in members])

    else:

        def draw() -> np.ndarray:
            return rng.integers(0, n, size=n)

    values = np.empty(n_resamples)
    for b in range(n_resamples):
        idx = draw()
        values[b] = statistic(*(a[idx] for a in arrays))
    finite = values[np.isfinite(values)]
    if len(finite) < max(1, n_resamples // 2):
        raise ValueError(
            f"the statistic was undefined on {n_resamples - len(finite)} of {n_resamples} bootstrap "
            "resamples; the sample is too small or too degenerate for an interval"
        )
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return Interval(float(low), float(high))


def bootstrap_estimate(
    statistic: Callable[..., float],
    *arrays: np.ndarray,
    method: str,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = 0.95,
    seed: int | None = 0,
    groups: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    value: float | None = None,
    n_excluded: int = 0,
) -> Estimate:
    """:class:`Estimate` of ``statistic(*arrays)`` with a :func:`bootstrap_ci` interval.

    ``value`` overrides the point estimate (e.g. when the full-sample statistic is computed by a stricter
    function that raises where the bootstrap statistic clips). ``n`` is the number of rows.
    """
    point = float(statistic(*arrays)) if value is None else float(value)
    low, high = bootstrap_ci(
        statistic, *arrays, n_resamples=n_resamples, confidence=confidence, seed=seed, groups=groups, strata=strata
    )
    return Estimate(
        value=point,
        ci_low=low,
        ci_high=high,
        method=method,
        n=len(np.asarray(arrays[0])),
        confidence=confidence,
        n_excluded=n_excluded,
    )
