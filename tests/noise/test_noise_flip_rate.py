"""Recovery of known flip rates by every flip-rate estimator, and their error cases.

Tolerances (|estimate − truth|), fixed seeds: 0.06 at n = 2,000 and 0.02 at n = 20,000 (several standard
errors: at ε = 0.4 the agreement estimator's SE is ≈ 0.028 at n = 2,000, since dε/da = −1/(2√(2a−1))).
"""

import numpy as np
import pytest

from robustrec.noise import (
    FLIP_RATE_METHODS,
    Estimate,
    agreement_to_flip_rate,
    apply_flips,
    flip_pairs,
    flip_posterior,
    flip_rate_confident_learning,
    flip_rate_dawid_skene,
    flip_rate_from_agreement,
    flip_rate_from_scorer,
    pairwise_agreement,
    preference_codes,
)
from robustrec.noise.simulate import simulate_annotations, simulate_scorer

RATES = (0.1, 0.2, 0.3, 0.4)
TOL = {2000: 0.06, 20000: 0.02}


def _estimate(method: str, n: int, eps: float, seed: int, n_resamples: int = 100) -> Estimate:
    sim = simulate_annotations(n, (eps, eps, eps), seed=seed)
    if method == "agreement":
        return flip_rate_from_agreement(sim.annotations[:, 0], sim.annotations[:, 1], n_resamples=n_resamples, seed=seed)
    if method == "dawid_skene":
        return flip_rate_dawid_skene(sim.annotations, n_resamples=n_resamples // 2, seed=seed).flip_rate
    labels = apply_flips(sim.true, flip_pairs(n, eps, seed=seed))
    if method == "scorer":
        scorer = simulate_scorer(sim.true, 0.85, seed=seed + 1)
        clean_true = np.random.default_rng(seed + 2).integers(0, 2, n // 2)
        clean = simulate_scorer(clean_true, 0.85, seed=seed + 3)
        return flip_rate_from_scorer(scorer.margin, labels, clean.margin, clean_true, n_resamples=n_resamples, seed=seed)
    if method == "confident_learning":
        # A strong out-of-fold scorer (99% accurate): CL counts a scorer's confident mistakes as flips.
        scorer = simulate_scorer(sim.true, 0.99, flip_rate=eps, seed=seed + 1)
        return flip_rate_confident_learning(labels, scorer.p_label_first, n_resamples=n_resamples, seed=seed)
    raise AssertionError(method)


@pytest.mark.parametrize("method", FLIP_RATE_METHODS)
@pytest.mark.parametrize("n", sorted(TOL))
@pytest.mark.parametrize("eps", RATES)
def test_recovers_known_flip_rate(method, n, eps):
    est = _estimate(method, n, eps, seed=11)
    assert est.method == method
    assert abs(est.value - eps) <= TOL[n], est
    assert est.ci_low <= est.value <= est.ci_high
    assert 0.0 <= est.ci_low and est.ci_high <= 0.5


@pytest.mark.parametrize("method", FLIP_RATE_METHODS)
def test_interval_covers_truth_most_of_the_time(method):
    hits = sum(_estimate(method, 2000, 0.2, seed=s, n_resamples=80).contains(0.2) for s in range(10))
    assert hits >= 7


@pytest.mark.parametrize("method", FLIP_RATE_METHODS)
def test_no_noise_gives_about_zero(method):
    assert _estimate(method, 2000, 0.0, seed=3).value <= 0.02


def test_agreement_formula_and_bounds():
    assert agreement_to_flip_rate(1.0) == 0.0
    eps = 0.25
    assert agreement_to_flip_rate((1 - eps) ** 2 + eps**2) == pytest.approx(eps)
    with pytest.raises(ValueError, match="0.5"):
        agreement_to_flip_rate(0.5)
    a = np.array([1, 0] * 50)
    with pytest.raises(ValueError, match="not identify"):
        flip_rate_from_agreement(a, 1 - a)  # agreement 0


def test_agreement_ties_explicit():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 200)
    b = a.copy()
    b[:20] = 2  # ties
    with pytest.raises(ValueError, match="tie"):
        flip_rate_from_agreement(a, b)
    est = flip_rate_from_agreement(a, b, ties="drop")
    assert est.n == 180 and est.n_excluded == 20 and est.value == 0.0
    with pytest.raises(ValueError, match="ties must be one of"):
        flip_rate_from_agreement(a, b, ties="ignore")


def test_too_few_pairs_and_bad_codes():
    with pytest.raises(ValueError, match="too few"):
        flip_rate_from_agreement(np.array([1, 0, 1]), np.array([1, 0, 1]))
    with pytest.raises(ValueError, match="preference_codes"):
        flip_rate_from_agreement(np.full(20, 3), np.full(20, 1))


def test_preference_codes_pandalm_style():
    raw = np.array([0, 1, 2, 1])
    assert preference_codes(raw, first=1, second=2, tie=0).tolist() == [2, 1, 0, 1]
    with pytest.raises(ValueError, match="match none"):
        preference_codes(np.array([5]), first=1, second=2)


def test_dawid_skene_per_annotator_rates_and_agreement_fit():
    sim = simulate_annotations(20000, (0.05, 0.2, 0.35), seed=5)
    res = flip_rate_dawid_skene(sim.annotations, n_resamples=20)
    np.testing.assert_allclose(res.annotator_flip_rates, [0.05, 0.2, 0.35], atol=0.02)
    np.testing.assert_allclose(res.predicted_agreement(), pairwise_agreement(sim.annotations), atol=0.015)
    np.testing.assert_allclose(res.confusion.sum(axis=1), 1.0)
    # posterior agrees with the truth far better than a single annotator
    assert np.mean((res.posterior > 0.5) == sim.true) > 0.93
    full = flip_rate_dawid_skene(sim.annotations, confusion="full", n_resamples=20)
    assert abs(full.flip_rate.value - res.flip_rate.value) < 0.01


def test_dawid_skene_missing_and_ties():
    sim = simulate_annotations(3000, (0.1, 0.1, 0.1, 0.1), seed=2)
    x = sim.annotations.astype(float)
    rng = np.random.default_rng(0)
    x[rng.random(x.shape) < 0.3] = np.nan
    x[0, :] = np.nan  # an item with no label
    res = flip_rate_dawid_skene(x, n_resamples=20)
    assert abs(res.flip_rate.value - 0.1) < 0.03
    n_empty = int(np.isnan(x).all(axis=1).sum())
    assert np.isnan(res.posterior[0]) and res.flip_rate.n_excluded == n_empty >= 1
    assert res.flip_rate.n == 3000 - n_empty
    x2 = np.where(np.isnan(x), -1, x).astype(int)
    x2[1:11, 0] = 2
    with pytest.raises(ValueError, match="ties"):
        flip_rate_dawid_skene(x2)
    assert flip_rate_dawid_skene(x2, ties="drop", n_resamples=10).n_ties_dropped == 10


def test_dawid_skene_errors():
    sim = simulate_annotations(100, (0.1, 0.1), seed=0)
    with pytest.raises(ValueError, match="at least 3 annotators"):
        flip_rate_dawid_skene(sim.annotations)
    with pytest.raises(ValueError, match="same label"):
        flip_rate_dawid_skene(np.ones((50, 3), int))
    with pytest.raises(ValueError, match="confusion must be one of"):
        flip_rate_dawid_skene(simulate_annotations(50, (0.1,) * 3).annotations, confusion="diag")


def test_scorer_errors_and_clipping():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    good = (2 * y - 1).astype(float)
    with pytest.raises(ValueError, match="no information"):
        flip_rate_from_scorer(good, y, -good, y)  # e = 1 on the clean set
    # labels cleaner than the clean set suggests: d < e -> clipped to 0
    noisy_pred = good.copy()
    noisy_pred[:100] *= -1
    est = flip_rate_from_scorer(good, y, noisy_pred, y, n_resamples=50)
    assert est.value == 0.0
    with pytest.raises(ValueError, match=">= 0.5"):
        flip_rate_from_scorer(good, 1 - y, good, y)
    with pytest.raises(ValueError, match="probabilities"):
        flip_rate_from_scorer(good, y, good, y, kind="probability")


def test_confident_learning_flip_rate_errors():
    y = np.array([0, 1] * 20)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        flip_rate_confident_learning(y, np.linspace(-1, 2, 40))
    with pytest.raises(ValueError, match="one class"):
        flip_rate_confident_learning(np.ones(40, int), np.full(40, 0.7))


def test_flip_posterior_ranks_flipped_pairs_first():
    sim = simulate_annotations(4000, (0.0,), seed=1)
    mask = flip_pairs(4000, 0.2, seed=2)
    y = apply_flips(sim.true, mask)
    q = simulate_scorer(sim.true, 0.9, seed=3).p_true_first
    post = flip_posterior(y, q, 0.2)
    top = np.argsort(-post)[: mask.sum()]
    assert mask[top].mean() > 0.7
    assert abs(post.mean() - 0.2) < 0.03  # calibrated posterior: mean = flip rate
    with pytest.raises(ValueError):
        flip_posterior(y, q, 0.5)
