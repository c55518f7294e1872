"""Recovery of known flip rates by every flip-rate estimator, their refusals and error cases.

Tolerances (|estimate − truth|), fixed seeds: 0.06 at n = 2,000 and 0.02 at n = 20,000 (several standard
errors: at ε = 0.4 the agreement estimator's SE is ≈ 0.028 at n = 2,000, since dε/da = −1/(2√(2a−1))).
Coverage of the intervals is tested on many simulated trials in test_noise_flip_rate_coverage.py.
"""

import json
import warnings

import numpy as np
import pytest

from robustrec.noise import (
    DEFAULT_MAX_CI_WIDTH,
    FLIP_RATE_METHODS,
    Estimate,
    agreement_flip_rate_bounds,
    agreement_to_flip_rate,
    apply_flips,
    flip_pairs,
    flip_posterior,
    flip_rate_confident_learning,
    flip_rate_dawid_skene,
    flip_rate_from_agreement,
    flip_rate_from_scorer,
    pairwise_agreement,
    precise_enough,
    preference_codes,
    scorer_flip_rate_bounds,
    scorer_sample_sizes,
)
from robustrec.noise.flip_rate import wilson_interval
from robustrec.noise.simulate import simulate_annotations, simulate_scorer

RATES = (0.1, 0.2, 0.3, 0.4)
TOL = {2000: 0.06, 20000: 0.02}


def _estimate(method: str, n: int, eps: float, seed: int, n_resamples: int = 100) -> Estimate:
    sim = simulate_annotations(n, (eps, eps, eps), seed=seed)
    if method == "agreement":
        return flip_rate_from_agreement(sim.annotations[:, 0], sim.annotations[:, 1])
    if method == "dawid_skene":
        return flip_rate_dawid_skene(sim.annotations, n_resamples=n_resamples // 2, seed=seed).flip_rate
    labels = apply_flips(sim.true, flip_pairs(n, eps, seed=seed))
    if method == "scorer":
        scorer = simulate_scorer(sim.true, 0.85, seed=seed + 1)
        clean_true = np.random.default_rng(seed + 2).integers(0, 2, n // 2)
        clean = simulate_scorer(clean_true, 0.85, seed=seed + 3)
        return flip_rate_from_scorer(scorer.margin, labels, clean.margin, clean_true)
    if method == "confident_learning":
        # A strong out-of-fold scorer (99% accurate): CL counts a scorer's confident mistakes as flips.
        scorer = simulate_scorer(sim.true, 0.99, flip_rate=eps, seed=seed + 1)
        return flip_rate_confident_learning(labels, scorer.p_label_first)
    raise AssertionError(method)


@pytest.mark.parametrize("method", FLIP_RATE_METHODS)
@pytest.mark.parametrize("n", sorted(TOL))
@pytest.mark.parametrize("eps", RATES)
def test_recovers_known_flip_rate(method, n, eps):
    est = _estimate(method, n, eps, seed=11)
    assert est.method == method
    assert abs(est.value - eps) <= TOL[n], est
    assert (-0.5 if method == "scorer" else 0.0) <= est.ci_low <= est.ci_high <= 0.5  # scorer: lower end unclipped
    if method not in ("agreement", "dawid_skene") or eps < 0.4 or n > 2000:
        assert est.identifiable, est  # annotators at ε = 0.4 agree on ≈ 0.52 of pairs: weak at n = 2,000


@pytest.mark.parametrize("method", FLIP_RATE_METHODS)
def test_no_noise_gives_about_zero(method):
    assert _estimate(method, 2000, 0.0, seed=3).value <= 0.02


def test_estimate_keeps_its_interval_and_serialises():
    skewed = Estimate(value=0.3, ci_low=0.1, ci_high=0.2, method="x", n=10)  # nothing widens it any more
    assert (skewed.ci_low, skewed.ci_high) == (0.1, 0.2) and not skewed.contains(0.3)
    refused = Estimate(value=float("nan"), ci_low=0.0, ci_high=0.5, method="scorer", n=50, identifiable=False,
                       reason="scorer near chance", details={"clean_error": 0.47, "n_clean": np.int64(40)})
    out = json.loads(json.dumps(refused.to_dict(), allow_nan=False))
    assert out["value"] is None and out["identifiable"] is False and out["reason"] == "scorer near chance"
    assert out["clean_error"] == 0.47 and out["n_clean"] == 40
    assert "not identifiable: scorer near chance" in str(refused)
    with pytest.raises(ValueError, match="finite value"):
        Estimate(value=float("nan"), ci_low=0.0, ci_high=0.5, method="x", n=1)
    with pytest.raises(ValueError, match="say why"):
        Estimate(value=float("nan"), ci_low=0.0, ci_high=0.5, method="x", n=1, identifiable=False)
    with pytest.raises(ValueError, match="ci_low"):
        Estimate(value=0.1, ci_low=0.2, ci_high=0.1, method="x", n=1)
    with pytest.raises(ValueError, match="field names"):
        Estimate(value=0.1, ci_low=0.0, ci_high=0.2, method="x", n=1, details={"value": 1.0})


def test_agreement_formula_and_refusal():
    assert agreement_to_flip_rate(1.0) == 0.0
    eps = 0.25
    assert agreement_to_flip_rate((1 - eps) ** 2 + eps**2) == pytest.approx(eps)
    with pytest.raises(ValueError, match="0.5"):
        agreement_to_flip_rate(0.5)
    a = np.array([1, 0] * 50)
    refused = flip_rate_from_agreement(a, 1 - a)  # agreement 0: refused, not 0.5
    assert not refused.identifiable and np.isnan(refused.value) and "does not identify" in refused.reason
    weak = flip_rate_from_agreement(a, np.where(np.arange(100) < 48, 1 - a, a))  # a = 0.52 on 100 pairs
    assert not weak.identifiable and weak.ci_high == 0.5 and "not significantly above 0.5" in weak.reason
    assert 0.0 < weak.value < 0.5


def test_agreement_interval_is_the_mapped_wilson_interval():
    # ε(a) is decreasing, so the interval's ends are ε at the Wilson ends of a (n = 400, a = 0.8: ε ≈ 0.113)
    sim = simulate_annotations(400, (0.0, 0.0), seed=0)
    b = sim.annotations[:, 1].copy()
    b[:80] = 1 - b[:80]
    est = flip_rate_from_agreement(sim.annotations[:, 0], b)
    lo, hi = wilson_interval(320, 400)
    assert est.ci_low == pytest.approx(agreement_to_flip_rate(hi)) and est.ci_high == pytest.approx(agreement_to_flip_rate(lo))
    vec = agreement_flip_rate_bounds(np.array([0.8, 0.5, 1.0]), 400)
    assert vec.value[0] == pytest.approx(est.value) and np.isnan(vec.value[1]) and vec.value[2] == 0.0
    assert vec.identifiable.tolist() == [True, False, True] and vec.ci_low[2] == 0.0


def test_resampling_options_are_deprecated_not_silently_used():
    a = np.array([1, 0] * 50)
    with pytest.warns(DeprecationWarning, match="ignored"):
        flip_rate_from_agreement(a, a, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flip_rate_from_agreement(a, a)


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
    with pytest.raises(ValueError, match="confusion='pooled'"):
        flip_rate_dawid_skene(sim.annotations)
    with pytest.raises(ValueError, match="same label"):
        flip_rate_dawid_skene(np.ones((50, 3), int))
    with pytest.raises(ValueError, match="confusion must be one of"):
        flip_rate_dawid_skene(simulate_annotations(50, (0.1,) * 3).annotations, confusion="diag")
    single = np.full((50, 3), -1)
    single[np.arange(50), np.arange(50) % 3] = np.arange(50) % 2
    with pytest.raises(ValueError, match="two or more usable labels"):
        flip_rate_dawid_skene(single)


def test_two_annotators_who_always_disagree_are_refused_consistently():
    a = np.array([1, 0] * 50)
    with_empty_column = np.stack([a, 1 - a, np.full(100, -1)], axis=1)
    with pytest.raises(ValueError, match="two annotators .* 1 without labels"):
        flip_rate_dawid_skene(with_empty_column)  # formerly 0.5 with the interval [0.5, 0.5]
    pooled = flip_rate_dawid_skene(with_empty_column, confusion="pooled").flip_rate
    agreement = flip_rate_from_agreement(a, 1 - a)
    for est in (pooled, agreement):
        assert not est.identifiable and np.isnan(est.value) and est.reason
    assert "agree with each other no more than chance" in pooled.reason


def test_dawid_skene_two_annotators_pooled_matches_agreement():
    sim = simulate_annotations(3000, (0.2, 0.2), seed=4)
    pooled = flip_rate_dawid_skene(sim.annotations, confusion="pooled", n_resamples=200).flip_rate
    agreement = flip_rate_from_agreement(sim.annotations[:, 0], sim.annotations[:, 1])
    assert pooled.identifiable and pooled.value == pytest.approx(agreement.value, abs=2e-3)
    assert pooled.ci_low == pytest.approx(agreement.ci_low, abs=0.01)
    assert pooled.ci_high == pytest.approx(agreement.ci_high, abs=0.01)


def test_dawid_skene_refuses_a_contrary_annotator_and_weak_agreement():
    a = np.array([1, 0] * 50)
    contrary = flip_rate_dawid_skene(np.stack([a, 1 - a, a], axis=1), n_resamples=50).flip_rate
    assert not contrary.identifiable and np.isnan(contrary.value) and "contradicts" in contrary.reason
    weak = flip_rate_dawid_skene(simulate_annotations(200, (0.4, 0.4, 0.4), seed=1).annotations, n_resamples=50)
    assert not weak.flip_rate.identifiable and (weak.flip_rate.ci_low, weak.flip_rate.ci_high) == (0.0, 0.5)
    assert "not significantly above 1/2" in weak.flip_rate.reason


def test_dawid_skene_unanimous_annotators_get_an_upper_bound():
    y = np.random.default_rng(0).integers(0, 2, 300)
    est = flip_rate_dawid_skene(np.stack([y, y, y], axis=1)).flip_rate
    assert est.value == 0.0 and est.ci_low == 0.0 and est.identifiable
    # Clopper–Pearson: 0 of 300 items disagree -> q <= 1 - 0.025^(1/300) ≈ 0.0122 -> ε <= 0.0062
    assert est.ci_high == pytest.approx((1 - np.sqrt(1 - 2 * (1 - 0.025 ** (1 / 300)))) / 2, rel=1e-6)
    assert est.contains(0.005) and not est.contains(0.01)


def test_pair_flip_rates_are_calibrated_posteriors():
    sim = simulate_annotations(6000, (0.1, 0.25, 0.3), seed=9)
    res = flip_rate_dawid_skene(sim.annotations, n_resamples=20)
    map_labels = res.map_labels()
    rates = res.pair_flip_rates()
    wrong = map_labels != sim.true
    assert 0.0 <= rates.min() and rates.max() <= 0.5
    assert rates.mean() == pytest.approx(wrong.mean(), abs=0.01)  # calibrated: expected = realised share
    # pairs with a wrong majority label get higher rates (ranking), and binned rates match realised shares
    assert rates[wrong].mean() > 3 * rates[~wrong].mean()
    for lo, hi in ((0.0, 0.05), (0.05, 0.5)):
        sel = (rates >= lo) & (rates < hi)
        assert rates[sel].mean() == pytest.approx(wrong[sel].mean(), abs=0.03)
    # the rate of the labels one annotator gave: about that annotator's flip rate
    first = res.pair_flip_rates(sim.annotations[:, 0])
    assert first.mean() == pytest.approx(sim.is_flipped[:, 0].mean(), abs=0.01)
    with pytest.raises(ValueError, match="one per item"):
        res.pair_flip_rates(sim.annotations[:10, 0])


def test_scorer_refusals_and_clipping():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    good = (2 * y - 1).astype(float)
    useless = flip_rate_from_scorer(good, y, -good, y)  # e = 1 on the clean set
    assert not useless.identifiable and np.isnan(useless.value) and "no information" in useless.reason
    assert useless.details["clean_error"] == 1.0
    # labels cleaner than the clean set suggests: d < e -> clipped to 0, the raw value kept
    noisy_pred = good.copy()
    noisy_pred[:100] *= -1
    est = flip_rate_from_scorer(good, y, noisy_pred, y)
    assert est.value == 0.0 and est.details["raw_value"] < 0 and est.ci_low < est.details["raw_value"]
    flipped = flip_rate_from_scorer(good, 1 - y, good, y)
    assert not flipped.identifiable and np.isnan(flipped.value) and ">= 1/2" in flipped.reason
    with pytest.raises(ValueError, match="probabilities"):
        flip_rate_from_scorer(good, y, good, y, kind="probability")


def test_scorer_near_chance_is_not_identifiable_and_says_why():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 2, 2000)
    clean_true = rng.integers(0, 2, 300)
    labels = apply_flips(true, flip_pairs(2000, 0.2, seed=2))
    weak, weak_clean = simulate_scorer(true, 0.51, seed=3), simulate_scorer(clean_true, 0.51, seed=4)
    est = flip_rate_from_scorer(weak.margin, labels, weak_clean.margin, clean_true)
    assert not est.identifiable and (est.ci_low, est.ci_high) == (0.0, 0.5) and np.isnan(est.value)
    assert "too close to chance" in est.reason and "clean pairs" in est.reason
    assert est.details["n_clean"] == 300 and 0.4 < est.details["clean_error"] < 0.6
    # a little better than chance (e ≈ 0.44 here): bounded, identifiable, but far too wide to train with
    better, better_clean = simulate_scorer(true, 0.53, seed=3), simulate_scorer(clean_true, 0.53, seed=4)
    wide = flip_rate_from_scorer(better.margin, labels, better_clean.margin, clean_true)
    assert wide.identifiable and wide.contains(0.2) and wide.width > 0.4
    assert not precise_enough(wide.ci_low, wide.ci_high, wide.identifiable)


def test_scorer_interval_matches_its_vectorised_form():
    sim = simulate_annotations(1500, (0.0,), seed=5)
    labels = apply_flips(sim.true, flip_pairs(1500, 0.25, seed=6))
    clean_true = np.random.default_rng(7).integers(0, 2, 400)
    s, sc = simulate_scorer(sim.true, 0.8, seed=8), simulate_scorer(clean_true, 0.8, seed=9)
    est = flip_rate_from_scorer(s.margin, labels, sc.margin, clean_true)
    d = np.mean((s.margin > 0) != labels)
    e = np.mean((sc.margin > 0) != clean_true)
    vec = scorer_flip_rate_bounds(np.array([d]), 1500, np.array([e]), 400)
    assert (est.value, est.ci_low, est.ci_high) == pytest.approx((vec.value[0], vec.ci_low[0], vec.ci_high[0]))
    assert est.details["disagreement"] == pytest.approx(d) and est.details["clean_error"] == pytest.approx(e)


def test_sample_sizes_give_the_promised_half_width():
    e, eps, n = 0.3, 0.2, 5000
    d = e + eps * (1 - 2 * e)
    need = scorer_sample_sizes(e, d, n, half_width=0.05)
    b = scorer_flip_rate_bounds(d, n, e, need.clean_pairs)
    assert (b.ci_high - b.ci_low) / 2 == pytest.approx(0.05, abs=0.005)
    fewer = scorer_flip_rate_bounds(d, n, e, need.clean_pairs / 2)
    assert (fewer.ci_high - fewer.ci_low) / 2 > 0.06
    assert scorer_sample_sizes(e, d, 100).clean_pairs == float("inf")  # 100 noisy pairs can never do it
    assert scorer_sample_sizes(e, d, 100).noisy_pairs > 100
    assert scorer_sample_sizes(0.5, 0.5, 100) == (float("inf"), float("inf"))


def test_precise_enough_is_the_documented_rule():
    assert precise_enough(0.1, 0.09 + DEFAULT_MAX_CI_WIDTH, True)
    assert not precise_enough(0.1, 0.11 + DEFAULT_MAX_CI_WIDTH, True)
    assert not precise_enough(0.1, 0.12, False)
    out = precise_enough(np.array([0.0, 0.0]), np.array([0.1, 0.3]), np.array([True, True]), max_ci_width=0.25)
    assert out.tolist() == [True, False]
    with pytest.raises(ValueError, match="max_ci_width"):
        precise_enough(0.0, 0.1, True, max_ci_width=0.0)


def test_confident_learning_flip_rate_errors():
    y = np.array([0, 1] * 20)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        flip_rate_confident_learning(y, np.linspace(-1, 2, 40))
    with pytest.raises(ValueError, match="one class"):
        flip_rate_confident_learning(np.ones(40, int), np.full(40, 0.7))


def test_confident_learning_bounds_honestly_and_refuses_broken_probabilities():
    sim = simulate_annotations(3000, (0.0,), seed=1)
    labels = apply_flips(sim.true, flip_pairs(3000, 0.1, seed=2))
    weak = flip_rate_confident_learning(labels, simulate_scorer(sim.true, 0.7, flip_rate=0.1, seed=3).p_label_first)
    # a weak scorer: confident learning overestimates (it counts the scorer's mistakes), the interval is [0, u]
    # with u the disagreement's upper bound, wide enough to cover the truth and too wide to train with
    assert weak.value > 0.2 and weak.ci_low == 0.0 and weak.contains(0.1)
    assert weak.ci_high == pytest.approx(weak.details["disagreement"], abs=0.03)
    assert not precise_enough(weak.ci_low, weak.ci_high, weak.identifiable)
    assert "partially identified" in weak.reason
    # near-constant probabilities (a scorer at chance): confident learning's number breaks the bound -> refused
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    broken = flip_rate_confident_learning(y, 0.5 + 0.02 * rng.standard_normal(500))
    assert not broken.identifiable and np.isnan(broken.value) and "miscalibrated" in broken.reason
    assert broken.details["confident_learning"] > 0.5


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
