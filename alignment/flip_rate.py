"""Flip-rate estimation for preference pairs: text features, a cross-fitted scorer, and the glue to
:mod:`robustrec.noise`.

Two situations:

- **Pairs with one label each** (the training data of DPO). A cheap scorer — logistic regression on the
  difference of the two completions' bag-of-words counts, ``P(chosen ≻ rejected) = σ(w·(φ(chosen) − φ(rejected)))``
  trained with torch — is cross-fitted (K folds: each pair is scored by a model that never saw it). Then

  * with a small **clean** set (pairs whose labels are known to be right), ε = (d − e)/(1 − 2e) from the
    scorer's disagreement d with the noisy labels and its error e on the clean set
    (:func:`robustrec.noise.flip_rate.flip_rate_from_scorer`);
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

from robustrec.noise.estimate import Estimate
from robustrec.noise.flip_rate import (
    flip_rate_confident_learning,
    flip_rate_dawid_skene,
    flip_rate_from_agreement,
    flip_rate_from_scorer,
    preference_codes,
)

_WORD = re.compile(r"[a-z']+")


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


def fit_pair_logistic(features: torch.Tensor, *, l2: float = 1e-2, steps: int = 100) -> torch.Tensor:
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
    l2: float = 1e-2,
    max_words: int = 300,
) -> tuple[np.ndarray, BagOfWords, torch.Tensor]:
    """Out-of-fold scorer margins ``w·(φ(chosen) − φ(rejected))`` for each labelled pair.

    Returns:
        ``(margins, features, w_folds)``: (n,) out-of-fold margins (> 0: the scorer agrees with the label),
        the fitted :class:`BagOfWords`, and (n_folds, d) the fold models' weights. Score other pairs with
        the fold models' mean margin, so that they see the same scorer as the cross-fitted pairs.
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


def estimate_flip_rate(
    pairs: pd.DataFrame,
    *,
    clean_pairs: pd.DataFrame | None = None,
    n_folds: int = 5,
    seed: int = 0,
) -> Estimate:
    """Estimate the flip rate of labelled pairs (columns ``chosen``, ``rejected``; the prompt is ignored).

    Args:
        pairs: the (possibly flipped) training pairs, n rows.
        clean_pairs: optional pairs with correct labels (same columns, >= 10 rows). With them, the scorer
            method (ε = (d − e)/(1 − 2e)); without, confident learning in random orientation.
        n_folds: folds of the cross-fitted bag-of-words scorer.
        seed: folds, orientation and bootstrap seed.

    Returns:
        :class:`robustrec.noise.Estimate` (method ``"scorer"`` or ``"confident_learning"``).
    """
    margins, bag, w_folds = cross_fitted_margins(
        list(pairs["chosen"]), list(pairs["rejected"]), n_folds=n_folds, seed=seed
    )
    labels = np.ones(len(margins), dtype=np.int64)  # "first (= chosen) better" as labelled
    if clean_pairs is not None:
        clean_x = bag(list(clean_pairs["chosen"])) - bag(list(clean_pairs["rejected"]))
        clean_margins = (clean_x @ w_folds.T).mean(dim=1).numpy()
        return flip_rate_from_scorer(
            margins, labels, clean_margins, np.ones(len(clean_margins), dtype=np.int64), kind="margin", seed=seed
        )
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
