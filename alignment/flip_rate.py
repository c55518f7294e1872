"""The flip rate of preference pairs for robust DPO: estimate it, decide whether it may be trained with, and
each pair's own rate from repeated annotations. The glue between the text pairs and :mod:`robustrec.noise`.

Three situations:

- **Pairs with one label each and a clean set** (pairs whose labels are known to be right): a scorer
  (:mod:`alignment.scorers`: ``"bow"``, ``"embeddings"``, ``"reward-model"`` or any callable) disagrees with the
  noisy labels at rate d and errs on the clean pairs at rate e, so ε = (d − e)/(1 − 2e)
  (:func:`robustrec.noise.flip_rate_from_scorer`, whose interval carries the uncertainty of both). Feature
  scorers are cross-fitted: by default (``fit_on="auto"``) on the clean pairs when there are at least
  :data:`MIN_CLEAN_TO_FIT` of them (every noisy pair is then scored by one fold model drawn at random, so d and
  e are measured with the same scorer distribution). A scorer trained on the *noisy* pairs (``fit_on="noisy"``)
  learns from a signal weakened by 1 − 2ε: at ε = 0.4 it errs on ≈ 40 % of pairs, and 1/(1 − 2e) turns that
  into intervals of ±0.2 or a refusal. Trained on clean pairs, its error does not depend on ε.
- **Without a clean set**: confident learning on the pairs in random orientation
  (:func:`robustrec.noise.flip_rate_confident_learning`): noisy labels alone only bound ε from above, so its
  interval is [0, upper bound of d] and it lets ``auto`` train only when that bound is small.
- **Repeated annotations** (PandaLM's three annotators): Dawid–Skene EM or the two-annotator agreement
  formula (:func:`estimate_flip_rate_from_annotations`), and each pair's posterior flip probability for the
  label it is trained with (:func:`pair_flip_rates_from_annotations`), for a per-pair rDPO loss.

The decision rule of ``flip_rate="auto"`` is :func:`resolve_flip_rate`: the estimate's value when it is
identifiable and its interval is at most ``max_ci_width`` wide (default
:data:`robustrec.noise.DEFAULT_MAX_CI_WIDTH` = 0.2, i.e. ±0.1), else ``fallback`` if one is given, else a
:class:`FlipRateRefusedError` saying why and what would fix it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np
import pandas as pd

from robustrec.noise import (
    DEFAULT_MAX_CI_WIDTH,
    Estimate,
    flip_rate_confident_learning,
    flip_rate_dawid_skene,
    flip_rate_from_agreement,
    flip_rate_from_scorer,
    precise_enough,
    preference_codes,
    scorer_sample_sizes,
)

from .losses import check_flip_rate
from .scorers import SCORERS, cross_fit, is_feature_scorer, make_scorer, pair_differences, scorer_name

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_CI_WIDTH",
    "FIT_ON",
    "MIN_CLEAN_TO_FIT",
    "TARGET_HALF_WIDTH",
    "MAX_PAIR_FLIP_RATE",
    "FlipRateRefusedError",
    "PairFlipRates",
    "estimate_flip_rate",
    "estimate_flip_rate_from_annotations",
    "pair_flip_rates_from_annotations",
    "oriented_pairs",
    "annotated_flip_rate",
    "flip_rate_refusal",
    "resolve_flip_rate",
    "annotation_columns",
    "pandalm_codes",
]

#: With ``fit_on="auto"``, a feature scorer is trained on the clean pairs when there are at least this many.
MIN_CLEAN_TO_FIT = 100
#: Where a feature scorer is trained: see the module docstring.
FIT_ON = ("auto", "clean", "noisy")
#: The interval half-width the refusal message sizes its advice for (how many pairs would give ±0.05).
TARGET_HALF_WIDTH = 0.05
#: Largest per-pair flip rate :meth:`PairFlipRates.usable` keeps: rDPO weighs a pair's two terms by
#: (1 − ε)/(1 − 2ε) and ε/(1 − 2ε), 3 and 2 at ε = 0.4 and unbounded as ε → 1/2, where one pair would dominate.
MAX_PAIR_FLIP_RATE = 0.4


def _texts(frame: pd.DataFrame, name: str) -> tuple[list[str], list[str], list[str]]:
    missing = {"chosen", "rejected"} - set(frame.columns)
    if missing:
        raise ValueError(f"{name} needs columns chosen and rejected; missing {sorted(missing)}")
    prompts = list(frame["prompt"]) if "prompt" in frame.columns else [""] * len(frame)
    return prompts, list(frame["chosen"]), list(frame["rejected"])


def _fixed_margins(scorer, prompts, first, second, name: str) -> np.ndarray:
    margins = np.asarray(scorer(prompts, first, second), dtype=np.float64)
    if margins.shape != (len(first),):
        raise ValueError(f"scorer {name!r} returned shape {margins.shape} for {len(first)} pairs; expected ({len(first)},)")
    if not np.all(np.isfinite(margins)):
        raise ValueError(f"scorer {name!r} returned NaN or infinite margins")
    return margins


def _confident_learning(margins: np.ndarray, *, seed: int, confidence: float) -> Estimate:
    """Confident learning on labelled pairs in random orientation, P(first better) = σ(margin)."""
    swap = np.random.default_rng(seed + 1).random(len(margins)) < 0.5
    oriented_labels = np.where(swap, 0, 1)
    p_first = 1.0 / (1.0 + np.exp(-np.where(swap, -margins, margins)))
    return flip_rate_confident_learning(oriented_labels, p_first, confidence=confidence)


def estimate_flip_rate(
    pairs: pd.DataFrame,
    *,
    clean_pairs: pd.DataFrame | None = None,
    scorer: str | object = "bow",
    fit_on: str = "auto",
    n_folds: int = 5,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Estimate the flip rate of labelled pairs (columns ``chosen``, ``rejected``, optional ``prompt``).

    Args:
        pairs: the (possibly flipped) training pairs, n rows.
        clean_pairs: optional pairs with correct labels (same columns, >= 10 rows). With them, the scorer
            method (ε = (d − e)/(1 − 2e)); without, confident learning in random orientation.
        scorer: a name in :data:`alignment.scorers.SCORERS` (``"bow"``, ``"embeddings"``; ``"reward-model"``
            needs a path: pass ``make_scorer("reward-model", path=...)``), a feature scorer (an object with
            ``features(prompts, responses) -> (n, d)``; cross-fitted here) or any callable
            ``f(prompts, first, second) -> (n,) margins`` that never trained on these pairs (used as it is).
        fit_on: where a feature scorer is trained when ``clean_pairs`` are given: ``"clean"`` (cross-fitted on
            the clean pairs), ``"noisy"`` (cross-fitted on ``pairs``), ``"auto"`` = ``"clean"`` when there are at
            least :data:`MIN_CLEAN_TO_FIT` clean pairs, else ``"noisy"``. Without clean pairs it is trained on
            ``pairs``.
        n_folds: folds of the cross-fitting.
        seed: folds, fold-model draws and orientation.
        confidence: level of the interval.

    Returns:
        :class:`robustrec.noise.Estimate` (method ``"scorer"`` or ``"confident_learning"``) with everything
        ``estimate-flip-rate --json`` writes: ``value`` (NaN when not identifiable), ``ci_low``, ``ci_high``,
        ``method``, ``n``, ``identifiable``, ``reason``, and in ``details``: ``scorer`` (its name), ``fit_on``
        and, with clean pairs, ``clean_error`` (with its interval), ``n_clean`` and ``disagreement``.
        ``to_dict()`` gives them as one flat JSON-safe dict. Decide with :func:`resolve_flip_rate`.

    Raises:
        ValueError: unknown ``scorer`` or ``fit_on``, missing columns, too few pairs, or a scorer returning
            margins of the wrong shape or non-finite ones.
    """
    if fit_on not in FIT_ON:
        raise ValueError(f"fit_on must be one of {', '.join(FIT_ON)}; got {fit_on!r}")
    if isinstance(scorer, str):
        scorer = make_scorer(scorer)
    name = scorer_name(scorer)
    if not is_feature_scorer(scorer) and not callable(scorer):
        raise TypeError(f"scorer must be one of {SCORERS}, an object with features(prompts, responses), or a callable "
                        f"f(prompts, first, second) -> margins; got {type(scorer).__name__}")
    prompts, chosen, rejected = _texts(pairs, "pairs")
    clean = _texts(clean_pairs, "clean_pairs") if clean_pairs is not None else None
    details: dict[str, str | int] = {"scorer": name}
    if not is_feature_scorer(scorer):
        details["fit_on"] = "fixed"
        margins = _fixed_margins(scorer, prompts, chosen, rejected, name)
        clean_margins = _fixed_margins(scorer, *clean, name) if clean else None
    else:
        if hasattr(scorer, "prepare"):
            scorer.prepare([*chosen, *rejected, *(clean[1] + clean[2] if clean else [])])
        x = pair_differences(scorer, prompts, chosen, rejected)
        options = {"n_folds": n_folds, "seed": seed, "l2": getattr(scorer, "l2", 1e-3),
                   "standardize": getattr(scorer, "standardize", False)}
        details["n_folds"] = n_folds
        if clean is None:
            details["fit_on"] = "noisy"
            margins, clean_margins = cross_fit(x, **options).margins, None
        else:
            xc = pair_differences(scorer, *clean)
            where = fit_on if fit_on != "auto" else ("clean" if len(xc) >= MIN_CLEAN_TO_FIT else "noisy")
            details["fit_on"] = where
            if where == "clean":
                fitted = cross_fit(xc, **options)
                clean_margins, margins = fitted.margins, fitted.fold_margins(x, seed=seed + 1)
            else:
                fitted = cross_fit(x, **options)
                margins, clean_margins = fitted.margins, fitted.fold_margins(xc, seed=seed + 1)
    if clean_margins is None:
        estimate = _confident_learning(margins, seed=seed, confidence=confidence)
    else:
        ones, clean_ones = np.ones(len(margins), dtype=np.int64), np.ones(len(clean_margins), dtype=np.int64)
        estimate = flip_rate_from_scorer(margins, ones, clean_margins, clean_ones, confidence=confidence)
    return replace(estimate, details={**estimate.details, **details})


# ----------------------------------------------------------------------------------------------- decision rule


class FlipRateRefusedError(ValueError):
    """``flip_rate="auto"`` refused: the estimate is not identifiable or its interval is too wide.

    The message says why and what would fix it. Attributes: ``estimate`` (the :class:`Estimate`) and
    ``max_ci_width`` (the threshold it was held to)."""

    def __init__(self, message: str, estimate: Estimate, max_ci_width: float):
        super().__init__(message)
        self.estimate = estimate
        self.max_ci_width = max_ci_width


def _agreement_pairs_needed(agreement: float, half_width: float, confidence: float) -> float:
    """Doubly-annotated pairs for ±half_width at agreement a: SE(ε) = SE(a) / (2√(2a − 1))."""
    if agreement <= 0.5:
        return float("inf")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return float(np.ceil(agreement * (1 - agreement) * (z / (half_width * 2 * np.sqrt(2 * agreement - 1))) ** 2))


def _remedies(estimate: Estimate) -> list[str]:
    """What would make the estimate identifiable and precise: more or better data, per method."""
    d = estimate.details
    hw = TARGET_HALF_WIDTH
    out = []
    if estimate.method == "scorer":
        e, dis, n_clean = float(d["clean_error"]), float(d["disagreement"]), int(d["n_clean"])
        # Sized at the clean error the interval itself uses (Agresti–Coull: a clean error of 0 on a few pairs
        # is not taken as certain), so that the advice matches the interval one would get.
        z2 = NormalDist().inv_cdf(0.5 + estimate.confidence / 2) ** 2
        e_adjusted = (e * n_clean + z2 / 2) / (n_clean + z2)
        need = scorer_sample_sizes(e_adjusted, dis, estimate.n, half_width=hw, confidence=estimate.confidence)
        if e >= 0.5:
            out.append(f"a stronger scorer: this one ({d.get('scorer', 'scorer')}) errs on {e:.3f} of the clean pairs, "
                       "no better than chance, so no number of clean pairs helps")
        elif np.isfinite(need.clean_pairs):
            out.append(f"more clean pairs: at the measured clean error e = {e:.3f}, about {need.clean_pairs:,.0f} "
                       f"clean pairs (you have {n_clean}) would give a ±{hw} interval")
        else:
            out.append(f"more data: at e = {e:.3f} no number of clean pairs gives ±{hw} with {estimate.n} noisy pairs; "
                       f"that needs at least {need.noisy_pairs:,.0f} noisy pairs, or a stronger scorer")
        out.append(f"a stronger scorer (now {d.get('scorer', 'given')}; choices: {', '.join(SCORERS)}): the "
                   "interval's width grows like 1/(1 − 2e)")
    elif estimate.method == "confident_learning":
        dis = float(d["disagreement"])
        need = scorer_sample_sizes(min(dis, 0.499), dis, estimate.n, half_width=hw, confidence=estimate.confidence)
        clean = f"about {need.clean_pairs:,.0f}" if np.isfinite(need.clean_pairs) else "many"
        out.append(f"clean pairs (clean_pairs= / --clean-data): without them noisy labels only bound ε from above; at "
                   f"the scorer's disagreement d = {dis:.3f} (an upper bound of its clean error) {clean} clean pairs "
                   f"would give ±{hw}")
        out.append(f"a stronger scorer (now {d.get('scorer', 'given')}; choices: {', '.join(SCORERS)})")
    elif estimate.method == "agreement":
        need = _agreement_pairs_needed(float(d["agreement"]), hw, estimate.confidence)
        count = f"about {need:,.0f}" if np.isfinite(need) else "more"
        out.append(f"more doubly-annotated pairs: at the measured agreement {float(d['agreement']):.3f}, {count} "
                   f"pairs (you have {estimate.n}) would give ±{hw}; or a third annotator (Dawid–Skene)")
    elif estimate.method == "dawid_skene":
        out.append(f"more annotated items or more annotators per item (now {estimate.n} items, "
                   f"{d.get('n_annotators', '?')} annotators)")
    if estimate.method != "dawid_skene":
        out.append("repeated annotations: two or more annotator columns identify ε without any scorer (Dawid–Skene)")
    out.append("or a fallback flip rate (fallback= / --flip-rate-fallback X) to train with anyway")
    return out


def flip_rate_refusal(estimate: Estimate, *, max_ci_width: float = DEFAULT_MAX_CI_WIDTH) -> str | None:
    """Why ``flip_rate="auto"`` may not train with ``estimate``, and what would fix it; None when it may.

    The rule (:func:`robustrec.noise.precise_enough`): the estimate must be identifiable and its interval at
    most ``max_ci_width`` wide."""
    if precise_enough(estimate.ci_low, estimate.ci_high, estimate.identifiable, max_ci_width=max_ci_width):
        return None
    interval = f"[{estimate.ci_low:.3f}, {estimate.ci_high:.3f}]"
    if not estimate.identifiable:
        why = f"the flip rate is not identifiable from these data ({estimate.method}, {interval}): {estimate.reason}"
    else:
        why = (f"the flip-rate estimate {estimate.value:.3f} is too imprecise: its {estimate.confidence:.0%} interval "
               f"{interval} is {estimate.width:.3f} wide, more than max_ci_width = {max_ci_width:.2f} ({estimate.method})")
    return f"flip_rate='auto' refused: {why}. What would fix it: " + "; ".join(_remedies(estimate)) + "."


def resolve_flip_rate(
    estimate: Estimate, *, max_ci_width: float = DEFAULT_MAX_CI_WIDTH, fallback: float | None = None
) -> float:
    """The flip rate ``flip_rate="auto"`` trains with: the estimate's value, or ``fallback``, or an error.

    Args:
        estimate: from :func:`estimate_flip_rate` or :func:`estimate_flip_rate_from_annotations`.
        max_ci_width: widest acceptable interval (default ±0.1); see :func:`flip_rate_refusal`.
        fallback: used, with a logged warning saying why, when the estimate is refused; must lie in [0, 0.5).

    Raises:
        FlipRateRefusedError: the estimate is refused and no fallback is given (the message says why and what
            would fix it: clean pairs for ±0.05 at the measured error, repeated annotations, a stronger scorer).
        ValueError: ``fallback`` outside [0, 0.5).
    """
    if fallback is not None:
        fallback = check_flip_rate(fallback)
    problem = flip_rate_refusal(estimate, max_ci_width=max_ci_width)
    if problem is None:
        return float(estimate.value)
    if fallback is None:
        raise FlipRateRefusedError(problem, estimate, max_ci_width)
    logger.warning("%s Training with the fallback flip rate %.4f.", problem, fallback)
    return fallback


# ----------------------------------------------------------------------------------------------- annotations


def estimate_flip_rate_from_annotations(annotations: np.ndarray, *, seed: int = 0) -> Estimate:
    """Flip rate of a single annotation from repeated annotations (n_pairs, n_annotators) coded 1 = first
    better, 0 = second better, 2 = tie, -1 = missing (see :func:`robustrec.noise.flip_rate.preference_codes`).
    Ties are left out and counted in ``Estimate.n_excluded``. Two annotators: agreement formula; three or
    more: Dawid–Skene. (Labels that combine several annotations are cleaner than one annotation: their own
    rate is :attr:`PairFlipRates.label_flip_rate`.)"""
    annotations = _annotation_matrix(annotations)
    if annotations.shape[1] == 2:
        return flip_rate_from_agreement(annotations[:, 0], annotations[:, 1], ties="drop")
    return flip_rate_dawid_skene(annotations, ties="drop", seed=seed).flip_rate


def _annotation_matrix(annotations: np.ndarray) -> np.ndarray:
    annotations = np.asarray(annotations)
    if annotations.ndim != 2 or annotations.shape[1] < 2:
        raise ValueError(f"annotations must have shape (n_pairs, n_annotators >= 2); got {annotations.shape}")
    return annotations


@dataclass(frozen=True)
class PairFlipRates:
    """Each pair's flip probability for the label it is trained with (:func:`pair_flip_rates_from_annotations`).

    Attributes:
        labels: (n,) the training label of each pair: 1 first response better, 0 second, -1 none (no usable
            annotation: leave the pair out).
        rates: (n,) ε_i = P(true preference ≠ labels[i] | the pair's annotations), in [0, 1/2] for the default
            majority labels; NaN where ``labels`` is -1. ε_i = 1/2: the annotations cancel out, the pair carries
            no preference (rDPO's 1/(1 − 2ε_i) is undefined: leave it out).
        estimate: the flip rate of a single annotation (Dawid–Skene, pooled for two annotators), with its interval.
        label_flip_rate: mean of ``rates`` over the pairs training keeps (:meth:`usable`): the expected share of
            flipped training labels (smaller than ``estimate.value`` when labels are majority votes).
    """

    labels: np.ndarray
    rates: np.ndarray
    estimate: Estimate
    label_flip_rate: float

    def usable(self, max_rate: float = MAX_PAIR_FLIP_RATE) -> np.ndarray:
        """(n,) bool: pairs with a label and ``rates <= max_rate``, the ones a per-pair rDPO loss should weight
        (a pair whose annotators split has ε_i near 1/2 and carries no preference)."""
        return (self.labels >= 0) & (np.nan_to_num(self.rates, nan=1.0) <= max_rate)


def pair_flip_rates_from_annotations(
    annotations: np.ndarray, *, labels: np.ndarray | None = None, seed: int = 0
) -> PairFlipRates:
    """Dawid–Skene posterior flip probability of each pair's training label, for a per-pair rDPO loss.

    Args:
        annotations: (n, n_annotators >= 2) codes as in :func:`estimate_flip_rate_from_annotations` (ties
            dropped as missing labels). Two annotators: one pooled flip rate (the only one two identify).
        labels: (n,) the labels training will use (1 first better, 0 second better); default: each pair's most
            probable true label (a weighted majority vote).

    Returns:
        :class:`PairFlipRates`. Weighting pair i's rDPO loss by its ε_i keeps the loss unbiased given the
        annotations (a pair whose annotators agree gets ε_i near 0, a split pair a larger ε_i).
    """
    annotations = _annotation_matrix(annotations)
    confusion = "pooled" if annotations.shape[1] == 2 else "symmetric"
    fit = flip_rate_dawid_skene(annotations, confusion=confusion, ties="drop", seed=seed)
    if labels is None:
        labels = fit.map_labels()
        rates = fit.pair_flip_rates()
    else:
        labels = np.asarray(labels)
        rates = fit.pair_flip_rates(labels)
        labels = np.where(np.isnan(rates), -1, labels)
    found = PairFlipRates(labels=labels.astype(np.int64), rates=rates, estimate=fit.flip_rate,
                          label_flip_rate=float("nan"))
    usable = found.usable()  # the pairs training keeps (oriented_pairs, the annotated data format)
    mean = float(np.mean(rates[usable])) if usable.any() else float("nan")
    return replace(found, label_flip_rate=mean)


def annotated_flip_rate(rates: PairFlipRates, *, max_ci_width: float = DEFAULT_MAX_CI_WIDTH,
                        fallback: float | None = None) -> float:
    """The one ε ``flip_rate="auto"`` trains annotated pairs with, each oriented by its most probable preference:
    the expected share of flipped labels among them (:attr:`PairFlipRates.label_flip_rate`, smaller than one
    annotation's rate when labels combine several annotators), once the Dawid–Skene fit it comes from passes
    :func:`resolve_flip_rate` (identifiable, interval at most ``max_ci_width`` wide); else ``fallback`` or
    :class:`FlipRateRefusedError`."""
    if flip_rate_refusal(rates.estimate, max_ci_width=max_ci_width) is None:
        return float(rates.label_flip_rate)
    return resolve_flip_rate(rates.estimate, max_ci_width=max_ci_width, fallback=fallback)  # falls back or raises


def oriented_pairs(
    prompts: Sequence[str],
    first: Sequence[str],
    second: Sequence[str],
    flip_rates: PairFlipRates,
    *,
    max_rate: float = MAX_PAIR_FLIP_RATE,
) -> pd.DataFrame:
    """Training pairs from annotated response pairs, each with its own flip rate, for a per-pair rDPO loss.

    Args:
        prompts, first, second: (n,) the prompt and the two responses of each annotated pair.
        flip_rates: from :func:`pair_flip_rates_from_annotations` on the same n pairs.
        max_rate: pairs whose rate exceeds it (or without a label) are left out (:meth:`PairFlipRates.usable`).

    Returns:
        DataFrame with ``prompt``, ``chosen``, ``rejected`` (oriented by ``flip_rates.labels``), ``flip_rate``
        (ε_i of that orientation) and ``row`` (the pair's 0-based position in the input).
    """
    n = len(flip_rates.labels)
    if not len(prompts) == len(first) == len(second) == n:
        raise ValueError(f"prompts, first, second and flip_rates must describe the same pairs; got lengths "
                         f"{len(prompts)}, {len(first)}, {len(second)} and {n}")
    keep = np.flatnonzero(flip_rates.usable(max_rate))
    first_better = flip_rates.labels[keep] == 1
    first_arr, second_arr = np.asarray(first, dtype=object)[keep], np.asarray(second, dtype=object)[keep]
    return pd.DataFrame({
        "prompt": np.asarray(prompts, dtype=object)[keep],
        "chosen": np.where(first_better, first_arr, second_arr),
        "rejected": np.where(first_better, second_arr, first_arr),
        "flip_rate": flip_rates.rates[keep],
        "row": keep,
    })


def annotation_columns(frame: pd.DataFrame) -> list[str]:
    """Names of the annotator columns of a frame: ``annotator1``, ``annotator2``, ... in order."""
    columns = sorted((c for c in frame.columns if re.fullmatch(r"annotator\d+", str(c))), key=lambda c: int(c[9:]))
    return columns


def pandalm_codes(frame: pd.DataFrame) -> np.ndarray:
    """(n, n_annotators) codes from PandaLM's coding (0 tie, 1 response1 better, 2 response2 better)."""
    columns = annotation_columns(frame)
    if len(columns) < 2:
        raise ValueError(f"need at least two annotator columns (annotator1, annotator2, ...); found {list(frame.columns)}")
    raw = frame[columns].apply(pd.to_numeric, errors="raise").to_numpy()
    return preference_codes(raw, first=1, second=2, tie=0)
