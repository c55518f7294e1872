"""The "auto" flip rate on text pairs (alignment.flip_rate, alignment.scorers): recovery of injected flips,
the decision rule and its refusals, the scorers (bag of words, the policy's embeddings, a local reward model,
any callable) and per-pair rates from annotators.

Texts are random bags of words mixing neutral words with the experiment's sentiment lexicon; the true reward is
:func:`alignment.stories.sentiment_reward`, clean labels are Bradley–Terry at the experiment's temperature, and
exactly round(ε·n) training labels are then flipped.
"""

import json
import logging
import re
import zlib

import numpy as np
import pandas as pd
import pytest

from alignment.experiment import ExperimentSettings, inject_flips
from alignment.flip_rate import (
    DEFAULT_MAX_CI_WIDTH,
    MIN_CLEAN_TO_FIT,
    FlipRateRefusedError,
    estimate_flip_rate,
    flip_rate_refusal,
    oriented_pairs,
    pair_flip_rates_from_annotations,
    resolve_flip_rate,
)
from alignment.scorers import (
    SCORERS,
    BagOfWordsFeatures,
    EmbeddingFeatures,
    RewardModelScorer,
    cross_fit,
    make_scorer,
    pair_differences,
)
from alignment.stories import NEGATIVE_WORDS, POSITIVE_WORDS, sentiment_reward
from robustrec.noise import Estimate
from robustrec.noise.simulate import simulate_annotations

NEUTRAL = ("the dog ran to park and she he was a big red ball day mom tree sun went saw it then they play "
           "with toy box garden home").split()


def synthetic_pairs(n: int, *, seed: int, temperature: float = ExperimentSettings.bt_temperature) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    positive, negative = sorted(POSITIVE_WORDS), sorted(NEGATIVE_WORDS)
    rows = []
    while len(rows) < n:
        a, b = (" ".join(rng.choice(NEUTRAL, 12).tolist() + rng.choice(positive, rng.integers(0, 3)).tolist()
                         + rng.choice(negative, rng.integers(0, 3)).tolist()) for _ in range(2))
        ra, rb = sentiment_reward(a), sentiment_reward(b)
        if ra == rb:
            continue
        a_wins = rng.random() < 1.0 / (1.0 + np.exp(-(ra - rb) / temperature))
        rows.append({"prompt": "p", "chosen": a if a_wins else b, "rejected": b if a_wins else a})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def data():
    return synthetic_pairs(900, seed=0), synthetic_pairs(300, seed=1)


def lexicon_margins(prompts, first, second):
    """A fixed scorer: the true reward's difference (errs only where Bradley–Terry sampling went against it)."""
    return np.array([sentiment_reward(a) - sentiment_reward(b) for a, b in zip(first, second)], dtype=float)


def blurred_lexicon_margins(prompts, first, second):
    """A weaker fixed scorer (clean error ≈ 0.3): the reward difference plus noise fixed by the texts."""
    noise = [np.random.default_rng(zlib.crc32("|".join(sorted((a, b))).encode())).standard_normal()
             for a, b in zip(first, second)]
    sign = np.array([1.0 if a < b else -1.0 for a, b in zip(first, second)])  # swapping the pair negates it
    return lexicon_margins(prompts, first, second) + 3.0 * sign * np.abs(noise)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4])
def test_scorer_estimate_recovers_injected_flips(data, rate):
    train, clean = data
    noisy, mask = inject_flips(train, rate, seed=2)
    assert mask.mean() == pytest.approx(rate, abs=1e-3)
    estimate = estimate_flip_rate(noisy, clean_pairs=clean, seed=0)
    assert estimate.method == "scorer" and estimate.identifiable
    assert estimate.details["scorer"] == "bow" and estimate.details["fit_on"] == "clean"
    assert estimate.details["n_clean"] == len(clean) and 0 < estimate.details["clean_error"] < 0.3
    assert estimate.value == pytest.approx(rate, abs=0.05)
    assert estimate.contains(rate) and estimate.width < 0.2
    assert resolve_flip_rate(estimate) == estimate.value


def test_estimate_serialises_everything_the_cli_writes(data):
    train, clean = data
    out = json.loads(json.dumps(estimate_flip_rate(train, clean_pairs=clean).to_dict(), allow_nan=False))
    for key in ("value", "ci_low", "ci_high", "method", "n", "identifiable", "reason", "clean_error", "scorer"):
        assert key in out


def test_scorer_fitted_on_noisy_pairs_is_weaker_at_high_flip_rates(data):
    train, clean = data
    noisy, _ = inject_flips(train, 0.4, seed=2)
    on_clean = estimate_flip_rate(noisy, clean_pairs=clean, fit_on="clean", seed=0)
    on_noisy = estimate_flip_rate(noisy, clean_pairs=clean, fit_on="noisy", seed=0)
    assert on_noisy.details["clean_error"] > on_clean.details["clean_error"]
    assert not on_noisy.identifiable or on_noisy.width > on_clean.width


def test_fit_on_auto_uses_clean_pairs_only_when_there_are_enough(data, monkeypatch):
    train, clean = data
    import alignment.flip_rate as module

    fitted_sizes = []
    original = module.cross_fit

    def spy(x, **kwargs):
        fitted_sizes.append(len(x))
        return original(x, **kwargs)

    monkeypatch.setattr(module, "cross_fit", spy)
    estimate_flip_rate(train, clean_pairs=clean, seed=0)
    estimate_flip_rate(train, clean_pairs=clean.iloc[: MIN_CLEAN_TO_FIT - 1], seed=0)
    assert fitted_sizes == [len(clean), len(train)]
    with pytest.raises(ValueError, match="fit_on"):
        estimate_flip_rate(train, clean_pairs=clean, fit_on="both")


def test_fold_margins_use_one_fold_model_per_pair(data):
    train, _ = data
    bow = BagOfWordsFeatures()
    bow.prepare([*train["chosen"], *train["rejected"]])
    x = pair_differences(bow, list(train["prompt"]), list(train["chosen"]), list(train["rejected"]))
    fitted = cross_fit(x, n_folds=5, seed=0)
    assert fitted.margins.shape == (len(train),) and fitted.weights.shape[0] == 5
    assert (fitted.margins > 0).mean() > 0.8  # the bag-of-words scorer learns the lexicon reward
    other = fitted.fold_margins(x[:10], seed=0)
    per_fold = x[:10] @ fitted.weights.numpy().T
    assert all(np.isclose(per_fold[i], other[i], atol=1e-4).any() for i in range(10))


def test_any_callable_is_a_fixed_scorer(data):
    train, clean = data
    noisy, _ = inject_flips(train, 0.3, seed=4)
    estimate = estimate_flip_rate(noisy, clean_pairs=clean, scorer=lexicon_margins)
    assert estimate.details["scorer"] == "lexicon_margins" and estimate.details["fit_on"] == "fixed"
    assert estimate.identifiable and estimate.contains(0.3)
    with pytest.raises(ValueError, match="shape"):
        estimate_flip_rate(noisy, clean_pairs=clean, scorer=lambda p, a, b: np.zeros(3))
    with pytest.raises(ValueError, match="unknown scorer"):
        estimate_flip_rate(noisy, scorer="tfidf")


def test_refusal_says_why_and_how_many_clean_pairs(data, caplog):
    train, clean = data
    noisy, _ = inject_flips(train, 0.2, seed=2)
    small = estimate_flip_rate(noisy, clean_pairs=clean.iloc[:12], scorer=lexicon_margins)
    assert small.identifiable and small.width > DEFAULT_MAX_CI_WIDTH  # 12 clean pairs: too imprecise
    with pytest.raises(FlipRateRefusedError, match="too imprecise") as refused:
        resolve_flip_rate(small)
    message = str(refused.value)
    assert "repeated annotations" in message and "stronger scorer" in message and "--flip-rate-fallback" in message
    assert refused.value.estimate is small and isinstance(refused.value, ValueError)
    assert re.search(r"about [\d,]+ clean pairs \(you have 12\)", message)
    # the advice holds: with the number of clean pairs it names (sized at a measured e), the interval is ±0.05
    more_clean = synthetic_pairs(600, seed=1)  # begins with the same 300 pairs as `clean`
    measured = estimate_flip_rate(noisy, clean_pairs=more_clean.iloc[:60], scorer=lexicon_margins)
    advice = flip_rate_refusal(measured, max_ci_width=0.01)
    need = int(re.search(r"about ([\d,]+) clean pairs \(you have 60\)", advice).group(1).replace(",", ""))
    enough = estimate_flip_rate(noisy, clean_pairs=more_clean.iloc[:need], scorer=lexicon_margins)
    assert enough.width / 2 == pytest.approx(0.05, abs=0.015)
    with caplog.at_level(logging.WARNING, logger="alignment.flip_rate"):
        assert resolve_flip_rate(small, fallback=0.15) == 0.15
    assert "fallback flip rate 0.1500" in caplog.text and "too imprecise" in caplog.text
    assert resolve_flip_rate(small, max_ci_width=0.5) == small.value
    with pytest.raises(ValueError, match=r"\[0, 0.5\)"):
        resolve_flip_rate(small, fallback=0.5)


def test_refusal_of_a_scorer_too_close_to_chance(data):
    train, clean = data
    noisy, _ = inject_flips(train, 0.2, seed=2)
    weak = estimate_flip_rate(noisy, clean_pairs=clean.iloc[:40], scorer=blurred_lexicon_margins)
    assert not weak.identifiable and (weak.ci_low, weak.ci_high) == (0.0, 0.5)
    with pytest.raises(FlipRateRefusedError, match="not identifiable .* too close to chance") as refused:
        resolve_flip_rate(weak, max_ci_width=0.5)
    assert "noisy pairs, or a stronger scorer" in str(refused.value)


def test_refusal_of_a_scorer_at_chance_and_without_clean_pairs():
    chance = Estimate(value=float("nan"), ci_low=0.0, ci_high=0.5, method="scorer", n=2000, identifiable=False,
                      reason="the scorer is too close to chance",
                      details={"clean_error": 0.51, "disagreement": 0.5, "n_clean": 300, "scorer": "bow"})
    message = flip_rate_refusal(chance)
    assert "not identifiable" in message and "no better than chance" in message
    assert flip_rate_refusal(chance, max_ci_width=0.5) is not None  # not identifiable: refused whatever the width
    cl = Estimate(value=0.1, ci_low=0.0, ci_high=0.35, method="confident_learning", n=1000, reason="partially",
                  details={"disagreement": 0.32, "scorer": "bow"})
    assert "clean pairs (clean_pairs= / --clean-data)" in flip_rate_refusal(cl)


def test_no_clean_pairs_bounds_from_above(data):
    train, _ = data
    noisy, _ = inject_flips(train, 0.1, seed=5)
    estimate = estimate_flip_rate(noisy, seed=0)
    assert estimate.method == "confident_learning" and estimate.ci_low == 0.0 and estimate.contains(0.1)
    assert estimate.details["fit_on"] == "noisy"


def test_pair_flip_rates_from_three_annotators():
    sim = simulate_annotations(20000, (0.1, 0.2, 0.3), seed=0)  # plug-in posteriors: calibrated up to the fit's error
    out = pair_flip_rates_from_annotations(sim.annotations)
    wrong = out.labels != sim.true
    assert out.rates.mean() == pytest.approx(wrong.mean(), abs=0.01)  # calibrated
    assert out.rates[wrong].mean() > 3 * out.rates[~wrong].mean()
    assert out.label_flip_rate < out.estimate.value  # a majority vote is cleaner than one annotation
    assert out.estimate.method == "dawid_skene" and out.usable().mean() > 0.85
    given = pair_flip_rates_from_annotations(sim.annotations, labels=sim.annotations[:, 2])
    kept = given.usable()  # pairs whose given label the others contradict (ε_i > 0.4) are left out of training
    assert kept.mean() < 0.9 and given.label_flip_rate == pytest.approx(sim.is_flipped[kept, 2].mean(), abs=0.015)


def test_pair_flip_rates_from_two_annotators_split_pairs_carry_nothing():
    sim = simulate_annotations(2000, (0.15, 0.15), seed=1)
    x = sim.annotations.copy()
    x[:5, 1] = -1  # missing second label: the first alone decides
    out = pair_flip_rates_from_annotations(x)
    split = (x[:, 0] != x[:, 1]) & (x[:, 1] >= 0)
    assert np.allclose(out.rates[split], 0.5, atol=0.01) and not out.usable()[split].any()
    assert out.rates[~split].max() < 0.2 and out.estimate.details["confusion"] == "pooled"
    eps = out.estimate.value
    agree = (~split) & (x[:, 1] >= 0)
    assert out.rates[agree] == pytest.approx(eps**2 / (eps**2 + (1 - eps) ** 2), rel=0.05)  # prior ≈ 1/2


def test_oriented_pairs_carry_each_pair_rate():
    sim = simulate_annotations(400, (0.15, 0.15, 0.15), seed=2)
    rates = pair_flip_rates_from_annotations(sim.annotations)
    first = [f"first {i}" for i in range(400)]
    second = [f"second {i}" for i in range(400)]
    frame = oriented_pairs(["p"] * 400, first, second, rates)
    keep = rates.usable()
    assert len(frame) == keep.sum() and frame["row"].tolist() == np.flatnonzero(keep).tolist()
    assert frame["flip_rate"].mean() == pytest.approx(rates.label_flip_rate)  # the one ε: the kept pairs' mean
    for _, row in frame.iloc[:20].iterrows():
        i = row["row"]
        assert (row["chosen"], row["rejected"]) == ((first[i], second[i]) if rates.labels[i] == 1 else (second[i], first[i]))
        assert row["flip_rate"] == rates.rates[i] <= 0.4
    with pytest.raises(ValueError, match="same pairs"):
        oriented_pairs(["p"], first, second, rates)


# ----------------------------------------------------------------------------------------------- model scorers


def test_scorer_names_are_defined_once():
    assert SCORERS == ("bow", "embeddings", "reward-model")
    with pytest.raises(ValueError, match="needs the path"):
        make_scorer("reward-model")


def test_embedding_features_pool_the_response_of_the_policy(default_model):
    model, tokenizer = default_model
    features = EmbeddingFeatures(model, tokenizer, max_length=24, batch_size=3)
    prompts = ["Once upon a time", "The dog", "Lily saw a big red ball and she wanted to play with it all day"]
    responses = [" she was happy.", " ran to the park and played.", " It was fun."]
    out = features.features(prompts, responses)
    assert out.shape == (3, model.config.hidden_size) and np.isfinite(out).all()
    assert features.n_truncated == 1  # the third prompt is cut from its start
    # by hand for the first pair: mean of the last hidden state over the response's positions
    import torch

    p = tokenizer(prompts[0])["input_ids"]
    r = tokenizer(responses[0], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        states = model(input_ids=torch.tensor([p + r]), output_hidden_states=True).hidden_states[-1][0]
    np.testing.assert_allclose(out[0], states[len(p):].mean(0).numpy(), atol=1e-5)
    # batching does not change a row
    np.testing.assert_allclose(features.features(prompts[:1], responses[:1])[0], out[0], atol=1e-5)


def test_embeddings_scorer_end_to_end(default_model, data):
    train, clean = data
    noisy, _ = inject_flips(train.iloc[:100], 0.2, seed=3)
    scorer = EmbeddingFeatures(*default_model, max_length=32, batch_size=64)
    estimate = estimate_flip_rate(noisy, clean_pairs=clean.iloc[:100], scorer=scorer, seed=0)
    assert estimate.details["scorer"] == "embeddings" and estimate.details["fit_on"] == "clean"
    assert estimate.ci_low <= estimate.ci_high <= 0.5 and 0.0 <= estimate.details["clean_error"] <= 1.0


@pytest.fixture
def tiny_reward_model(default_model, tmp_path):
    """A random one-label LlamaForSequenceClassification with the default tokenizer (no reward signal)."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "rm")
    default_model[1].save_pretrained(tmp_path / "rm")
    return tmp_path / "rm"


def test_reward_model_scorer_margins(tiny_reward_model, data):
    scorer = make_scorer("reward-model", path=tiny_reward_model, max_length=32)
    assert isinstance(scorer, RewardModelScorer)
    train, clean = data
    p, a, b = list(train["prompt"][:20]), list(train["chosen"][:20]), list(train["rejected"][:20])
    margins = scorer(p, a, b)
    assert margins.shape == (20,) and np.isfinite(margins).all() and np.abs(margins).max() > 0
    np.testing.assert_allclose(scorer(p, b, a), -margins, atol=1e-5)  # swapping the responses negates
    # batching and padding do not change a reward
    np.testing.assert_allclose(scorer.rewards(p[:1], a[:1]), scorer.rewards(p[:4], a[:4])[:1], atol=1e-5)
    estimate = estimate_flip_rate(train.iloc[:200], clean_pairs=clean.iloc[:100], scorer=scorer)
    assert estimate.details["scorer"] == "reward-model" and estimate.details["fit_on"] == "fixed"
    with pytest.raises(FlipRateRefusedError):  # a random reward model carries no signal: auto refuses
        resolve_flip_rate(estimate)


def test_reward_model_scorer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        RewardModelScorer(tmp_path)
