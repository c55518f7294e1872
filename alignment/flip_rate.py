"""Flip-rate estimation for preference pairs: text features, a cross-fitted scorer, and the glue to
:mod:`robustrec.noise`.

Two situations:

- **Pairs with one label each** (the training data of DPO). A cheap scorer — logistic regression on the
  difference of the two completions' bag-of-words counts, ``P(chosen ≻ rejected) = σ(w·(φ(chosen) − φ(rejected)))``
  trained with torch — is cross-fitted (K folds: each pair is scored by a model that never saw it). Then

  * with a **clean** set (pairs whose labels are known to be right), ε = (d − e)/(1 − 2e) from the
    scorer's disagreement d with the noisy labels and its error e on the clean set
    (:func:`robustrec.noise.flip_rate.flip_rate_from_scorer`). By default (``fit_on="auto"``) the scorer is
    trained on the clean pairs themselves when there are at least :data:`MIN_CLEAN_TO_FIT` of them
    (cross-fitted there to measure e; every noisy pair is scored by one fold model drawn at random, so d and e
    are measured with the same scorer distribution). A scorer trained on the *noisy* pairs (``fit_on="noisy"``)
    learns from a signal weakened by 1 − 2ε: at ε = 0.4 it errs on ≈ 40 % of pairs even with a thousand of them,
    and the correction 1/(1 − 2e) turns that into intervals of ±0.2 or no estimate at all (measured on the
    controlled experiment of :mod:`alignment.experiment`). Trained on clean pairs, its error does not depend
    on ε.
  * without one, binary confident learning on the pairs in random orientation
    (:func:`robustrec.noise.flip_rate.flip_rate_confident_learning`). It counts every label that disagrees
    with what the scorer confidently believes, so label noise that is not a flip (e.g. Bradley–Terry
    sampling noise) is counted too: prefer a clean set when there is one.

- **Pairs with several annotations** (PandaLM's three annotators): Dawid–Skene EM, or the two-annotator
  agreement formula (:func:`estimate_flip_rate_from_annotations`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from robustrec.noise import (
    Estimate,
    flip_rate_confident_learning,
    flip_rate_dawid_skene,
    flip_rate_from_agreement,
    flip_rate_from_scorer,
    preference_codes,
)

_WORD = re.compile(r"[a-z']+")

#: With ``fit_on="auto"``, the scorer is trained on the clean pairs when there are at least this many.
MIN_CLEAN_TO_FIT = 100
#: Where the scorer is trained: see the module docstring.
FIT_ON = ("auto", "clean", "noisy")


def words(text: str) -> list[str]:
    """Lower-case word tokens of ``text``."""
    return _WORD.findall(text.lower())


class BagOfWords:
    """Word-count features over a fixed vocabulary (the ``max_words`` most frequent words of ``texts``)."""

    def __init__(self, texts: Sequence[str], *, max_words: int = 2000):
        counts = Counter(w for text in texts for w in words(text))
        self.vocabulary = {w: i for i, (w, _) in enumerate(counts.most_common(max_words))}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), n_words) float32 counts."""
        out = torch.zeros(len(texts), len(self.vocabulary))
        for row, text in enumerate(texts):
            for w in words(text):
                j = self.vocabulary.get(w)
                if j is not None:
                    out[row, j] += 1.0
        return out


def fit_pair_logistic(features: torch.Tensor, *, l2: float = 1e-3, steps: int = 100) -> torch.Tensor:
    """Weights w of ``P(first ≻ second) = σ(w·x)`` fitted to pairs all labelled "first better".

    Args:
        features: (n, d) differences φ(first) − φ(second) of the labelled pairs.
        l2: ridge penalty on w (per pair).
    Returns:
        (d,) weights. No intercept: swapping a pair negates x and the probability becomes 1 − p.
    """
    w = torch.zeros(features.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.softplus(-(features @ w)).mean() + l2 * (w @ w)
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def cross_fitted_margins(
    chosen: Sequence[str],
    rejected: Sequence[str],
    *,
    n_folds: int = 5,
    seed: int = 0,
    l2: float = 1e-3,
    max_words: int = 2000,
) -> tuple[np.ndarray, BagOfWords, torch.Tensor]:
    """Out-of-fold scorer margins ``w·(φ(chosen) − φ(rejected))`` for each labelled pair.

    Returns:
        ``(margins, features, w_folds)``: (n,) out-of-fold margins (> 0: the scorer agrees with the label),
        the fitted :class:`BagOfWords`, and (n_folds, d) the fold models' weights. Score other pairs with
        :func:`fold_margins` (one fold model each), so that they see the same scorer distribution as the
        cross-fitted pairs (the fold models' mean would be a better scorer than any fold, and its error would
        not be the one the cross-fitted margins carry).

    The defaults (``l2=1e-3``, ``max_words=2000``) were chosen on the controlled experiment: a penalty of
    1e-2 or 1e-1 shrinks the rare sentiment words' weights and raises the clean error; 1e-4 overfits.
    """
    n = len(chosen)
    if n < 2 * n_folds:
        raise ValueError(f"need at least {2 * n_folds} pairs for {n_folds}-fold cross-fitting; got {n}")
    bag = BagOfWords([*chosen, *rejected], max_words=max_words)
    x = bag(list(chosen)) - bag(list(rejected))
    folds = np.random.default_rng(seed).permutation(n) % n_folds
    margins = np.empty(n)
    weights = []
    for k in range(n_folds):
        test = torch.from_numpy(folds == k)
        w = fit_pair_logistic(x[~test], l2=l2)
        margins[test.numpy()] = (x[test] @ w).numpy()
        weights.append(w)
    return margins, bag, torch.stack(weights)


def fold_margins(bag: BagOfWords, w_folds: torch.Tensor, chosen: Sequence[str], rejected: Sequence[str], *,
                 seed: int = 0) -> np.ndarray:
    """(n,) margins of other pairs, each under one of the (n_folds, d) fold models (balanced, seeded)."""
    x = bag(list(chosen)) - bag(list(rejected))
    fold = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)) % w_folds.shape[0])
    return (x * w_folds[fold]).sum(dim=1).numpy()


def estimate_flip_rate(
    pairs: pd.DataFrame,
    *,
    clean_pairs: pd.DataFrame | None = None,
    fit_on: str = "auto",
    n_folds: int = 5,
    seed: int = 0,
    l2: float = 1e-3,
    max_words: int = 2000,
) -> Estimate:
    """Estimate the flip rate of labelled pairs (columns ``chosen``, ``rejected``; the prompt is ignored).

    Args:
        pairs: the (possibly flipped) training pairs, n rows.
        clean_pairs: optional pairs with correct labels (same columns, >= 10 rows). With them, the scorer
            method (ε = (d − e)/(1 − 2e)); without, confident learning in random orientation.
        fit_on: where the bag-of-words scorer is trained when ``clean_pairs`` are given: ``"clean"`` (cross-fitted
            on the clean pairs), ``"noisy"`` (cross-fitted on ``pairs``), ``"auto"`` = ``"clean"`` when there are
            at least :data:`MIN_CLEAN_TO_FIT` clean pairs, else ``"noisy"``. Without clean pairs it is always
            trained on ``pairs``.
        n_folds: folds of the cross-fitted bag-of-words scorer.
        seed: folds, orientation and bootstrap seed.
        l2, max_words: the scorer's ridge penalty and vocabulary size (:func:`cross_fitted_margins`).

    Returns:
        :class:`robustrec.noise.Estimate` (method ``"scorer"`` or ``"confident_learning"``).

    Raises:
        ValueError: unknown ``fit_on``; or from :func:`robustrec.noise.flip_rate_from_scorer` when the scorer
            carries no signal (clean error >= 1/2) or the implied ε >= 1/2.
    """
    if fit_on not in FIT_ON:
        raise ValueError(f"fit_on must be one of {', '.join(FIT_ON)}; got {fit_on!r}")
    chosen, rejected = list(pairs["chosen"]), list(pairs["rejected"])
    if clean_pairs is not None:
        clean_chosen, clean_rejected = list(clean_pairs["chosen"]), list(clean_pairs["rejected"])
        if fit_on == "auto":
            fit_on = "clean" if len(clean_chosen) >= MIN_CLEAN_TO_FIT else "noisy"
        if fit_on == "clean":
            clean_margins, bag, w_folds = cross_fitted_margins(
                clean_chosen, clean_rejected, n_folds=n_folds, seed=seed, l2=l2, max_words=max_words
            )
            margins = fold_margins(bag, w_folds, chosen, rejected, seed=seed + 1)
        else:
            margins, bag, w_folds = cross_fitted_margins(
                chosen, rejected, n_folds=n_folds, seed=seed, l2=l2, max_words=max_words
            )
            clean_margins = fold_margins(bag, w_folds, clean_chosen, clean_rejected, seed=seed + 1)
        return flip_rate_from_scorer(
            margins, np.ones(len(margins), dtype=np.int64), clean_margins,
            np.ones(len(clean_margins), dtype=np.int64), kind="margin", seed=seed,
        )
    margins, _, _ = cross_fitted_margins(chosen, rejected, n_folds=n_folds, seed=seed, l2=l2, max_words=max_words)
    swap = np.random.default_rng(seed + 1).random(len(margins)) < 0.5
    oriented_labels = np.where(swap, 0, 1)
    p_first = 1.0 / (1.0 + np.exp(-np.where(swap, -margins, margins)))
    return flip_rate_confident_learning(oriented_labels, p_first, seed=seed)


def estimate_flip_rate_from_annotations(annotations: np.ndarray, *, seed: int = 0) -> Estimate:
    """Flip rate from repeated annotations (n_pairs, n_annotators) coded 1 = first better, 0 = second better,
    2 = tie, -1 = missing (see :func:`robustrec.noise.flip_rate.preference_codes`). Ties are left out and
    counted in ``Estimate.n_excluded``. Two annotators: agreement formula; three or more: Dawid–Skene."""
    annotations = np.asarray(annotations)
    if annotations.ndim != 2 or annotations.shape[1] < 2:
        raise ValueError(f"annotations must have shape (n_pairs, n_annotators >= 2); got {annotations.shape}")
    if annotations.shape[1] == 2:
        return flip_rate_from_agreement(annotations[:, 0], annotations[:, 1], ties="drop", seed=seed)
    return flip_rate_dawid_skene(annotations, ties="drop", seed=seed).flip_rate


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
