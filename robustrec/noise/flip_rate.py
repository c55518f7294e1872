"""Flip rate of preference pairs: the probability ε that a pair's label is the reverse of the truth.

The noise model throughout is symmetric random flipping (the model under which robust DPO is unbiased,
Chowdhury, Kini & Natarajan, ICML 2024, section 3): each label is, independently of the pair, the reverse
of the true preference with probability ε < 1/2. Four estimators, each returning an :class:`Estimate` with
a seeded bootstrap interval:

- :func:`flip_rate_from_agreement`: two independent annotators; agreement ``a = (1−ε)² + ε²``.
- :func:`flip_rate_dawid_skene`: three or more annotators, Dawid & Skene (1979) EM.
- :func:`flip_rate_from_scorer`: an out-of-fold scorer's disagreement with the labels, corrected by its
  error on a small clean set.
- :func:`flip_rate_confident_learning`: binary confident learning on pairs in random orientation.

Label coding (module constants, used by every function here): ``FIRST_BETTER = 1``, ``SECOND_BETTER = 0``,
``TIE = 2``, ``MISSING = -1`` (NaN is also read as missing). :func:`preference_codes` converts another
coding (e.g. PandaLM's 0 = tie, 1, 2) into this one. Ties are never silently guessed: ``ties="error"``
(default) raises when one is present, ``ties="drop"`` leaves them out and reports how many in
``Estimate.n_excluded``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .confident_learning import _estimate, validate_labels_and_probs
from .estimate import DEFAULT_N_RESAMPLES, Estimate, bootstrap_ci, bootstrap_estimate, _check_confidence

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
    "DawidSkeneResult",
    "preference_codes",
    "agreement_to_flip_rate",
    "pairwise_agreement",
    "flip_rate_from_agreement",
    "flip_rate_dawid_skene",
    "flip_rate_from_scorer",
    "flip_rate_confident_learning",
    "flip_posterior",
]

FIRST_BETTER = 1
SECOND_BETTER = 0
TIE = 2
MISSING = -1

#: How ties are handled: raise, or leave the tied labels out (and count them).
TIE_POLICIES = ("error", "drop")
#: Dawid–Skene confusion models: one flip rate per annotator ("symmetric"), a 2×2 confusion matrix per
#: annotator ("full"), or one flip rate shared by all annotators ("pooled").
DAWID_SKENE_CONFUSIONS = ("symmetric", "full", "pooled")
#: What :func:`flip_rate_from_scorer` receives: margins (first minus second), P(first better), or 0/1 labels.
SCORE_KINDS = ("margin", "probability", "label")
#: Method names, as stored in ``Estimate.method``.
FLIP_RATE_METHODS = ("agreement", "dawid_skene", "scorer", "confident_learning")

#: Fewer usable pairs than this: no estimate (the interval would be meaningless).
MIN_PAIRS = 10


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


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


def _agreement_stat(agree: np.ndarray) -> float:
    a = float(np.mean(agree))
    return 0.5 if a <= 0.5 else (1.0 - np.sqrt(2.0 * a - 1.0)) / 2.0


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
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Flip rate from two independent annotators of the same pairs.

    If each annotator reports the true preference reversed with probability ε, independently, they agree
    with probability ``a = (1−ε)² + ε²``, so ``ε = (1 − √(2a − 1)) / 2`` (the smaller root, ε < 1/2).

    Args:
        labels_a, labels_b: (n,) labels in this module's coding (1 first better, 0 second better, 2 tie,
            -1/NaN missing). Pairs missing either label are left out.
        ties: ``"error"`` (default) raises if either label is a tie; ``"drop"`` leaves such pairs out.
            ``Estimate.n_excluded`` counts every pair left out (ties and missing).
        n_resamples, confidence, seed: bootstrap over pairs (the interval's bootstrap statistic maps
            ``a <= 0.5`` to ε = 0.5 rather than failing).

    Raises:
        ValueError: fewer than ``MIN_PAIRS`` usable pairs, a tie with ``ties="error"``, or agreement <= 0.5.
    """
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
    agree = (a[keep] == b[keep]).astype(np.float64)
    value = agreement_to_flip_rate(float(agree.mean()))
    return bootstrap_estimate(
        _agreement_stat,
        agree,
        method="agreement",
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
        value=value,
        n_excluded=int(len(a) - n),
    )


# ----------------------------------------------------------------------------------------------- Dawid–Skene


@dataclass(frozen=True)
class DawidSkeneResult:
    """Result of :func:`flip_rate_dawid_skene`.

    Attributes:
        flip_rate: share of single annotations that differ from the latent true label (posterior-expected,
            averaged over all annotations), with a bootstrap interval over items.
        annotator_flip_rates: (n_annotators,) each annotator's probability of reporting the reverse of the truth.
        confusion: (n_annotators, 2, 2) ``P(label=i | true=j)`` per annotator; each column sums to 1.
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
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, int, bool]:
    """EM on distinct annotation patterns. ones/zeros: (P, m) indicators; w: (P,) pattern counts.

    Returns (a1, a0, prior, posterior, n_iter, converged) with a1 = P(label=1|z=1), a0 = P(label=0|z=0).
    """
    eps = 1e-6
    post = init_post
    prev_ll = -np.inf
    obs = ones + zeros
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        # M-step (weighted by pattern counts), with a tiny additive smoothing so no rate hits 0 or 1.
        wt1 = w * post
        wt0 = w * (1.0 - post)
        prior = float(np.clip(wt1.sum() / w.sum(), eps, 1 - eps))
        if confusion != "full":
            wrong = wt1 @ zeros + wt0 @ ones
            total = w @ obs
            if confusion == "pooled":
                wrong = np.full_like(wrong, wrong.sum())
                total = np.full_like(total, total.sum())
            flip = np.clip((wrong + eps) / (total + 2 * eps), eps, 1 - eps)
            a1 = a0 = 1.0 - flip
        else:
            a1 = np.clip((wt1 @ ones + eps) / (wt1 @ obs + 2 * eps), eps, 1 - eps)
            a0 = np.clip((wt0 @ zeros + eps) / (wt0 @ obs + 2 * eps), eps, 1 - eps)
        # E-step.
        l1 = np.log(prior) + ones @ np.log(a1) + zeros @ np.log1p(-a1)
        l0 = np.log1p(-prior) + zeros @ np.log(a0) + ones @ np.log1p(-a0)
        m = np.maximum(l1, l0)
        ll = float(w @ (m + np.log(np.exp(l1 - m) + np.exp(l0 - m))))
        post = 1.0 / (1.0 + np.exp(l0 - l1))
        if abs(ll - prev_ll) <= tol * max(1.0, abs(ll)):
            converged = True
            break
        prev_ll = ll
    return a1, a0, prior, post, it, converged


def _ds_overall_flip(ones: np.ndarray, zeros: np.ndarray, w: np.ndarray, post: np.ndarray) -> float:
    wrong = (w * post) @ zeros.sum(axis=1) + (w * (1.0 - post)) @ ones.sum(axis=1)
    return float(wrong / (w @ (ones + zeros).sum(axis=1)))


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
    """Flip rate from three or more annotators by Dawid–Skene EM.

    Dawid & Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using the EM Algorithm", JRSS C 28
    (1979), section 2: each item has a latent true label z (here binary: 1 = first response better); annotator
    ``k`` reports label ``l`` with probability ``π_k[l | z]``, independently across annotators given z. EM
    alternates the posterior of z per item (E-step) with the prior and the confusions (M-step). Initialised
    from the majority vote, which fixes the labelling of the latent classes (annotators better than chance).

    Args:
        annotations: (n_items, n_annotators) labels in this module's coding (1 first better, 0 second better,
            2 tie, -1/NaN missing). Items with no usable label are left out (counted in
            ``flip_rate.n_excluded``; their posterior is NaN).
        confusion: ``"symmetric"`` (default; one flip rate ε_k per annotator, the model of robust DPO),
            ``"full"`` (a 2×2 confusion matrix per annotator, rates may differ by true label) or ``"pooled"``
            (one flip rate shared by all annotators: the most stable when annotators are exchangeable, e.g.
            crowd workers, and rates are high; per-annotator fits get weakly identified as ε nears 1/2).
        ties: ``"error"`` (default) raises on a tie; ``"drop"`` treats ties as missing labels
            (``n_ties_dropped`` counts them). A tie is not a flip, so it is never counted as one.
        max_iter, tol: EM stops when the relative change of the log-likelihood is below ``tol``.
        n_resamples, confidence, seed: bootstrap over items (EM re-run on each resample, warm-started).

    Returns:
        :class:`DawidSkeneResult`; ``flip_rate.value`` is the expected share of single annotations that differ
        from the true label, ``annotator_flip_rates`` the per-annotator rates.

    Raises:
        ValueError: fewer than 3 annotators (with 2, Dawid–Skene cannot separate the two annotators' rates: use
            :func:`flip_rate_from_agreement`), fewer than ``MIN_PAIRS`` items, a tie with ``ties="error"``, or
            annotators that all give the same label (no disagreement pattern to fit).
    """
    _check_choice("confusion", confusion, DAWID_SKENE_CONFUSIONS)
    _check_confidence(confidence)
    prepared = _prepare_annotations(annotations, ties=ties)
    x = prepared.matrix
    n_items, m = x.shape
    if m < 3:
        raise ValueError(
            f"Dawid–Skene needs at least 3 annotators to identify per-annotator flip rates; got {m} "
            "(for two annotators use flip_rate_from_agreement)"
        )
    if n_items < MIN_PAIRS:
        raise ValueError(f"too few items with a usable label: {n_items} < {MIN_PAIRS}")
    if not (x == 1).any() or not (x == 0).any():
        raise ValueError(
            "every annotation has the same label: the prior of the true label and the flip rates are not "
            "identifiable (present pairs in random orientation)"
        )
    patterns, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    ones = (patterns == 1).astype(np.float64)
    zeros = (patterns == 0).astype(np.float64)
    w = counts.astype(np.float64)
    n_obs = ones.sum(axis=1) + zeros.sum(axis=1)
    majority = np.where(n_obs > 0, (ones.sum(axis=1) + 0.5) / (n_obs + 1.0), 0.5)
    a1, a0, prior, post, n_iter, converged = _ds_em(
        ones, zeros, w, majority, confusion=confusion, max_iter=max_iter, tol=tol
    )
    value = _ds_overall_flip(ones, zeros, w, post)

    rng = np.random.default_rng(seed)
    p = w / w.sum()
    boot = np.empty(n_resamples)
    for b in range(n_resamples):
        wb = rng.multinomial(n_items, p).astype(np.float64)
        _, _, _, pb, _, _ = _ds_em(ones, zeros, wb, post, confusion=confusion, max_iter=max_iter, tol=1e-7)
        boot[b] = _ds_overall_flip(ones, zeros, wb, pb)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])

    conf = np.empty((m, 2, 2))
    conf[:, 1, 1], conf[:, 0, 1] = a1, 1.0 - a1
    conf[:, 0, 0], conf[:, 1, 0] = a0, 1.0 - a0
    annot_flip = prior * (1.0 - a1) + (1.0 - prior) * (1.0 - a0)
    posterior = np.full(len(prepared.used), np.nan)
    posterior[prepared.used] = post[inverse]
    estimate = Estimate(
        value=value,
        ci_low=float(low),
        ci_high=float(high),
        method="dawid_skene",
        n=n_items,
        confidence=confidence,
        n_excluded=int(len(prepared.used) - n_items),
    )
    return DawidSkeneResult(
        flip_rate=estimate,
        annotator_flip_rates=annot_flip,
        confusion=conf,
        prior=prior,
        posterior=posterior,
        n_iter=n_iter,
        converged=converged,
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


def _scorer_stat(dis: np.ndarray, is_clean: np.ndarray) -> float:
    e = float(dis[is_clean].mean())
    d = float(dis[~is_clean].mean())
    if e >= 0.5:
        return np.nan
    return float(np.clip((d - e) / (1.0 - 2.0 * e), 0.0, 0.5))


def flip_rate_from_scorer(
    scores: np.ndarray,
    labels: np.ndarray,
    clean_scores: np.ndarray,
    clean_labels: np.ndarray,
    *,
    kind: str = "margin",
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Flip rate from an out-of-fold scorer's disagreement with the noisy labels, corrected on a clean set.

    A scorer (e.g. a reward model) that errs on the true preference with probability ``e``, independently of
    the label flips, disagrees with labels flipped at rate ε with probability ``d = e(1−ε) + ε(1−e)``, so
    ``ε = (d − e) / (1 − 2e)``. ``d`` is measured on the noisy pairs, ``e`` on a small set of clean pairs.

    Assumptions: the scores on the noisy pairs are out-of-sample (cross-fitted: the scorer never trained on the
    pair it scores), and the clean pairs come from the same distribution as the noisy ones.

    Args:
        scores: (n,) scorer output on the noisy pairs: with ``kind="margin"`` a margin (score of the first
            response minus the second; > 0 predicts "first better"), ``"probability"`` P(first better),
            ``"label"`` a predicted label in {0, 1}. A margin of exactly 0 (probability 0.5) counts as half a
            disagreement.
        labels: (n,) the noisy labels in {0, 1} (1 = first better).
        clean_scores, clean_labels: (n_clean,) the same on the clean pairs.
        kind: one of ``SCORE_KINDS``.
        n_resamples, confidence, seed: stratified bootstrap (noisy and clean pairs resampled separately).

    Returns:
        :class:`Estimate` with method ``"scorer"``. When ``d < e`` (the labels look cleaner than the clean set
        says the scorer is) the value is clipped to 0; interval bounds are clipped to [0, 0.5].

    Raises:
        ValueError: the scorer's clean error ``e >= 0.5`` (it carries no signal: ε is not identifiable), the
            implied ε >= 0.5, or fewer than ``MIN_PAIRS`` noisy or clean pairs.
    """
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
    dis = np.abs(pred - y)
    dis_c = np.abs(pred_c - yc)
    d, e = float(dis.mean()), float(dis_c.mean())
    if e >= 0.5:
        raise ValueError(
            f"the scorer errs on {e:.3f} >= 0.5 of the clean pairs: it carries no information about the true "
            "preference, so its disagreement with the noisy labels cannot identify the flip rate"
        )
    raw = (d - e) / (1.0 - 2.0 * e)
    if raw >= 0.5:
        raise ValueError(
            f"implied flip rate {raw:.3f} >= 0.5 (disagreement d={d:.3f}, clean error e={e:.3f}): the labels agree "
            "with the scorer no more than chance, so a flip rate below 1/2 is not identifiable"
        )
    all_dis = np.concatenate([dis, dis_c])
    is_clean = np.concatenate([np.zeros(len(dis), bool), np.ones(len(dis_c), bool)])
    low, high = bootstrap_ci(
        _scorer_stat, all_dis, is_clean, n_resamples=n_resamples, confidence=confidence, seed=seed, strata=is_clean
    )
    return Estimate(
        value=max(raw, 0.0), ci_low=low, ci_high=high, method="scorer", n=len(y), confidence=confidence
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


def _cl_stat(labels: np.ndarray, probs: np.ndarray) -> float:
    counts = np.bincount(labels, minlength=2)
    if counts.min() < 1:
        return np.nan
    return _estimate(labels, probs).noise_rate


def flip_rate_confident_learning(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Flip rate by binary confident learning: ε = off-diagonal mass of the calibrated joint.

    Northcutt, Jiang & Chuang (JAIR 2021), sections 2.1-2.2, with K = 2 classes "first better" / "second
    better". Present the pairs in random orientation (swap the two responses with probability 1/2, flipping
    the label with them) so that both classes are equally frequent and the flips are class-symmetric.

    Args:
        labels: (n,) noisy labels in {0, 1} (1 = first better).
        pred_probs: (n,) out-of-sample P(label = 1), or (n, 2) with rows summing to 1, from a model that never
            saw the pair (cross-fitted).
        n_resamples, confidence, seed: bootstrap over pairs (confident learning re-run on each resample).

    Raises:
        ValueError: see :func:`~robustrec.noise.confident_learning.estimate_confident_learning` (probabilities
            outside [0, 1], one class only, too few pairs), or fewer than ``MIN_PAIRS`` pairs.
    """
    y = _binary(labels, "labels")
    probs = _binary_probs(pred_probs)
    y, probs = validate_labels_and_probs(y, probs)
    if len(y) < MIN_PAIRS:
        raise ValueError(f"too few pairs: {len(y)} < {MIN_PAIRS}")
    value = _estimate(y, probs).noise_rate
    return bootstrap_estimate(
        _cl_stat, y, probs, method="confident_learning", n_resamples=n_resamples, confidence=confidence, seed=seed,
        value=value,
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
