"""Flip rate of preference pairs from repeated annotations: Dawid & Skene (JRSS C, 1979) EM.

Each of m annotators labels each pair; with the symmetric noise model of :mod:`.flip_rate` (a label is the reverse
of the truth with probability ε_j, independently), EM estimates every annotator's ε_j, the rate ε of one
annotation, and each pair's posterior probability that a given label is flipped
(:meth:`DawidSkeneResult.pair_flip_rates`). Two annotators identify only a pooled rate
(``confusion="pooled"``). Interval: bias-corrected percentile bootstrap over items (EM re-run on every resample,
all resamples at once); [0, 1/2] and not identifiable when two annotators agree no better than chance, or when
an annotator contradicts the others. Label coding and tie policies as in :mod:`.flip_rate`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from .estimate import DEFAULT_N_RESAMPLES, Estimate, _check_confidence
from .flip_rate import (
    MIN_PAIRS,
    MISSING,
    FlipRateBounds,
    _agreement_inverse,
    _binary,
    _check_choice,
    _prepare_annotations,
    _z,
    pairwise_agreement,
    wilson_interval,
)

__all__ = ["DAWID_SKENE_CONFUSIONS", "DawidSkeneResult", "dawid_skene_flip_rate_bounds", "flip_rate_dawid_skene"]

#: Confusion models of :func:`flip_rate_dawid_skene`: one rate per annotator for both label values
#: (``symmetric``), one per annotator and true label (``full``), or one rate for everyone (``pooled``).
DAWID_SKENE_CONFUSIONS = ("symmetric", "full", "pooled")


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
