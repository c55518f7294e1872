"""Flip rate of preference pairs: the probability ε that a pair's label is the reverse of the truth.

The noise model throughout is symmetric random flipping (the model under which robust DPO is unbiased,
Chowdhury, Kini & Natarajan, ICML 2024, section 3): each label is, independently of the pair, the reverse
of the true preference with probability ε < 1/2. Four estimators, each returning an :class:`Estimate`:

- :func:`flip_rate_from_agreement`: two independent annotators; agreement ``a = (1−ε)² + ε²``. Interval: the
  Wilson score interval of ``a`` mapped through the (monotone) inversion.
- :func:`flip_rate_dawid_skene`: two (pooled rate) or more annotators, Dawid & Skene (1979) EM; bias-corrected
  percentile bootstrap over items (EM re-run on every resample, all resamples at once); [0, 1/2] and not
  identifiable when two annotators agree no better than chance (the rates are then only weakly identified).
  Also gives each pair's posterior flip probability (:meth:`DawidSkeneResult.pair_flip_rates`).
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
(:func:`agreement_flip_rate_bounds`, :func:`dawid_skene_flip_rate_bounds`, :func:`scorer_flip_rate_bounds`,
:func:`confident_learning_flip_rate_bounds`) compute the same estimates for many simulated data sets at once;
``benchmarks/flip_rate_coverage.py`` and the coverage tests check with them that the intervals cover.

Label coding (module constants, used by every function here): ``FIRST_BETTER = 1``, ``SECOND_BETTER = 0``,
``TIE = 2``, ``MISSING = -1`` (NaN is also read as missing). :func:`preference_codes` converts another
coding (e.g. PandaLM's 0 = tie, 1, 2) into this one. Ties are never silently guessed: ``ties="error"``
(default) raises when one is present, ``ties="drop"`` leaves them out and reports how many in
``Estimate.n_excluded``.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from .confident_learning import validate_labels_and_probs
from .estimate import DEFAULT_N_RESAMPLES, Estimate, _check_confidence

__all__ = [
    "FIRST_BETTER",
    "SECOND_BETTER",
    "TIE",
    "MISSING",
    "TIE_POLICIES",
    "DAWID_SKENE_CONFUSIONS",
    "SCORE_KINDS",
    "FLIP_RATE_METHODS",
    "MIN_PAIRS",
    "DEFAULT_MAX_CI_WIDTH",
    "FlipRateBounds",
    "SampleSizes",
    "DawidSkeneResult",
    "preference_codes",
    "wilson_interval",
    "agreement_to_flip_rate",
    "agreement_flip_rate_bounds",
    "scorer_flip_rate_bounds",
    "binary_confident_learning_rate",
    "dawid_skene_flip_rate_bounds",
    "confident_learning_flip_rate_bounds",
    "pairwise_agreement",
    "flip_rate_from_agreement",
    "flip_rate_dawid_skene",
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
DAWID_SKENE_CONFUSIONS = ("symmetric", "full", "pooled")
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


# ----------------------------------------------------------------------------------------------- Dawid–Skene


@dataclass(frozen=True)
class DawidSkeneResult:
    """Result of :func:`flip_rate_dawid_skene`.

    Attributes:
        flip_rate: share of single annotations that differ from the latent true label (posterior-expected,
            averaged over all annotations), with a bootstrap interval over items.
        annotator_flip_rates: (n_annotators,) each annotator's probability of reporting the reverse of the truth;
            NaN for a column without any usable label.
        confusion: (n_annotators, 2, 2) ``P(label=i | true=j)`` per annotator; each column sums to 1 (NaN for a
            column without labels).
        prior: ``P(true label = 1)`` (first better).
        posterior: (n_items,) ``P(true label = 1 | annotations)``; NaN for items with no usable annotation.
        n_iter: EM iterations on the full data.
        converged: whether EM met its tolerance within ``max_iter``.
        n_ties_dropped: annotations that were ties and were dropped (``ties="drop"``).
    """

    flip_rate: Estimate
    annotator_flip_rates: np.ndarray
    confusion: np.ndarray
    prior: float
    posterior: np.ndarray
    n_iter: int
    converged: bool
    n_ties_dropped: int = 0

    def predicted_agreement(self) -> np.ndarray:
        """(m, m) agreement between annotators implied by the fitted model:
        ``Σ_z P(z) Σ_l P(l | z, annotator i) P(l | z, annotator j)``; for symmetric confusions
        ``(1−ε_i)(1−ε_j) + ε_i ε_j``; 1 on the diagonal (as :func:`pairwise_agreement`). Compare the two as a
        goodness-of-fit check."""
        pz = np.array([1.0 - self.prior, self.prior])
        c = self.confusion  # (m, label, true)
        out = np.einsum("z,ilz,jlz->ij", pz, c, c)
        np.fill_diagonal(out, 1.0)
        return out

    def map_labels(self) -> np.ndarray:
        """(n_items,) the most probable true label: 1 (first better) where the posterior is >= 1/2, else 0;
        ``MISSING`` (-1) for items without a usable annotation."""
        post = self.posterior
        return np.where(np.isnan(post), MISSING, (post >= 0.5).astype(np.int64))

    def pair_flip_rates(self, labels: np.ndarray | None = None) -> np.ndarray:
        """Each pair's own flip rate ε_i = P(true label ≠ ``labels[i]`` | the pair's annotations), under the fit.

        This is the per-pair rate of robust DPO's loss: a pair trained with label ``labels[i]`` carries a label
        that is flipped with probability ε_i, so weighting its loss by ε_i (instead of one global ε) keeps the
        loss unbiased given the annotations.

        Args:
            labels: (n_items,) the labels the pairs will be trained with (1 first better, 0 second better);
                default: :meth:`map_labels` (then ε_i = min(p_i, 1 − p_i) <= 1/2).

        Returns:
            (n_items,) floats in [0, 1]; NaN for items without a usable annotation. ε_i = 1/2 means the
            annotations of that pair cancel out (no preference information): drop such pairs rather than
            weight them (rDPO's ``1/(1 − 2ε_i)`` is undefined there).
        """
        post = self.posterior
        if labels is None:
            return np.where(np.isnan(post), np.nan, np.minimum(post, 1.0 - post))
        y = _binary(labels, "labels")
        if y.shape != post.shape:
            raise ValueError(f"labels must have shape {post.shape} (one per item); got {y.shape}")
        return np.where(y == 1, 1.0 - post, post)


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


def _ds_em(
    ones: np.ndarray,
    zeros: np.ndarray,
    w: np.ndarray,
    init_post: np.ndarray,
    *,
    confusion: str,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, bool]:
    """EM on distinct annotation patterns, for one data set or a batch of them (bootstrap resamples, trials).

    Args:
        ones, zeros: (P, m) indicators of label 1 / label 0 per pattern and annotator.
        w: (..., P) pattern counts (a leading batch shape for several weightings at once).
        init_post: initial P(z = 1 | pattern), broadcastable to ``w``.

    Returns:
        ``(a1, a0, prior, posterior, n_iter, converged)`` with ``a1 = P(label=1 | z=1)``, ``a0 = P(label=0 | z=0)``
        of shape (..., m), prior (...,), posterior (..., P); ``n_iter`` the most iterations any member took;
        ``converged`` when every member met ``tol``. A member stops being updated once it has converged.
    """
    eps = 1e-6
    batch, n_patterns, m = w.shape[:-1], w.shape[-1], ones.shape[1]
    w = np.asarray(w, dtype=np.float64).reshape(-1, n_patterns)
    post = np.array(np.broadcast_to(init_post, (*batch, n_patterns)), dtype=np.float64).reshape(-1, n_patterns)
    a1 = np.empty((len(w), m))
    a0 = np.empty((len(w), m))
    prior = np.empty(len(w))
    prev_ll = np.full(len(w), -np.inf)
    active = np.arange(len(w))
    obs = ones + zeros
    it = 0
    for it in range(1, max_iter + 1):
        wa, pa = w[active], post[active]
        # M-step (weighted by pattern counts), with a tiny additive smoothing so no rate hits 0 or 1.
        wt1 = wa * pa
        wt0 = wa - wt1
        pr = np.clip(wt1.sum(axis=1) / wa.sum(axis=1), eps, 1 - eps)
        if confusion != "full":
            wrong = wt1 @ zeros + wt0 @ ones
            total = wa @ obs
            if confusion == "pooled":
                wrong = np.broadcast_to(wrong.sum(axis=1, keepdims=True), wrong.shape)
                total = np.broadcast_to(total.sum(axis=1, keepdims=True), total.shape)
            b1 = b0 = 1.0 - np.clip((wrong + eps) / (total + 2 * eps), eps, 1 - eps)
        else:
            b1 = np.clip((wt1 @ ones + eps) / (wt1 @ obs + 2 * eps), eps, 1 - eps)
            b0 = np.clip((wt0 @ zeros + eps) / (wt0 @ obs + 2 * eps), eps, 1 - eps)
        # E-step.
        l1 = np.log(pr)[:, None] + np.log(b1) @ ones.T + np.log1p(-b1) @ zeros.T
        l0 = np.log1p(-pr)[:, None] + np.log(b0) @ zeros.T + np.log1p(-b0) @ ones.T
        top = np.maximum(l1, l0)
        ll = (wa * (top + np.log(np.exp(l1 - top) + np.exp(l0 - top)))).sum(axis=1)
        a1[active], a0[active], prior[active] = b1, b0, pr
        post[active] = 1.0 / (1.0 + np.exp(l0 - l1))
        done = np.abs(ll - prev_ll[active]) <= tol * np.maximum(1.0, np.abs(ll))
        prev_ll[active] = ll
        active = active[~done]
        if not len(active):
            break
    return (a1.reshape(*batch, m), a0.reshape(*batch, m), prior.reshape(batch), post.reshape(*batch, n_patterns),
            it, not len(active))


def _ds_overall_flip(ones: np.ndarray, zeros: np.ndarray, w: np.ndarray, post: np.ndarray) -> np.ndarray:
    """Posterior-expected share of annotations that differ from the true label; w, post: (..., P)."""
    wrong = (w * post) @ zeros.sum(axis=1) + (w * (1.0 - post)) @ ones.sum(axis=1)
    return wrong / (w @ (ones + zeros).sum(axis=1))


def _no_disagreement_upper(n_multi: np.ndarray, confidence: float) -> np.ndarray:
    """Upper bound on ε when none of ``n_multi`` items with >= 2 labels shows a disagreement.

    Clopper–Pearson: the share q of items showing a disagreement is at most ``1 − (α/2)^(1/n)``; with two
    labels per item ``q = 2ε(1 − ε)`` (more labels per item only make a disagreement likelier, so this bound is
    conservative)."""
    with np.errstate(divide="ignore"):
        q = 1.0 - ((1.0 - confidence) / 2.0) ** (1.0 / np.asarray(n_multi, dtype=np.float64))
    return _agreement_inverse(1.0 - q)


def _bias_corrected_percentiles(boot: np.ndarray, value: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected percentile bootstrap interval (Efron 1981; Efron & Tibshirani 1993, section 14.3).

    ``boot``: (B, ...) replicates, ``value``: (...) full-sample estimates. With ``z0 = Φ⁻¹(P*(θ* < θ̂))`` the
    interval is the ``Φ(2 z0 ± z)`` quantiles of the replicates: when the estimator is median-biased (Dawid–Skene's
    per-annotator fit drifts low as ε nears 1/2, and so do its replicates), the plain percentile interval
    inherits the bias and misses; the correction moves both ends by the bias the bootstrap itself shows."""
    normal = NormalDist()
    b = boot.shape[0]
    below = (boot < value).mean(axis=0) + 0.5 * (boot == value).mean(axis=0)
    z0 = np.vectorize(normal.inv_cdf)(np.clip(below, 1.0 / (2 * b), 1.0 - 1.0 / (2 * b)))
    z = _z(confidence)
    cdf = np.vectorize(normal.cdf)
    levels = np.stack([cdf(2 * z0 - z), cdf(2 * z0 + z)])  # (2, ...)
    ordered = np.sort(boot, axis=0)
    index = np.clip(np.round(levels * (b - 1)).astype(np.int64), 0, b - 1)
    low = np.take_along_axis(ordered, index[:1], axis=0)[0]
    high = np.take_along_axis(ordered, index[1:], axis=0)[0]
    return low, high


class _DawidSkeneFit(NamedTuple):
    value: np.ndarray  # (...,) fitted share of annotations that differ from the truth
    ci_low: np.ndarray
    ci_high: np.ndarray
    annotator_rates: np.ndarray  # (..., m)
    a1: np.ndarray
    a0: np.ndarray
    prior: np.ndarray
    posterior: np.ndarray  # (..., P)
    n_iter: int
    converged: bool
    weakly_identified: np.ndarray  # (...,) bool, see _weak_annotators
    weak_pair: np.ndarray  # (..., 2) the first pair of annotators whose agreement is not above chance, or -1


def _weak_annotators(ones: np.ndarray, zeros: np.ndarray, w: np.ndarray, *, confusion: str, confidence: float):
    """Whether the flip rates are only weakly identified, from pairwise agreement (vectorised over (..., P)).

    With symmetric flips, annotators j and k agree with probability ``a_jk`` where ``2a_jk − 1 = c_j c_k`` and
    ``c = 1 − 2ε``, so ``c_j² = (2a_jk − 1)(2a_jl − 1)/(2a_kl − 1)``: annotator j's rate is identified through
    two others k, l only if all three agreements are significantly above 1/2 (Wilson lower bound). A pooled rate
    needs the pooled agreement above 1/2. Where this fails EM's likelihood is nearly flat: its estimate depends
    on where it stops and its bootstrap is unreliable. Returns ``(weak, pair)`` with ``pair`` the first pair of
    annotators whose agreement is not significantly above 1/2 (-1, -1 if none)."""
    both = np.einsum("...p,pj,pk->...jk", w, ones + zeros, ones + zeros)
    agree = np.einsum("...p,pj,pk->...jk", w, ones, ones) + np.einsum("...p,pj,pk->...jk", w, zeros, zeros)
    m = ones.shape[1]
    off = ~np.eye(m, dtype=bool)
    if confusion == "pooled":
        low, _ = wilson_interval(agree[..., off].sum(-1), np.maximum(both[..., off].sum(-1), 1), confidence=confidence)
        significant = np.broadcast_to((low > 0.5)[..., None, None], both.shape) | ~off
    else:
        low, _ = wilson_interval(agree, np.maximum(both, 1), confidence=confidence)
        significant = (low > 0.5) & (both > 0) | ~off
    identified = np.zeros(w.shape[:-1] + (m,), dtype=bool)
    for j, k, l in itertools.permutations(range(m), 3):
        if k < l:
            identified[..., j] |= significant[..., j, k] & significant[..., j, l] & significant[..., k, l]
    if confusion == "pooled" or m == 2:
        identified = np.broadcast_to(significant.all(axis=(-2, -1))[..., None], identified.shape)
    failing = ~significant & off
    flat = failing.reshape(*failing.shape[:-2], m * m)
    first = np.argmax(flat, axis=-1)
    pair = np.where(flat.any(axis=-1)[..., None], np.stack([first // m, first % m], axis=-1), -1)
    return ~identified.all(axis=-1), pair


def _ds_fit(
    patterns: np.ndarray,
    counts: np.ndarray,
    *,
    confusion: str,
    max_iter: int,
    tol: float,
    n_resamples: int,
    confidence: float,
    seed: int | None,
) -> _DawidSkeneFit:
    """EM fit and bias-corrected bootstrap interval over items for pattern counts (..., P) of patterns (P, m)."""
    ones = (patterns == 1).astype(np.float64)
    zeros = (patterns == 0).astype(np.float64)
    w = np.asarray(counts, dtype=np.float64)
    n_obs = ones.sum(axis=1) + zeros.sum(axis=1)
    majority = np.where(n_obs > 0, (ones.sum(axis=1) + 0.5) / (n_obs + 1.0), 0.5)
    a1, a0, prior, post, n_iter, converged = _ds_em(ones, zeros, w, majority, confusion=confusion, max_iter=max_iter, tol=tol)
    value = _ds_overall_flip(ones, zeros, w, post)
    weak, pair = _weak_annotators(ones, zeros, w, confusion=confusion, confidence=confidence)
    # Weakly identified members get [0, 1/2] and no bootstrap (EM barely moves on their flat likelihood).
    low, high = np.zeros(w.shape[:-1]), np.full(w.shape[:-1], 0.5)
    strong = np.flatnonzero(~weak.reshape(-1))
    if len(strong):
        ws = w.reshape(-1, w.shape[-1])[strong]
        n_items = ws.sum(axis=-1)
        rng = np.random.default_rng(seed)
        wb = rng.multinomial(n_items.astype(np.int64), ws / n_items[:, None], size=(n_resamples, len(strong)))
        ps = post.reshape(-1, w.shape[-1])[strong]
        _, _, _, pb, _, _ = _ds_em(ones, zeros, wb.astype(np.float64), ps, confusion=confusion, max_iter=max_iter, tol=tol)
        lo_s, hi_s = _bias_corrected_percentiles(
            _ds_overall_flip(ones, zeros, wb, pb), value.reshape(-1)[strong], confidence
        )
        low.reshape(-1)[strong], high.reshape(-1)[strong] = lo_s, hi_s
    # No item with a disagreement: the bootstrap is degenerate (every resample gives 0); bound ε instead.
    disagreeing = (w * ((ones > 0).any(axis=1) & (zeros > 0).any(axis=1))).sum(axis=-1) > 0
    n_multi = (w * (n_obs >= 2)).sum(axis=-1)
    value = np.where(disagreeing, value, 0.0)
    low = np.where(disagreeing, low, 0.0)
    high = np.where(disagreeing, high, _no_disagreement_upper(n_multi, confidence))
    weak = weak & disagreeing
    prior_ = np.asarray(prior)[..., None]
    rates = prior_ * (1.0 - a1) + (1.0 - prior_) * (1.0 - a0)
    return _DawidSkeneFit(value, low, high, rates, a1, a0, prior, post, n_iter, converged, weak, pair)


def dawid_skene_flip_rate_bounds(
    patterns: np.ndarray,
    counts: np.ndarray,
    *,
    confusion: str = "symmetric",
    max_iter: int = 500,
    tol: float = 1e-9,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> FlipRateBounds:
    """Vectorised :func:`flip_rate_dawid_skene` over many data sets given as annotation-pattern counts.

    Args:
        patterns: (P, m) distinct annotation patterns (1 first better, 0 second better, -1 missing).
        counts: (..., P) how many items show each pattern, one row per data set (e.g. simulated trial).

    Returns:
        :class:`FlipRateBounds` of shape ``counts.shape[:-1]``; identifiable where the fitted rate and every
        annotator's rate are below 1/2 and the interval's upper end is below 1/2.
    """
    _check_choice("confusion", confusion, DAWID_SKENE_CONFUSIONS)
    _check_confidence(confidence)
    fit = _ds_fit(np.asarray(patterns), counts, confusion=confusion, max_iter=max_iter, tol=tol,
                  n_resamples=n_resamples, confidence=confidence, seed=seed)
    ok = (fit.value < 0.5) & (fit.annotator_rates < 0.5).all(axis=-1)
    return FlipRateBounds(np.where(ok, fit.value, np.nan), fit.ci_low, fit.ci_high, ok & (fit.ci_high < 0.5))


def flip_rate_dawid_skene(
    annotations: np.ndarray,
    *,
    confusion: str = "symmetric",
    ties: str = "error",
    max_iter: int = 500,
    tol: float = 1e-9,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> DawidSkeneResult:
    """Flip rate from repeated annotations by Dawid–Skene EM.

    Dawid & Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using the EM Algorithm", JRSS C 28
    (1979), section 2: each item has a latent true label z (here binary: 1 = first response better); annotator
    ``k`` reports label ``l`` with probability ``π_k[l | z]``, independently across annotators given z. EM
    alternates the posterior of z per item (E-step) with the prior and the confusions (M-step). Initialised
    from the majority vote, which fixes the labelling of the latent classes (annotators better than chance).

    Args:
        annotations: (n_items, n_annotators) labels in this module's coding (1 first better, 0 second better,
            2 tie, -1/NaN missing). Items with no usable label are left out (counted in
            ``flip_rate.n_excluded``; their posterior is NaN); a column without any label is left out of the fit.
        confusion: ``"symmetric"`` (default; one flip rate ε_k per annotator, the model of robust DPO),
            ``"full"`` (a 2×2 confusion matrix per annotator, rates may differ by true label) or ``"pooled"``
            (one flip rate shared by all annotators: the most stable when annotators are exchangeable, e.g.
            crowd workers, and rates are high; the only model two annotators identify).
        ties: ``"error"`` (default) raises on a tie; ``"drop"`` treats ties as missing labels
            (``n_ties_dropped`` counts them). A tie is not a flip, so it is never counted as one.
        max_iter, tol: EM stops when the relative change of the log-likelihood is below ``tol``.
        n_resamples, confidence, seed: bias-corrected percentile bootstrap over items (EM re-run on every
            resample, all at once, warm-started from the fit). When no item shows any disagreement the bootstrap is
            degenerate; the interval is then ``[0, u]`` with ``u`` a Clopper–Pearson bound
            (:func:`_no_disagreement_upper`). When two annotators' agreement is not significantly above 1/2 the
            rates are only weakly identified (:func:`_weak_annotators`): the interval is then [0, 1/2], not
            identifiable.
            :func:`dawid_skene_flip_rate_bounds` is the same computation for many data sets at once.

    Returns:
        :class:`DawidSkeneResult`; ``flip_rate.value`` is the expected share of single annotations that differ
        from the true label, ``annotator_flip_rates`` the per-annotator rates, ``pair_flip_rates()`` each
        pair's posterior flip probability. ``flip_rate`` is not identifiable (value NaN, ``reason`` set) when
        the fitted rate or an annotator's rate is >= 1/2 (annotators agree no more than chance, or one
        contradicts the others) or its interval reaches 1/2.

    Raises:
        ValueError: fewer than 2 annotators with labels, 2 annotators with a per-annotator ``confusion`` (only a
            pooled rate is identifiable from two: use ``confusion="pooled"`` or :func:`flip_rate_from_agreement`),
            fewer than ``MIN_PAIRS`` items, no item with two labels, a tie with ``ties="error"``, or annotators
            that all give the same label (no disagreement pattern to fit).
    """
    _check_choice("confusion", confusion, DAWID_SKENE_CONFUSIONS)
    _check_confidence(confidence)
    prepared = _prepare_annotations(annotations, ties=ties)
    x_all = prepared.matrix
    n_items, m_all = x_all.shape
    active = (x_all >= 0).any(axis=0)
    m = int(active.sum())
    if m < 2:
        raise ValueError(f"Dawid–Skene needs at least two annotators with labels; got {m} of {m_all} columns")
    if m == 2 and confusion != "pooled":
        raise ValueError(
            f"two annotators (of {m_all} columns, {m_all - m} without labels) identify one shared flip rate only, "
            f"not per-annotator rates (confusion={confusion!r}): pass confusion='pooled', or use "
            "flip_rate_from_agreement"
        )
    if n_items < MIN_PAIRS:
        raise ValueError(f"too few items with a usable label: {n_items} < {MIN_PAIRS}")
    if not (x_all == 1).any() or not (x_all == 0).any():
        raise ValueError(
            "every annotation has the same label: the prior of the true label and the flip rates are not "
            "identifiable (present pairs in random orientation)"
        )
    x = x_all[:, active]
    n_multi = int(((x >= 0).sum(axis=1) >= 2).sum())
    if n_multi == 0:
        raise ValueError("no item has two or more usable labels: repeated annotations of the same pair are needed")
    patterns, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    fit = _ds_fit(patterns, counts, confusion=confusion, max_iter=max_iter, tol=tol, n_resamples=n_resamples,
                  confidence=confidence, seed=seed)
    value, low, high = float(fit.value), float(fit.ci_low), float(fit.ci_high)
    a1, a0, prior, post, annot_active = fit.a1, fit.a0, float(fit.prior), fit.posterior, fit.annotator_rates

    observed = pairwise_agreement(x)
    mean_agreement = float(np.nanmean(observed[~np.eye(m, dtype=bool)]))
    worst = int(np.argmax(annot_active))
    if value >= 0.5:
        reason = (
            f"the fitted flip rate {value:.3f} >= 1/2: the annotators agree with each other no more than chance "
            f"(mean pairwise agreement {mean_agreement:.3f}), so their labels do not identify a flip rate below 1/2"
        )
    elif bool(fit.weakly_identified):
        i, k = (int(v) for v in fit.weak_pair)
        j, l = (int(np.flatnonzero(active)[v]) + 1 for v in (i, k))
        n_both = int(((x[:, i] >= 0) & (x[:, k] >= 0)).sum())
        _, pair_high = wilson_interval(observed[i, k] * n_both, max(n_both, 1), confidence=confidence)
        if confusion != "pooled" and pair_high < 0.5:
            reason = (
                f"annotators {j} and {l} agree on only {observed[i, k]:.3f} of their {n_both} items: one contradicts "
                "the other, and the flip model (each annotator right more often than wrong) fails"
            )
        else:
            which = "the annotators' pooled agreement is" if confusion == "pooled" else (
                f"annotators {j} and {l} agree on {observed[i, k]:.3f} of their {n_both} items,")
            reason = (
                f"{which} not significantly above 1/2 (mean pairwise agreement {mean_agreement:.3f} on {n_items} "
                "items): the flip rates are only weakly identified (EM's likelihood is nearly flat there), so the "
                "interval is [0, 1/2]; more items or more annotators per item would identify them"
            )
    elif annot_active[worst] >= 0.5:
        reason = (
            f"annotator {int(np.flatnonzero(active)[worst]) + 1} contradicts the others (fitted flip rate "
            f"{annot_active[worst]:.3f} >= 1/2): the flip model, each annotator right more often than wrong, fails"
        )
    elif high >= 0.5:
        reason = (
            f"the interval reaches 1/2 (mean pairwise agreement {mean_agreement:.3f} on {n_items} items): the data "
            "cannot exclude that the labels carry no signal; more annotators or items would narrow it"
        )
    else:
        reason = ""
    identifiable = not reason
    if value >= 0.5 or annot_active[worst] >= 0.5:
        value = float("nan")

    annot_flip = np.full(m_all, np.nan)
    annot_flip[active] = annot_active
    conf = np.full((m_all, 2, 2), np.nan)
    conf[active, 1, 1], conf[active, 0, 1] = a1, 1.0 - a1
    conf[active, 0, 0], conf[active, 1, 0] = a0, 1.0 - a0
    posterior = np.full(len(prepared.used), np.nan)
    posterior[prepared.used] = post[inverse]
    estimate = Estimate(
        value=value,
        ci_low=low,
        ci_high=high,
        method="dawid_skene",
        n=n_items,
        confidence=confidence,
        n_excluded=int(len(prepared.used) - n_items),
        identifiable=identifiable,
        reason=reason,
        details={"confusion": confusion, "n_annotators": m, "mean_pairwise_agreement": mean_agreement},
    )
    return DawidSkeneResult(
        flip_rate=estimate,
        annotator_flip_rates=annot_flip,
        confusion=conf,
        prior=prior,
        posterior=posterior,
        n_iter=fit.n_iter,
        converged=fit.converged,
        n_ties_dropped=prepared.n_ties if ties == "drop" else 0,
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
