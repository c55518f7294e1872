"""Synthetic data with known noise, for checking the estimators (tests, benchmarks, examples).

Every generator is seeded and returns a small frozen dataclass holding the ground truth next to the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import erf, sqrt

import numpy as np

__all__ = [
    "SimulatedAnnotations",
    "SimulatedScorer",
    "SimulatedUserLosses",
    "simulate_annotations",
    "simulate_scorer",
    "simulate_user_losses",
]


@dataclass(frozen=True)
class SimulatedAnnotations:
    """true: (n,) true labels in {0, 1}; annotations: (n, m) labels, annotator k flipped at ``flip_rates[k]``;
    is_flipped: (n, m) bool."""

    true: np.ndarray
    annotations: np.ndarray
    is_flipped: np.ndarray
    flip_rates: np.ndarray


def simulate_annotations(n: int, flip_rates: tuple[float, ...] | np.ndarray, *, seed: int = 0) -> SimulatedAnnotations:
    """``n`` pairs in random orientation (true label Bernoulli(1/2)); annotator ``k`` flips each label
    independently with probability ``flip_rates[k]`` (Bernoulli, so the realised rate varies binomially)."""
    rates = np.asarray(flip_rates, dtype=np.float64)
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 2, size=n)
    flipped = rng.random((n, len(rates))) < rates[None, :]
    ann = np.where(flipped, 1 - true[:, None], true[:, None])
    return SimulatedAnnotations(true=true, annotations=ann, is_flipped=flipped, flip_rates=rates)


@dataclass(frozen=True)
class SimulatedScorer:
    """A scorer of preference pairs with a known accuracy.

    Attributes:
        margin: (n,) scorer margin; ``margin > 0`` predicts "first better".
        p_true_first: (n,) calibrated ``P(true label = 1 | margin)``.
        p_label_first: (n,) calibrated ``P(noisy label = 1 | margin)`` given the flip rate, what a model trained
            (out of fold) on the noisy labels estimates.
    """

    margin: np.ndarray
    p_true_first: np.ndarray
    p_label_first: np.ndarray


def _norm_ppf(p: float) -> float:
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if 0.5 * (1 + erf(mid / sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def simulate_scorer(true: np.ndarray, accuracy: float, *, flip_rate: float = 0.0, seed: int = 0) -> SimulatedScorer:
    """Margins ``(2y − 1)·μ + N(0, 1)`` with ``μ = Φ⁻¹(accuracy)``, so ``P(sign correct) = accuracy``, errors
    independent of any label flips; calibrated probabilities follow from the Gaussian likelihood ratio
    (log-odds ``2μ·margin``)."""
    if not 0.5 < accuracy < 1.0:
        raise ValueError(f"accuracy must be in (0.5, 1); got {accuracy}")
    y = np.asarray(true)
    mu = _norm_ppf(accuracy)
    rng = np.random.default_rng(seed)
    margin = (2 * y - 1) * mu + rng.standard_normal(len(y))
    q = 1.0 / (1.0 + np.exp(-2.0 * mu * margin))
    p = (1.0 - flip_rate) * q + flip_rate * (1.0 - q)
    return SimulatedScorer(margin=margin, p_true_first=q, p_label_first=p)


@dataclass(frozen=True)
class SimulatedUserLosses:
    """losses: (n,) per-interaction losses; users: (n,) user ids; is_noise: (n,) bool ground truth."""

    losses: np.ndarray
    users: np.ndarray
    is_noise: np.ndarray


def simulate_user_losses(
    n_users: int,
    noise_share: float,
    *,
    min_interactions: int = 10,
    max_interactions: int = 60,
    shift: float = 3.0,
    seed: int = 0,
) -> SimulatedUserLosses:
    """Per-user loss distributions as in PLD's observation: each user has their own level and spread
    (level ~ N(0, 1), spread ~ U(0.5, 1.5)); a clean interaction's loss is ``level + spread·N(0, 1)``, a noisy
    one's ``level + spread·(shift + N(0, 1))``. Each interaction is noisy with probability ``noise_share``.
    Pooled over users, the two groups overlap heavily; within a user they separate."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(min_interactions, max_interactions + 1, size=n_users)
    users = np.repeat(np.arange(n_users), sizes)
    level = rng.standard_normal(n_users)[users] * 1.5
    spread = rng.uniform(0.5, 1.5, n_users)[users]
    is_noise = rng.random(len(users)) < noise_share
    losses = level + spread * (shift * is_noise + rng.standard_normal(len(users)))
    return SimulatedUserLosses(losses=losses, users=users, is_noise=is_noise)
