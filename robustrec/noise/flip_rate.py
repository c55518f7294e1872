"""Flip rate of preference pairs: the probability ε that a pair's label is the reverse of the truth.

The noise model throughout is symmetric random flipping (the model under which robust DPO is unbiased,
Chowdhury, Kini & Natarajan, ICML 2024, section 3): each label is, independently of the pair, the reverse
of the true preference with probability ε < 1/2. Four estimators, each returning an :class:`Estimate`:

- :func:`flip_rate_from_agreement`: two independent annotators; agreement ``a = (1−ε)² + ε²``. Interval: the
  Wilson score interval of ``a`` mapped through the (monotone) inversion.
- :func:`~robustrec.noise.dawid_skene.flip_rate_dawid_skene` (module :mod:`.dawid_skene`): two (pooled rate) or
  more annotators, Dawid & Skene (1979) EM, with each pair's posterior flip probability.
- :func:`flip_rate_from_scorer`: an out-of-fold scorer's disagreement d with the labels, corrected by its
  error e on a small clean set: ``1 − 2ε = (1 − 2d)/(1 − 2e)``. Interval: Fieller's interval for that ratio
  (Fieller 1954), with the binomial variances of d and e (Agresti–Coull adjusted), so the uncertainty of both
  enters; when ``1 − 2e`` is not significantly above 0 the set is unbounded and the estimate is not identifiable.
- :func:`flip_rate_confident_learning`: binary confident learning on pairs in random orientation. Without
  clean pairs the data bound ε from above only (ε ≤ the scorer's disagreement); its interval is
  ``[0, upper bound of d]`` and its value is confident learning's estimate, refused when it breaks that bound.

**Identifiable** (``Estimate.identifiable``) means: a point value exists in [0, 1/2) and the interval stays
below 1/2, i.e. the data exclude "the labels carry no signal". Otherwise the value is NaN (never a number
≥ 1/2) and ``Estimate.reason`` says why. Whether an identifiable estimate is precise enough to train with is a
separate decision, :func:`precise_enough` (interval no wider than :data:`DEFAULT_MAX_CI_WIDTH`); an interval
truncated at 0 is narrow because the data say ε is small, which is precision, not luck. The vectorised forms
(:func:`agreement_flip_rate_bounds`, :func:`~robustrec.noise.dawid_skene.dawid_skene_flip_rate_bounds`,
:func:`scorer_flip_rate_bounds`,
:func:`confident_learning_flip_rate_bounds`) compute the same estimates for many simulated data sets at once;
``benchmarks/flip_rate_coverage.py`` and the coverage tests check with them that the intervals cover.

Label coding (module constants, used by every function here): ``FIRST_BETTER = 1``, ``SECOND_BETTER = 0``,
``TIE = 2``, ``MISSING = -1`` (NaN is also read as missing). :func:`preference_codes` converts another
coding (e.g. PandaLM's 0 = tie, 1, 2) into this one. Ties are never silently guessed: ``ties="error"``
(default) raises when one is present, ``ties="drop"`` leaves them out and reports how many in
``Estimate.n_excluded``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from .confident_learning import validate_labels_and_probs
from .estimate import Estimate, _check_confidence

__all__ = [
    "FIRST_BETTER",
    "SECOND_BETTER",
    "TIE",
    "MISSING",
    "TIE_POLICIES",
    "SCORE_KINDS",
    "FLIP_RATE_METHODS",
    "MIN_PAIRS",
    "DEFAULT_MAX_CI_WIDTH",
    "FlipRateBounds",
    "SampleSizes",
    "preference_codes",
    "wilson_interval",
    "agreement_to_flip_rate",
    "agreement_flip_rate_bounds",
    "scorer_flip_rate_bounds",
    "binary_confident_learning_rate",
    "confident_learning_flip_rate_bounds",
    "pairwise_agreement",
    "flip_rate_from_agreement",
    "flip_rate_from_scorer",
    "flip_rate_confident_learning",
    "flip_posterior",
    "precise_enough",
    "scorer_sample_sizes",
]

FIRST_BETTER = 1
SECOND_BETTER = 0
TIE = 2
MISSING = -1

#: How ties are handled: raise, or leave the tied labels out (and count them).
TIE_POLICIES = ("error", "drop")
#: Dawid–Skene confusion models: one flip rate per annotator ("symmetric"), a 2×2 confusion matrix per
#: annotator ("full"), or one flip rate shared by all annotators ("pooled", the only one two annotators identify).
#: What :func:`flip_rate_from_scorer` receives: margins (first minus second), P(first better), or 0/1 labels.
SCORE_KINDS = ("margin", "probability", "label")
#: Method names, as stored in ``Estimate.method``.
FLIP_RATE_METHODS = ("agreement", "dawid_skene", "scorer", "confident_learning")

#: Fewer usable pairs than this: no estimate (the interval would be meaningless).
MIN_PAIRS = 10

#: Widest 95% interval :func:`precise_enough` accepts by default: ±0.1 around the estimate. rDPO's correction
#: is ``1/(1 − 2ε)``; an ε off by 0.1 at ε = 0.3 already changes it by a third (2.5 vs 1.67 at 0.2).
DEFAULT_MAX_CI_WIDTH = 0.2

_UNSET = object()


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def _warn_unused_resampling(function: str, n_resamples: object, seed: object) -> None:
    if n_resamples is not _UNSET or seed is not _UNSET:
        warnings.warn(
            f"{function}: n_resamples and seed are ignored (the interval is analytic, not a bootstrap); "
            "they will be removed",
            DeprecationWarning,
            stacklevel=3,
        )


def _z(confidence: float, *, two_sided: bool = True) -> float:
    _check_confidence(confidence)
    return NormalDist().inv_cdf(0.5 + confidence / 2.0 if two_sided else confidence)


def wilson_interval(
    successes: np.ndarray | float, n: np.ndarray | float, *, confidence: float = 0.95, two_sided: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (Wilson 1927), vectorised.

    Args:
        successes: counts (any shape; half-counts allowed, e.g. ties scored 1/2).
        n: trials, broadcastable against ``successes``.
        confidence: coverage; with ``two_sided=False`` each bound is the one-sided bound at this level.

    Returns:
        ``(low, high)`` arrays in [0, 1]; the interval always contains ``successes / n``.
    """
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = _z(confidence, two_sided=two_sided)
    p = x / n
    den = 1.0 + z * z / n
    center = (p + z * z / (2.0 * n)) / den
    half = z * np.sqrt(np.maximum(p * (1.0 - p), 0.0) / n + z * z / (4.0 * n * n)) / den
    # At x = 0 or x = n the bound is exactly 0 or 1; rounding must not exclude the observed proportion.
    low = np.where(x <= 0, 0.0, np.clip(center - half, 0.0, 1.0))
    high = np.where(x >= n, 1.0, np.clip(center + half, 0.0, 1.0))
    return low, high


class FlipRateBounds(NamedTuple):
    """Vectorised flip-rate estimates: arrays of one shape. ``value`` is NaN where there is no point value in
    [0, 1/2); ``identifiable`` as in :class:`Estimate`."""

    value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    identifiable: np.ndarray


def precise_enough(
    ci_low: np.ndarray | float,
    ci_high: np.ndarray | float,
    identifiable: np.ndarray | bool,
    *,
    max_ci_width: float = DEFAULT_MAX_CI_WIDTH,
) -> np.ndarray | bool:
    """The decision rule behind ``flip_rate="auto"``: identifiable and the interval no wider than
    ``max_ci_width``. Vectorised (arrays in, bool array out); a bool for scalars."""
    if not 0.0 < max_ci_width <= 0.5:
        raise ValueError(f"max_ci_width must be in (0, 0.5]; got {max_ci_width}")
    out = np.asarray(identifiable, dtype=bool) & (np.asarray(ci_high) - np.asarray(ci_low) <= max_ci_width)
    return bool(out) if out.ndim == 0 else out


def preference_codes(
    raw: np.ndarray,
    *,
    first: object,
    second: object,
    tie: object | None = None,
    missing: object | None = None,
) -> np.ndarray:
    """Convert labels in another coding to this module's (1 first better, 0 second better, 2 tie, -1 missing).

    Args:
        raw: array of any shape.
        first, second, tie, missing: the raw values meaning "first better", "second better", "tie" and "missing"
            (``tie`` / ``missing`` optional). NaN is always read as missing.

    Example: PandaLM's annotators (0 tie, 1 first, 2 second): ``preference_codes(x, first=1, second=2, tie=0)``.

    Raises:
        ValueError: a value matching none of the given codes.
    """
    raw = np.asarray(raw)
    out = np.full(raw.shape, -99, dtype=np.int64)
    out[raw == first] = FIRST_BETTER
    out[raw == second] = SECOND_BETTER
    if tie is not None:
        out[raw == tie] = TIE
    if missing is not None:
        out[raw == missing] = MISSING
    if raw.dtype.kind == "f":
        out[np.isnan(raw)] = MISSING
    if (out == -99).any():
        bad = np.unique(raw[out == -99])[:5]
        raise ValueError(f"values {bad.tolist()} match none of first={first!r}, second={second!r}, tie={tie!r}, missing={missing!r}")
    return out


def _parse(x: np.ndarray, name: str) -> np.ndarray:
    """Validate labels in this module's coding; NaN -> MISSING; returns int64."""
    x = np.asarray(x)
    if x.dtype.kind == "b":
        return x.astype(np.int64)
    if x.dtype.kind == "f":
        nan = np.isnan(x)
        filled = np.where(nan, MISSING, x)
        if np.any(filled != np.round(filled)):
            raise ValueError(f"{name} must hold integer codes (1 first better, 0 second better, 2 tie, -1 missing)")
        out = filled.astype(np.int64)
    elif x.dtype.kind in "iu":
        out = x.astype(np.int64)
    else:
        raise ValueError(f"{name} must be a numeric array; got dtype {x.dtype}")
    bad = ~np.isin(out, (FIRST_BETTER, SECOND_BETTER, TIE, MISSING))
    if bad.any():
        raise ValueError(
            f"{name} contains values {np.unique(out[bad])[:5].tolist()}; expected 1 (first better), 0 (second better), "
            "2 (tie) or -1/NaN (missing); use preference_codes() to convert another coding"
        )
    return out


def _binary(x: np.ndarray, name: str) -> np.ndarray:
    """Labels that must be 0/1 (no ties, no missing)."""
    out = _parse(x, name)
    if np.any((out != 0) & (out != 1)):
        raise ValueError(f"{name} must contain only 0 and 1 (ties and missing values are not allowed here)")
    return out


# ----------------------------------------------------------------------------------------------- agreement


def agreement_to_flip_rate(agreement: float) -> float:
    """Invert ``a = (1−ε)² + ε²`` for ε < 1/2: ``ε = (1 − √(2a − 1)) / 2``.

    Raises:
        ValueError: ``a <= 0.5`` (annotators agree no more than chance: ε is not identifiable, or ε >= 1/2)
            or ``a > 1``.
    """
    a = float(agreement)
    if not a <= 1.0:
        raise ValueError(f"agreement must be <= 1; got {a}")
    if a <= 0.5:
        raise ValueError(
            f"agreement {a:.4f} <= 0.5: two annotators flipping at a rate below 1/2 agree more than half the time, "
            "so this agreement does not identify a flip rate (it means ε >= 1/2, or the annotators are not "
            "independent views of one truth)"
        )
    return (1.0 - np.sqrt(2.0 * a - 1.0)) / 2.0


def _agreement_inverse(a: np.ndarray) -> np.ndarray:
    """ε of agreement ``a``, 1/2 where ``a <= 1/2`` (the monotone map used for interval bounds)."""
    return (1.0 - np.sqrt(np.clip(2.0 * a - 1.0, 0.0, 1.0))) / 2.0


def agreement_flip_rate_bounds(
    agreement: np.ndarray | float, n: np.ndarray | float, *, confidence: float = 0.95
) -> FlipRateBounds:
    """Vectorised :func:`flip_rate_from_agreement` from observed agreement shares over ``n`` pairs.

    ε is a decreasing function of ``a`` on (1/2, 1], so the Wilson interval ``[a_lo, a_hi]`` of ``a`` maps to
    ``[ε(a_hi), ε(a_lo)]``, with ε(a) = 1/2 for ``a <= 1/2``. Identifiable where ``a > 1/2`` and ``a_lo > 1/2``.
    """
    a = np.asarray(agreement, dtype=np.float64)
    lo, hi = wilson_interval(a * n, n, confidence=confidence)
    with np.errstate(invalid="ignore"):
        value = np.where(a > 0.5, _agreement_inverse(a), np.nan)
    return FlipRateBounds(value, _agreement_inverse(hi), _agreement_inverse(lo), (a > 0.5) & (lo > 0.5))


@dataclass(frozen=True)
class _Annotations:
    matrix: np.ndarray  # (n_used_items, m) in {0, 1, -1}
    used: np.ndarray  # (n_items,) bool: item has at least one usable label
    n_ties: int


def _prepare_annotations(annotations: np.ndarray, *, ties: str) -> _Annotations:
    _check_choice("ties", ties, TIE_POLICIES)
    x = _parse(annotations, "annotations")
    if x.ndim != 2:
        raise ValueError(f"annotations must have shape (n_items, n_annotators); got {x.shape}")
    tie = x == TIE
    n_ties = int(tie.sum())
    if n_ties and ties == "error":
        raise ValueError(
            f"annotations contain {n_ties} ties; pass ties='drop' to treat them as missing labels (the count is "
            "reported), or recode them"
        )
    x = np.where(tie, MISSING, x)
    used = (x >= 0).any(axis=1)
    return _Annotations(matrix=x[used], used=used, n_ties=n_ties)


def pairwise_agreement(annotations: np.ndarray, *, ties: str = "error") -> np.ndarray:
    """Observed agreement between every two annotators, on the items both labelled.

    Args:
        annotations: (n_items, n_annotators) labels in this module's coding.
        ties: ``"error"`` or ``"drop"`` (a tie is then treated as a missing label).

    Returns:
        (n_annotators, n_annotators) float array; NaN where two annotators share no item; 1 on the diagonal.
    """
    x = _prepare_annotations(annotations, ties=ties).matrix
    obs = (x >= 0).astype(np.float64)
    ones = (x == 1).astype(np.float64)
    zeros = (x == 0).astype(np.float64)
    both = obs.T @ obs
    agree = ones.T @ ones + zeros.T @ zeros
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(both > 0, agree / np.maximum(both, 1), np.nan)


def flip_rate_from_agreement(
    labels_a: np.ndarray,
    labels_b: np.ndarray,
    *,
    ties: str = "error",
    confidence: float = 0.95,
    n_resamples: object = _UNSET,
    seed: object = _UNSET,
) -> Estimate:
    """Flip rate from two independent annotators of the same pairs.

    If each annotator reports the true preference reversed with probability ε, independently, they agree
    with probability ``a = (1−ε)² + ε²``, so ``ε = (1 − √(2a − 1)) / 2`` (the smaller root, ε < 1/2).

    Args:
        labels_a, labels_b: (n,) labels in this module's coding (1 first better, 0 second better, 2 tie,
            -1/NaN missing). Pairs missing either label are left out.
        ties: ``"error"`` (default) raises if either label is a tie; ``"drop"`` leaves such pairs out.
            ``Estimate.n_excluded`` counts every pair left out (ties and missing).
        confidence: level of the interval (:func:`agreement_flip_rate_bounds`).
        n_resamples, seed: ignored (deprecated; the interval is analytic).

    Returns:
        :class:`Estimate` with method ``"agreement"`` and ``details["agreement"]``; not identifiable (value NaN)
        when the agreement is <= 1/2 or not significantly above it.

    Raises:
        ValueError: fewer than ``MIN_PAIRS`` usable pairs, a tie with ``ties="error"``, bad codes.
    """
    _warn_unused_resampling("flip_rate_from_agreement", n_resamples, seed)
    _check_choice("ties", ties, TIE_POLICIES)
    a = _parse(labels_a, "labels_a")
    b = _parse(labels_b, "labels_b")
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"labels_a and labels_b must be 1-D of equal length; got {a.shape} and {b.shape}")
    tie = (a == TIE) | (b == TIE)
    if tie.any() and ties == "error":
        raise ValueError(
            f"{int(tie.sum())} pairs have a tie; pass ties='drop' to leave them out (their count is reported in "
            "Estimate.n_excluded)"
        )
    keep = (a >= 0) & (b >= 0) & ~tie
    n = int(keep.sum())
    if n < MIN_PAIRS:
        raise ValueError(f"too few pairs labelled by both annotators: {n} < {MIN_PAIRS}")
    agreement = float(np.mean(a[keep] == b[keep]))
    return _agreement_estimate(agreement, n, confidence=confidence, n_excluded=int(len(a) - n))


def _agreement_estimate(agreement: float, n: int, *, confidence: float, n_excluded: int = 0) -> Estimate:
    bounds = agreement_flip_rate_bounds(agreement, n, confidence=confidence)
    a_lo, _ = wilson_interval(agreement * n, n, confidence=confidence)
    if agreement <= 0.5:
        reason = (
            f"agreement {agreement:.4f} <= 0.5 on {n} pairs: two annotators flipping at a rate below 1/2 agree more "
            "than half the time, so this agreement does not identify a flip rate (ε >= 1/2, or the annotators are "
            "not independent views of one truth)"
        )
    elif not bounds.identifiable:
        reason = (
            f"agreement {agreement:.3f} on {n} pairs is not significantly above 0.5 (interval down to {float(a_lo):.3f}): "
            "the data cannot exclude ε = 1/2; more doubly-annotated pairs would narrow it"
        )
    else:
        reason = ""
    return Estimate(
        value=float(bounds.value), ci_low=float(bounds.ci_low), ci_high=float(bounds.ci_high), method="agreement",
        n=n, confidence=confidence, n_excluded=n_excluded, identifiable=bool(bounds.identifiable), reason=reason,
        details={"agreement": agreement},
    )


# ----------------------------------------------------------------------------------------------- scorer


def _predicted_preference(scores: np.ndarray, kind: str, name: str) -> np.ndarray:
    """Predicted P(first better) in {0, 0.5, 1} from margins, probabilities or labels."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if kind == "margin":
        return np.where(s > 0, 1.0, np.where(s < 0, 0.0, 0.5))
    if kind == "probability":
        if s.min(initial=0.0) < 0.0 or s.max(initial=1.0) > 1.0:
            raise ValueError(f"{name} must be probabilities in [0, 1] with kind='probability'")
        return np.where(s > 0.5, 1.0, np.where(s < 0.5, 0.0, 0.5))
    if np.any((s != 0) & (s != 1)):
        raise ValueError(f"{name} must contain only 0 and 1 with kind='label'")
    return s


def _fieller(disagreement, n, clean_error, n_clean, z):
    """Fieller's set for ρ = A/B, A = 1 − 2d, B = 1 − 2e (independent), with Agresti–Coull variances.

    ``{ρ : (A − ρB)² <= z²(var A + ρ² var B)}`` is the interval between the roots of
    ``(B² − z² var B)ρ² − 2ABρ + (A² − z² var A)`` when ``B² > z² var B`` (B significantly non-zero), and
    unbounded otherwise. Returns ``(rho_low, rho_high, bounded)``."""
    d = np.asarray(disagreement, dtype=np.float64)
    e = np.asarray(clean_error, dtype=np.float64)
    z2 = z * z
    d_ac = (d * n + z2 / 2.0) / (n + z2)
    e_ac = (e * n_clean + z2 / 2.0) / (n_clean + z2)
    var_a = 4.0 * d_ac * (1.0 - d_ac) / (n + z2)
    var_b = 4.0 * e_ac * (1.0 - e_ac) / (n_clean + z2)
    a, b = 1.0 - 2.0 * d, 1.0 - 2.0 * e
    c2 = b * b - z2 * var_b
    c1 = -2.0 * a * b
    c0 = a * a - z2 * var_a
    bounded = c2 > 0  # then the discriminant is positive (see the docstring of scorer_flip_rate_bounds)
    root = np.sqrt(np.maximum(c1 * c1 - 4.0 * c2 * c0, 0.0))
    safe = np.where(bounded, c2, 1.0)
    return (-c1 - root) / (2.0 * safe), (-c1 + root) / (2.0 * safe), bounded


def scorer_flip_rate_bounds(
    disagreement: np.ndarray | float,
    n: np.ndarray | float,
    clean_error: np.ndarray | float,
    n_clean: np.ndarray | float,
    *,
    confidence: float = 0.95,
) -> FlipRateBounds:
    """Vectorised :func:`flip_rate_from_scorer` from a scorer's disagreement shares and clean errors.

    With disagreement ``d`` on ``n`` noisy pairs and error ``e`` on ``n_clean`` clean pairs,
    ``1 − 2ε = (1 − 2d)/(1 − 2e)``. The interval is Fieller's interval for that ratio (Fieller, "Some problems in
    interval estimation", JRSS B 16, 1954): it carries the binomial uncertainty of both ``d`` and ``e``
    (variances Agresti–Coull adjusted, so that ``e = 0`` on a small clean set is not taken as certain) and
    becomes unbounded, i.e. ε ∈ [0, 1/2], when ``1 − 2e`` is not significantly positive — the scorer is too
    close to chance for the clean set's size. (The discriminant ``4z²(var B·A² + var A·B² − z² var A var B)`` is
    positive whenever ``B² > z² var B``, so a bounded set is always an interval.) The upper end is clipped at
    1/2; the lower end is *not* clipped at 0 (only at −1/2, the mirror image), so that the width stays the
    estimate's precision: with a scorer near chance, ``d < e`` by luck gives an interval like [−0.40, 0.16],
    which says "imprecise", where [0, 0.16] would look precise enough to train with (:func:`precise_enough`).
    The point value is ``max(0, (d − e)/(1 − 2e))``; NaN when ``e >= 1/2``, when the set is unbounded (nothing
    is identified) or when it is >= 1/2.

    Args:
        disagreement, clean_error: shares in [0, 1] (arrays broadcast together).
        n, n_clean: the numbers of noisy and clean pairs they were measured on.

    Returns:
        :class:`FlipRateBounds`; identifiable where ``e < 1/2``, the set is bounded and its upper end is below 1/2.
    """
    z = _z(confidence)
    d = np.asarray(disagreement, dtype=np.float64)
    e = np.asarray(clean_error, dtype=np.float64)
    rho_low, rho_high, bounded = _fieller(d, n, e, n_clean, z)
    usable = bounded & (e < 0.5)
    ci_low = np.where(usable, np.clip((1.0 - rho_high) / 2.0, -0.5, 0.5), 0.0)
    ci_high = np.where(usable, np.clip((1.0 - rho_low) / 2.0, 0.0, 0.5), 0.5)
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = (d - e) / (1.0 - 2.0 * e)
    value = np.where(usable & (raw < 0.5), np.maximum(raw, 0.0), np.nan)
    return FlipRateBounds(value, ci_low, ci_high, usable & (ci_high < 0.5) & np.isfinite(value))


class SampleSizes(NamedTuple):
    """Pairs a scorer-based estimate would need for a given interval half-width (:func:`scorer_sample_sizes`).

    ``clean_pairs``: clean pairs needed with the given noisy pairs (inf when no number suffices);
    ``noisy_pairs``: noisy pairs needed even with unlimited clean pairs (inf when ``e >= 1/2``)."""

    clean_pairs: float
    noisy_pairs: float


def scorer_sample_sizes(
    clean_error: float, disagreement: float, n: int, *, half_width: float = 0.05, confidence: float = 0.95
) -> SampleSizes:
    """How many clean (and noisy) pairs would give a ``±half_width`` interval at the measured ``e`` and ``d``.

    The delta-method standard error of ``ε = (d − e)/(1 − 2e)`` is
    ``sqrt(d(1 − d)/n + (1 − 2ε)² e(1 − e)/m) / (1 − 2e)``; solving ``z·SE = half_width`` for ``m`` gives the
    clean pairs, and ``m → ∞`` the least number of noisy pairs. Rounded up; at least ``MIN_PAIRS``.
    """
    e, d = float(clean_error), float(disagreement)
    if not 0.0 < half_width < 0.5:
        raise ValueError(f"half_width must be in (0, 0.5); got {half_width}")
    if e >= 0.5:
        return SampleSizes(float("inf"), float("inf"))
    z = _z(confidence)
    target = (half_width * (1.0 - 2.0 * e) / z) ** 2
    one_minus_2eps = min(max((1.0 - 2.0 * d) / (1.0 - 2.0 * e), 0.0), 1.0)
    noisy = max(float(np.ceil(d * (1.0 - d) / target)), MIN_PAIRS)
    room = target - d * (1.0 - d) / n
    if room <= 0:
        return SampleSizes(float("inf"), noisy)
    clean = one_minus_2eps**2 * e * (1.0 - e) / room
    return SampleSizes(max(float(np.ceil(clean)), MIN_PAIRS), noisy)


def flip_rate_from_scorer(
    scores: np.ndarray,
    labels: np.ndarray,
    clean_scores: np.ndarray,
    clean_labels: np.ndarray,
    *,
    kind: str = "margin",
    confidence: float = 0.95,
    n_resamples: object = _UNSET,
    seed: object = _UNSET,
) -> Estimate:
    """Flip rate from a scorer's disagreement with the noisy labels, corrected by its error on a clean set.

    A scorer (e.g. a reward model) that errs on the true preference with probability ``e``, independently of
    the label flips, disagrees with labels flipped at rate ε with probability ``d = e(1−ε) + ε(1−e)``, so
    ``ε = (d − e) / (1 − 2e)``. ``d`` is measured on the noisy pairs, ``e`` on a set of clean pairs; the interval
    (:func:`scorer_flip_rate_bounds`) carries the sampling uncertainty of both.

    Assumptions: the scores are out-of-sample (the scorer never trained on the pair it scores: a fixed reward
    model, or cross-fitting), and the clean pairs come from the same distribution as the noisy ones.

    Args:
        scores: (n,) scorer output on the noisy pairs: with ``kind="margin"`` a margin (score of the first
            response minus the second; > 0 predicts "first better"), ``"probability"`` P(first better),
            ``"label"`` a predicted label in {0, 1}. A margin of exactly 0 (probability 0.5) counts as half a
            disagreement.
        labels: (n,) the noisy labels in {0, 1} (1 = first better).
        clean_scores, clean_labels: (n_clean,) the same on the clean pairs.
        kind: one of ``SCORE_KINDS``.
        confidence: level of the interval.
        n_resamples, seed: ignored (deprecated; the interval is analytic).

    Returns:
        :class:`Estimate` with method ``"scorer"`` and ``details`` ``disagreement``, ``clean_error`` (with its
        Wilson interval ``clean_error_ci_low`` / ``clean_error_ci_high``), ``n_clean`` and ``raw_value``
        (``(d − e)/(1 − 2e)`` before clipping at 0; the interval's lower end is not clipped, see
        :func:`scorer_flip_rate_bounds`). Not identifiable (value NaN unless a point value < 1/2 exists,
        ``reason`` set) when the clean error is not significantly below 1/2 or the interval reaches 1/2.

    Raises:
        ValueError: fewer than ``MIN_PAIRS`` noisy or clean pairs, or malformed inputs.
    """
    _warn_unused_resampling("flip_rate_from_scorer", n_resamples, seed)
    _check_choice("kind", kind, SCORE_KINDS)
    y = _binary(labels, "labels")
    yc = _binary(clean_labels, "clean_labels")
    pred = _predicted_preference(scores, kind, "scores")
    pred_c = _predicted_preference(clean_scores, kind, "clean_scores")
    if pred.shape != y.shape:
        raise ValueError(f"scores and labels must have equal length; got {pred.shape} and {y.shape}")
    if pred_c.shape != yc.shape:
        raise ValueError(f"clean_scores and clean_labels must have equal length; got {pred_c.shape} and {yc.shape}")
    if len(y) < MIN_PAIRS or len(yc) < MIN_PAIRS:
        raise ValueError(f"need at least {MIN_PAIRS} noisy and {MIN_PAIRS} clean pairs; got {len(y)} and {len(yc)}")
    d = float(np.abs(pred - y).mean())
    e = float(np.abs(pred_c - yc).mean())
    return _scorer_estimate(d, len(y), e, len(yc), confidence=confidence)


def _scorer_estimate(disagreement: float, n: int, clean_error: float, n_clean: int, *, confidence: float) -> Estimate:
    d, e = float(disagreement), float(clean_error)
    bounds = scorer_flip_rate_bounds(d, n, e, n_clean, confidence=confidence)
    _, _, bounded = _fieller(d, n, e, n_clean, _z(confidence))
    e_lo, e_hi = (float(v) for v in wilson_interval(e * n_clean, n_clean, confidence=confidence))
    raw = (d - e) / (1.0 - 2.0 * e) if e != 0.5 else float("nan")
    scorer_text = f"clean error e = {e:.3f} [{e_lo:.3f}, {e_hi:.3f}] on {n_clean} clean pairs"
    if e >= 0.5:
        reason = (
            f"the scorer errs on {e:.3f} >= 1/2 of the {n_clean} clean pairs: it carries no information about the "
            "true preference (or its orientation is reversed), so its disagreement with the labels cannot identify ε"
        )
    elif not bounded:
        reason = (
            f"the scorer is too close to chance for this clean set: its {scorer_text} is not significantly below "
            "1/2, so ε = (d − e)/(1 − 2e) divides by a quantity that may be 0 and any ε in [0, 1/2] fits the data"
        )
    elif not np.isfinite(bounds.value):
        reason = (
            f"implied flip rate {raw:.3f} >= 1/2 (disagreement d = {d:.3f} on {n} pairs, {scorer_text}): the labels "
            "agree with the scorer no more than chance"
        )
    elif not bounds.identifiable:
        reason = (
            f"the interval reaches 1/2 (disagreement d = {d:.3f} on {n} pairs, {scorer_text}): the data cannot "
            "exclude that the labels carry no signal"
        )
    else:
        reason = ""
    return Estimate(
        value=float(bounds.value), ci_low=float(bounds.ci_low), ci_high=float(bounds.ci_high), method="scorer", n=n,
        confidence=confidence, identifiable=bool(bounds.identifiable), reason=reason,
        details={"disagreement": d, "clean_error": e, "clean_error_ci_low": e_lo, "clean_error_ci_high": e_hi,
                 "n_clean": int(n_clean), "raw_value": float(raw)},
    )


# ----------------------------------------------------------------------------------------------- confident learning


def _binary_probs(pred_probs: np.ndarray) -> np.ndarray:
    p = np.asarray(pred_probs, dtype=np.float64)
    if p.ndim == 1:
        if np.all(np.isfinite(p)) and (p.min(initial=0.0) < 0.0 or p.max(initial=1.0) > 1.0):
            raise ValueError(
                "pred_probs must be probabilities in [0, 1] (P(label = 1)); got values outside (pass probabilities, "
                "not margins)"
            )
        return np.stack([1.0 - p, p], axis=1)
    if p.ndim == 2 and p.shape[1] == 2:
        return p
    raise ValueError(f"pred_probs must have shape (n,) = P(label=1) or (n, 2); got {p.shape}")


def binary_confident_learning_rate(labels: np.ndarray, p_first: np.ndarray) -> np.ndarray:
    """Confident learning's noise rate (off-diagonal mass of the calibrated joint) for two classes, vectorised.

    The same computation as :func:`~robustrec.noise.confident_learning.estimate_confident_learning` (Northcutt
    et al. 2021, eqs. 1-3) for K = 2, over the last axis, so that many simulated trials run at once.

    Args:
        labels: (..., n) noisy labels in {0, 1}.
        p_first: (..., n) out-of-sample P(label = 1).

    Returns:
        (...,) noise rates; NaN where a class is absent from the labels.
    """
    y = np.asarray(labels)
    p1 = np.asarray(p_first, dtype=np.float64)
    p0 = 1.0 - p1
    is1, is0 = y == 1, y == 0
    n1, n0 = is1.sum(axis=-1), is0.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t1 = (p1 * is1).sum(axis=-1) / n1
        t0 = (p0 * is0).sum(axis=-1) / n0
    above1 = p1 >= t1[..., None] - 1e-12
    above0 = p0 >= t0[..., None] - 1e-12
    # Among the classes above their threshold, the most probable (class 0 on a tie, as argmax does).
    guess1 = above1 & (~above0 | (p1 > p0))
    guess0 = above0 & (~above1 | (p0 >= p1))
    off, rows = np.zeros(y.shape[:-1]), [(is1, guess0, guess1, n1), (is0, guess1, guess0, n0)]
    n = y.shape[-1]
    for is_label, wrong, right, count in rows:
        c_wrong = (is_label & wrong).sum(axis=-1)
        c_total = c_wrong + (is_label & right).sum(axis=-1)
        # Calibration (eq. 3): each observed-label row is rescaled to that label's count; a row without any
        # confident example stays on the diagonal.
        with np.errstate(invalid="ignore", divide="ignore"):
            off = off + np.where(c_total > 0, c_wrong / np.maximum(c_total, 1) * count / n, 0.0)
    return np.where((n1 > 0) & (n0 > 0), off, np.nan)


def confident_learning_flip_rate_bounds(
    labels: np.ndarray, p_first: np.ndarray, *, confidence: float = 0.95
) -> tuple[FlipRateBounds, np.ndarray, np.ndarray]:
    """Vectorised :func:`flip_rate_confident_learning` over the last axis (many simulated trials at once).

    Args:
        labels: (..., n) noisy labels in {0, 1}; p_first: (..., n) out-of-sample P(label = 1).

    Returns:
        ``(bounds, confident_learning, disagreement)``: :class:`FlipRateBounds` (interval ``[0, u]``, value the
        confident-learning rate where it lies in ``[0, u]`` and ``u < 1/2``, else NaN), and the raw
        confident-learning rates and disagreement shares, each of shape (...,).
    """
    y = np.asarray(labels)
    p1 = np.asarray(p_first, dtype=np.float64)
    n = y.shape[-1]
    cl = binary_confident_learning_rate(y, p1)
    predicted = np.where(p1 > 0.5, 1.0, np.where(p1 < 0.5, 0.0, 0.5))
    d = np.abs(predicted - y).mean(axis=-1)
    _, upper = wilson_interval(d * n, n, confidence=confidence, two_sided=False)
    upper = np.minimum(upper, 0.5)
    ok = (cl < 0.5) & (cl <= upper) & (upper < 0.5)
    bounds = FlipRateBounds(np.where(ok, cl, np.nan), np.zeros_like(upper), upper, ok)
    return bounds, cl, d


def flip_rate_confident_learning(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: object = _UNSET,
    seed: object = _UNSET,
) -> Estimate:
    """Flip rate without clean pairs or repeated annotations: binary confident learning, bounded honestly.

    Northcutt, Jiang & Chuang (JAIR 2021), sections 2.1-2.2, with K = 2 classes "first better" / "second
    better". Present the pairs in random orientation (swap the two responses with probability 1/2, flipping
    the label with them) so that both classes are equally frequent and the flips are class-symmetric.

    What the data can and cannot say: an out-of-fold scorer whose errors are independent of the flips disagrees
    with the labels at rate ``d = e + ε(1 − 2e) >= ε``, whatever its error e; but nothing in noisy labels alone
    separates e from ε. So the interval is ``[0, u]`` with ``u`` the one-sided upper confidence bound of d
    (Wilson, at level ``confidence``): it covers ε whatever the scorer's quality, and it is wide exactly when
    the scorer is weak. The value is confident learning's estimate, which is right only when the scorer is
    sharp and calibrated (it counts the scorer's confident mistakes as flips, so it overestimates with a weak
    scorer). When that value breaks the bound (``> u``) or is >= 1/2, the probabilities are miscalibrated or too
    weak for confident learning: the estimate is not identifiable (value NaN, the confident-learning number kept
    in ``details["confident_learning"]``).

    Args:
        labels: (n,) noisy labels in {0, 1} (1 = first better).
        pred_probs: (n,) out-of-sample P(label = 1), or (n, 2) with rows summing to 1, from a model that never
            saw the pair (cross-fitted).
        confidence: level of the upper bound.
        n_resamples, seed: ignored (deprecated; the interval is analytic).

    Returns:
        :class:`Estimate` with method ``"confident_learning"``, ``details`` ``disagreement`` and
        ``confident_learning``; its ``reason`` states the assumption even when identifiable.

    Raises:
        ValueError: see :func:`~robustrec.noise.confident_learning.estimate_confident_learning` (probabilities
            outside [0, 1], one class only, too few pairs), or fewer than ``MIN_PAIRS`` pairs.
    """
    _warn_unused_resampling("flip_rate_confident_learning", n_resamples, seed)
    y = _binary(labels, "labels")
    probs = _binary_probs(pred_probs)
    y, probs = validate_labels_and_probs(y, probs)
    n = len(y)
    if n < MIN_PAIRS:
        raise ValueError(f"too few pairs: {n} < {MIN_PAIRS}")
    bounds, cl, d = confident_learning_flip_rate_bounds(y, probs[:, 1], confidence=confidence)
    cl, d, upper = float(cl), float(d), float(bounds.ci_high)
    _, d_upper = wilson_interval(d * n, n, confidence=confidence, two_sided=False)
    bound_text = f"the scorer's disagreement with the labels, d = {d:.3f} ({confidence:.0%} upper bound {float(d_upper):.3f})"
    if cl >= 0.5 or cl > upper:
        reason = (
            f"confident learning's estimate {cl:.3f} exceeds what the data allow, ε <= {bound_text}: the scorer's "
            "probabilities are miscalibrated or too weak for confident learning; use clean pairs (the scorer "
            "method) or repeated annotations"
        )
    elif upper >= 0.5:
        reason = (
            f"without clean pairs the data only bound ε <= {bound_text}, and that bound reaches 1/2: the scorer is "
            "too weak; use clean pairs (the scorer method) or repeated annotations"
        )
    else:
        reason = ""
    identifiable = bool(bounds.identifiable)
    if identifiable:
        reason = (
            f"partially identified: without clean pairs the data bound ε <= {bound_text} only; the value is "
            "confident learning's estimate, which assumes a sharp, calibrated scorer"
        )
    return Estimate(
        value=float(bounds.value), ci_low=0.0, ci_high=upper, method="confident_learning", n=n,
        confidence=confidence, identifiable=identifiable, reason=reason,
        details={"disagreement": d, "confident_learning": cl},
    )


def flip_posterior(labels: np.ndarray, p_first_better: np.ndarray, rate: float) -> np.ndarray:
    """Per-pair posterior probability that the observed label is a flip, for ranking suspicious pairs.

    With a calibrated out-of-sample ``q = P(true: first better | pair)`` and symmetric flips at rate ε, Bayes'
    rule gives ``P(flipped | label=1) = ε(1−q) / (ε(1−q) + (1−ε)q)`` and symmetrically for label 0.

    Args:
        labels: (n,) noisy labels in {0, 1}.
        p_first_better: (n,) probabilities in [0, 1].
        rate: flip rate ε in [0, 0.5).

    Returns:
        (n,) float array in [0, 1]; sort descending to inspect or drop the most suspicious pairs.
    """
    y = _binary(labels, "labels")
    q = np.asarray(p_first_better, dtype=np.float64)
    if q.shape != y.shape:
        raise ValueError(f"labels and p_first_better must have equal shape; got {y.shape} and {q.shape}")
    if not np.all(np.isfinite(q)) or q.min(initial=0.0) < 0 or q.max(initial=1.0) > 1:
        raise ValueError("p_first_better must be probabilities in [0, 1]")
    if not 0.0 <= rate < 0.5:
        raise ValueError(f"rate must be in [0, 0.5); got {rate}")
    q_label = np.where(y == 1, q, 1.0 - q)  # P(true = observed label)
    num = rate * (1.0 - q_label)
    den = num + (1.0 - rate) * q_label
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.5)
