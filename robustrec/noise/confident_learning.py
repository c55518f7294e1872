"""Confident learning: the joint distribution of observed and true labels from out-of-sample probabilities.

Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 70 (2021).
Section 2.1 defines the per-class thresholds (eq. 2) and the confident joint ``C[ỹ][y*]`` (eq. 1); section
2.2 calibrates it to the observed label counts (eq. 3) and normalises it into the joint ``Q[ỹ][y*]``, from
which the noise matrix, the inverse noise matrix and the prior of the true labels follow by marginalising.

Conventions (those of cleanlab): ``labels`` are the observed (possibly noisy) labels ``ỹ``; ``pred_probs``
are *out-of-sample* predicted probabilities of ``ỹ`` (cross-validated or from a held-out model), one row per
example. Row index ``i`` of the joint is the observed label, column ``j`` the true label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ConfidentLearningResult",
    "validate_labels_and_probs",
    "class_thresholds",
    "confident_joint",
    "estimate_joint",
    "joint_to_noise_matrix",
    "joint_to_inverse_noise_matrix",
    "estimate_confident_learning",
    "noise_matrix",
    "inverse_noise_matrix",
    "class_prior",
    "MIN_EXAMPLES_PER_CLASS",
]

#: Fewer labelled examples than this in some class make the thresholds meaningless.
MIN_EXAMPLES_PER_CLASS = 2

_ROW_SUM_TOL = 1e-4


@dataclass(frozen=True)
class ConfidentLearningResult:
    """Everything confident learning estimates, for K classes.

    Attributes:
        thresholds: (K,) per-class thresholds ``t_j`` (eq. 2).
        confident_joint: (K, K) integer counts ``C[ỹ=i][y*=j]`` (eq. 1), uncalibrated.
        joint: (K, K) ``Q[i][j] = P(ỹ=i, y*=j)``, calibrated and summing to 1 (eq. 3).
        noise_matrix: (K, K) ``P(ỹ=i | y*=j)``; each column sums to 1.
        inverse_noise_matrix: (K, K) ``P(y*=j | ỹ=i)`` stored as ``[j][i]`` (cleanlab's layout: row = true,
            column = observed); each column sums to 1.
        prior: (K,) ``P(y*=j)``, the column sums of ``joint``.
        observed_prior: (K,) ``P(ỹ=i)``, the observed label frequencies.
        n: number of examples.
    """

    thresholds: np.ndarray
    confident_joint: np.ndarray
    joint: np.ndarray
    noise_matrix: np.ndarray
    inverse_noise_matrix: np.ndarray
    prior: np.ndarray
    observed_prior: np.ndarray
    n: int

    @property
    def noise_rate(self) -> float:
        """Share of examples whose observed label differs from the true one: off-diagonal mass of ``joint``."""
        return float(1.0 - np.trace(self.joint))


def validate_labels_and_probs(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert ``labels`` (n,) and ``pred_probs`` (n, K); raise ``ValueError`` on bad input.

    Returns the arrays as ``int64`` and ``float64``. Checks: 2-D probabilities with K >= 2 columns, values
    in [0, 1], rows summing to 1, integer labels in ``[0, K)``, every class observed at least
    ``MIN_EXAMPLES_PER_CLASS`` times.
    """
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    labels_arr = np.asarray(labels)
    if pred_probs.ndim != 2:
        raise ValueError(f"pred_probs must have shape (n, K); got shape {pred_probs.shape}")
    n, k = pred_probs.shape
    if k < 2:
        raise ValueError(f"pred_probs needs at least 2 columns (classes); got {k}")
    if labels_arr.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match pred_probs; got {labels_arr.shape}")
    if not np.all(np.isfinite(pred_probs)):
        raise ValueError("pred_probs contains NaN or infinite values")
    if pred_probs.min() < 0.0 or pred_probs.max() > 1.0:
        raise ValueError(
            f"pred_probs must be probabilities in [0, 1]; got values in [{pred_probs.min():.4g}, {pred_probs.max():.4g}]"
            " (pass probabilities, not logits or margins)"
        )
    row_sums = pred_probs.sum(axis=1)
    bad = np.abs(row_sums - 1.0) > _ROW_SUM_TOL
    if bad.any():
        raise ValueError(
            f"each row of pred_probs must sum to 1; {int(bad.sum())} rows do not (first: row "
            f"{int(np.flatnonzero(bad)[0])} sums to {row_sums[bad][0]:.6g})"
        )
    if labels_arr.dtype.kind == "f":
        if not np.all(np.isfinite(labels_arr)) or np.any(labels_arr != np.round(labels_arr)):
            raise ValueError("labels must be integers")
    elif labels_arr.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers; got dtype {labels_arr.dtype}")
    labels_int = labels_arr.astype(np.int64)
    if n and (labels_int.min() < 0 or labels_int.max() >= k):
        raise ValueError(f"labels must be in [0, {k}); got values in [{labels_int.min()}, {labels_int.max()}]")
    counts = np.bincount(labels_int, minlength=k)
    present = int((counts > 0).sum())
    if present < 2:
        raise ValueError(
            "only one class is present in labels: confident learning compares each class's threshold with the "
            "others, so with a single observed class the noise matrix and the true-class prior are not "
            "identifiable"
        )
    if counts.min() < MIN_EXAMPLES_PER_CLASS:
        raise ValueError(
            f"too few examples: every class needs at least {MIN_EXAMPLES_PER_CLASS} labelled examples to set its "
            f"threshold; class counts are {counts.tolist()}"
        )
    return labels_int, pred_probs


def class_thresholds(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Per-class thresholds ``t_j``: the mean self-confidence of the examples labelled ``j`` (section 2.1, eq. 2).

    Args:
        labels: (n,) observed labels in ``[0, K)``.
        pred_probs: (n, K) out-of-sample predicted probabilities.

    Returns:
        (K,) array, ``t_j = mean(pred_probs[labels == j, j])``.
    """
    labels, pred_probs = validate_labels_and_probs(labels, pred_probs)
    return _thresholds(labels, pred_probs)


def _thresholds(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    k = pred_probs.shape[1]
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.bincount(labels, weights=pred_probs[np.arange(len(labels)), labels], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def _confident_joint(labels: np.ndarray, pred_probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    k = pred_probs.shape[1]
    above = pred_probs >= thresholds[None, :] - 1e-12
    has_any = above.any(axis=1)
    # Among the classes above their threshold, the confident guess of y* is the most probable one.
    guess = np.argmax(np.where(above, pred_probs, -np.inf), axis=1)
    keys = labels[has_any] * k + guess[has_any]
    return np.bincount(keys, minlength=k * k).reshape(k, k)


def confident_joint(labels: np.ndarray, pred_probs: np.ndarray, *, calibrate: bool = True) -> np.ndarray:
    """The confident joint ``C[ỹ=i][y*=j]`` (section 2.1, eq. 1).

    Example ``x`` with observed label ``i`` is counted in ``C[i][j]`` when ``pred_probs[x, j] >= t_j``; when
    several classes pass their thresholds, ``j`` is the one with the largest probability; an example passing
    none is not counted.

    Args:
        labels: (n,) observed labels in ``[0, K)``.
        pred_probs: (n, K) out-of-sample predicted probabilities (rows sum to 1).
        calibrate: if true (default), rescale each row so that it sums to the number of examples observed with
            that label (eq. 3, before normalisation); if false, the raw counts.

    Returns:
        (K, K) float64 array (whole numbers when ``calibrate`` is false), rows = observed, columns = true label.
    """
    labels, pred_probs = validate_labels_and_probs(labels, pred_probs)
    cj = _confident_joint(labels, pred_probs, _thresholds(labels, pred_probs))
    if calibrate:
        return _calibrate(cj, np.bincount(labels, minlength=pred_probs.shape[1]))
    return cj.astype(np.float64)


def _calibrate(cj: np.ndarray, label_counts: np.ndarray) -> np.ndarray:
    cj = cj.astype(np.float64)
    row = cj.sum(axis=1)
    out = np.zeros_like(cj)
    ok = row > 0
    out[ok] = cj[ok] / row[ok, None] * label_counts[ok, None]
    # A label whose examples are never confidently assigned anywhere: assume they are correct (diagonal).
    idx = np.flatnonzero(~ok)
    out[idx, idx] = label_counts[idx]
    return out


def estimate_joint(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """The calibrated joint ``Q[i][j] = P(ỹ=i, y*=j)`` (section 2.2, eq. 3); (K, K), sums to 1.

    Rows of the confident joint are rescaled to the observed label counts, then the matrix is divided by ``n``.
    """
    return estimate_confident_learning(labels, pred_probs).joint


def noise_matrix(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """(K, K) ``P(ỹ=i | y*=j)`` estimated by confident learning; columns sum to 1. See
    :func:`estimate_confident_learning` for the inputs."""
    return estimate_confident_learning(labels, pred_probs).noise_matrix


def inverse_noise_matrix(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """(K, K) ``P(y*=j | ỹ=i)`` stored as ``[j][i]``; columns sum to 1. See :func:`estimate_confident_learning`."""
    return estimate_confident_learning(labels, pred_probs).inverse_noise_matrix


def class_prior(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """(K,) prior of the true labels ``P(y*=j)`` (column sums of the calibrated joint)."""
    return estimate_confident_learning(labels, pred_probs).prior


def joint_to_noise_matrix(joint: np.ndarray) -> np.ndarray:
    """``P(ỹ=i | y*=j) = Q[i][j] / sum_i Q[i][j]``; columns sum to 1.

    A true class that receives no mass (never confidently seen) gets an identity column: no evidence of noise.
    """
    joint = np.asarray(joint, dtype=np.float64)
    col = joint.sum(axis=0)
    out = np.eye(joint.shape[0])
    ok = col > 0
    out[:, ok] = joint[:, ok] / col[None, ok]
    return out


def joint_to_inverse_noise_matrix(joint: np.ndarray) -> np.ndarray:
    """``P(y*=j | ỹ=i)`` stored as ``[j][i]`` (row = true, column = observed); columns sum to 1."""
    joint = np.asarray(joint, dtype=np.float64)
    row = joint.sum(axis=1)
    out = np.eye(joint.shape[0])
    ok = row > 0
    out[:, ok] = joint[ok, :].T / row[None, ok]
    return out


def estimate_confident_learning(labels: np.ndarray, pred_probs: np.ndarray) -> ConfidentLearningResult:
    """Run confident learning end to end (sections 2.1-2.2) and return every estimated quantity.

    Args:
        labels: (n,) observed (noisy) labels, integers in ``[0, K)``; every class must occur at least
            ``MIN_EXAMPLES_PER_CLASS`` times.
        pred_probs: (n, K) out-of-sample predicted probabilities of the observed label (e.g. from K-fold
            cross-fitting); rows sum to 1.

    Assumptions: the noise is class-conditional (``P(ỹ | y*, x) = P(ỹ | y*)``) and ``pred_probs`` are
    reasonably calibrated; the estimates are exact for "ideal" probabilities (Theorem 1) and robust to
    per-example errors otherwise (section 3).

    Raises:
        ValueError: probabilities outside [0, 1] or rows not summing to 1, labels out of range, a single class,
            or too few examples per class.
    """
    labels, pred_probs = validate_labels_and_probs(labels, pred_probs)
    return _estimate(labels, pred_probs)


def _estimate(labels: np.ndarray, pred_probs: np.ndarray) -> ConfidentLearningResult:
    k = pred_probs.shape[1]
    n = len(labels)
    thresholds = _thresholds(labels, pred_probs)
    cj = _confident_joint(labels, pred_probs, thresholds)
    label_counts = np.bincount(labels, minlength=k)
    joint = _calibrate(cj, label_counts) / n
    return ConfidentLearningResult(
        thresholds=thresholds,
        confident_joint=cj,
        joint=joint,
        noise_matrix=joint_to_noise_matrix(joint),
        inverse_noise_matrix=joint_to_inverse_noise_matrix(joint),
        prior=joint.sum(axis=0),
        observed_prior=label_counts / n,
        n=n,
    )
