"""Confident learning recovers a known noise matrix from calibrated synthetic probabilities (binary and 3-class)."""

import numpy as np
import pytest

from robustrec.noise import (
    class_prior,
    class_thresholds,
    confident_joint,
    estimate_confident_learning,
    estimate_joint,
    flip_labels,
    inverse_noise_matrix,
    noise_matrix,
)


def _synthetic(true_nm: np.ndarray, prior: np.ndarray, n: int, seed: int, sharpness: float = 0.97):
    """True labels from ``prior``; pred_probs = P(observed | x) for an x whose true class is nearly certain
    (probability ``sharpness``): the calibrated out-of-sample probabilities of a strong model."""
    rng = np.random.default_rng(seed)
    k = len(prior)
    true = rng.choice(k, size=n, p=prior)
    flipped = flip_labels(true, true_nm, seed=seed + 1)
    # P(y* | x): mostly on the true class, the rest spread at random
    p_true = rng.dirichlet(np.ones(k), size=n) * (1 - sharpness)
    p_true[np.arange(n), true] += sharpness
    pred_probs = p_true @ true_nm.T  # P(ỹ = i | x) = Σ_j P(ỹ = i | y* = j) P(y* = j | x)
    return true, flipped, pred_probs


CASES = {
    "binary": (np.array([[0.8, 0.3], [0.2, 0.7]]), np.array([0.6, 0.4])),
    "3-class": (
        np.array([[0.8, 0.1, 0.15], [0.1, 0.75, 0.05], [0.1, 0.15, 0.8]]),
        np.array([0.5, 0.3, 0.2]),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_recovers_noise_matrix(case):
    nm, prior = CASES[case]
    true, flipped, probs = _synthetic(nm, prior, 20000, seed=1)
    res = estimate_confident_learning(flipped.labels, probs)
    np.testing.assert_allclose(res.noise_matrix, nm, atol=0.03)
    np.testing.assert_allclose(res.prior, prior, atol=0.03)
    np.testing.assert_allclose(res.noise_matrix.sum(axis=0), 1.0)
    np.testing.assert_allclose(res.inverse_noise_matrix.sum(axis=0), 1.0)
    assert res.joint.sum() == pytest.approx(1.0)
    # joint matches the empirical joint of (observed, true)
    k = len(prior)
    emp = np.bincount(flipped.labels * k + true, minlength=k * k).reshape(k, k) / len(true)
    np.testing.assert_allclose(res.joint, emp, atol=0.02)
    assert res.noise_rate == pytest.approx(flipped.is_flipped.mean(), abs=0.02)
    # inverse = P(true | observed), stored [true][observed]
    inv_emp = (emp / emp.sum(axis=1, keepdims=True)).T
    np.testing.assert_allclose(res.inverse_noise_matrix, inv_emp, atol=0.03)
    # the thin wrappers agree with the result
    np.testing.assert_allclose(noise_matrix(flipped.labels, probs), res.noise_matrix)
    np.testing.assert_allclose(inverse_noise_matrix(flipped.labels, probs), res.inverse_noise_matrix)
    np.testing.assert_allclose(class_prior(flipped.labels, probs), res.prior)
    np.testing.assert_allclose(estimate_joint(flipped.labels, probs), res.joint)


def test_thresholds_and_confident_joint_by_hand():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_allclose(class_thresholds(labels, probs), [0.6, 0.6])
    # ex0: p0 .9 >= .6 -> (0,0); ex1: p1 .7 -> (0,1); ex2: p1 .8 -> (1,1); ex3: p0 .6 >= .6 -> (1,0)
    np.testing.assert_array_equal(confident_joint(labels, probs, calibrate=False), [[1, 1], [1, 1]])
    assert confident_joint(labels, probs).sum() == pytest.approx(4)


def test_no_noise_identity():
    nm = np.eye(3)
    _, flipped, probs = _synthetic(nm, np.array([0.4, 0.3, 0.3]), 3000, seed=2)
    res = estimate_confident_learning(flipped.labels, probs)
    np.testing.assert_allclose(res.noise_matrix, nm, atol=0.01)


@pytest.mark.parametrize(
    "labels, probs, match",
    [
        (np.array([0, 1, 0, 1]), np.array([[1.2, -0.2], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]), r"\[0, 1\]"),
        (np.array([0, 1, 0, 1]), np.array([[0.6, 0.6], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]), "sum to 1"),
        (np.array([0, 2, 0, 1]), np.full((4, 2), 0.5), "labels must be in"),
        (np.zeros(4, int), np.full((4, 2), 0.5), "only one class"),
        (np.array([0, 0, 0, 1]), np.full((4, 2), 0.5), "too few"),
        (np.array([0, 1]), np.full((2,), 0.5), "shape"),
    ],
)
def test_bad_inputs_raise(labels, probs, match):
    with pytest.raises(ValueError, match=match):
        estimate_confident_learning(labels, probs)
