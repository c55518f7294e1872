"""Storey's π0 on p-values: the noisy share when noise is exchangeable with sampled unobserved items.

Synthetic mixture: a share π0 of Uniform(0, 1) nulls (the injected random items) and 1 − π0 clean p-values
from Beta(0.3, 8) (a good model: P(p > 0.8) ≈ 1e-6), 20,000 p-values over 500 users. Stated tolerance:
|estimate − π0| <= 0.02 and π0 inside the 95% interval, at π0 ∈ {0.05, 0.1, 0.2, 0.4}; with no noise the
estimate is <= 0.02. With a weak model (clean Beta(0.7, 2), P(p > 0.8) ≈ 0.03) the estimate is biased up by
about P(p_clean > λ)/(1 − λ), as documented — the test pins the direction.
"""

import numpy as np
import pytest

from robustrec.noise import noise_scores_from_pvalues, noisy_share_from_pvalues


def _mixture(pi0, n=20000, n_users=500, clean=(0.3, 8.0), seed=0):
    rng = np.random.default_rng(seed)
    is_null = rng.random(n) < pi0
    p = np.where(is_null, rng.random(n), rng.beta(*clean, size=n))
    users = rng.integers(0, n_users, n)
    return p, users, is_null


@pytest.mark.parametrize("pi0", [0.05, 0.1, 0.2, 0.4])
def test_recovers_null_share(pi0):
    p, users, is_null = _mixture(pi0, seed=int(pi0 * 100))
    truth = is_null.mean()
    est = noisy_share_from_pvalues(p, users=users, n_resamples=100)
    assert abs(est.value - truth) <= 0.02, est
    assert est.contains(truth), (est, truth)
    assert est.method.startswith("storey_pi0(lambda=")
    assert est.n == len(p)
    assert est.ci_high - est.ci_low < 0.05


def test_interaction_bootstrap_without_users():
    p, _, is_null = _mixture(0.2, seed=7)
    est = noisy_share_from_pvalues(p, n_resamples=200)
    assert abs(est.value - is_null.mean()) <= 0.02 and est.contains(is_null.mean()), est


def test_no_noise_gives_about_zero():
    p, users, _ = _mixture(0.0, seed=3)
    est = noisy_share_from_pvalues(p, users=users, n_resamples=50)
    assert est.value <= 0.02 and est.ci_low >= 0.0, est


def test_all_noise_gives_about_one():
    p = np.random.default_rng(4).random(5000)
    est = noisy_share_from_pvalues(p, n_resamples=50)
    assert est.value >= 0.95 and est.ci_high <= 1.0, est


def test_weak_model_is_conservative():
    p, users, is_null = _mixture(0.1, clean=(0.7, 2.0), seed=5)
    est = noisy_share_from_pvalues(p, users=users, lam=0.8, n_resamples=20)
    clean = p[~is_null]
    bias = (1 - is_null.mean()) * (clean > 0.8).mean() / 0.2
    assert est.value > is_null.mean() + 0.05  # biased up, as documented
    assert est.value == pytest.approx(is_null.mean() + bias, abs=0.02)


def test_fixed_lambda_is_the_plain_formula():
    p, _, _ = _mixture(0.3, n=1000, seed=6)
    est = noisy_share_from_pvalues(p, lam=0.5, n_resamples=10)
    assert est.value == pytest.approx(min(1.0, (p > 0.5).sum() / (0.5 * len(p))))
    assert est.method == "storey_pi0(lambda=0.50)"


def test_seeded_and_deterministic():
    p, users, _ = _mixture(0.2, n=3000, seed=8)
    a = noisy_share_from_pvalues(p, users=users, n_resamples=30, seed=1)
    b = noisy_share_from_pvalues(p, users=users, n_resamples=30, seed=1)
    assert a == b


@pytest.mark.parametrize(
    "p, kwargs, message",
    [
        (np.full(50, 1.5), {}, r"in \[0, 1\]"),
        (np.r_[np.full(49, 0.5), np.nan], {}, r"in \[0, 1\]"),
        (np.full(50, -0.1), {}, r"in \[0, 1\]"),
        (np.full(5, 0.5), {}, "too few"),
        (np.full((10, 10), 0.5), {}, "1-D"),
        (np.full(50, 0.5), {"lam": 1.0}, "lam"),
        (np.full(50, 0.5), {"lam": "best"}, "lam"),
        (np.full(50, 0.5), {"users": np.zeros(49)}, "one entry per"),
        (np.full(50, 0.5), {"confidence": 1.5}, "confidence"),
        (np.full(50, 0.5), {"lambdas": ()}, "lambdas"),
    ],
)
def test_clear_errors(p, kwargs, message):
    with pytest.raises(ValueError, match=message):
        noisy_share_from_pvalues(p, **kwargs)


def test_noise_scores_rank_nulls_first_and_are_monotone():
    p, _, is_null = _mixture(0.2, seed=9)
    s = noise_scores_from_pvalues(p)
    assert s.shape == p.shape and s.min() >= 0 and s.max() <= 1
    order = np.argsort(p)
    assert (np.diff(s[order]) >= -1e-12).all()  # non-decreasing in p
    # mean posterior ≈ π0 (a calibrated local fdr), and high scores are mostly nulls
    assert s.mean() == pytest.approx(is_null.mean(), abs=0.03)
    assert is_null[s > 0.9].mean() > 0.9
    with pytest.raises(ValueError, match="pi0"):
        noise_scores_from_pvalues(p, pi0=1.5)
