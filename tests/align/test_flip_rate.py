"""The "auto" flip-rate estimate on text pairs (alignment.flip_rate): recovery of injected flips, no model needed.

Texts are random bags of words mixing neutral words with the experiment's sentiment lexicon; the true reward is
:func:`alignment.stories.sentiment_reward`, clean labels are Bradley–Terry at the experiment's temperature, and
exactly round(ε·n) training labels are then flipped.
"""

import numpy as np
import pandas as pd
import pytest

from alignment.experiment import ExperimentSettings, inject_flips
from alignment.flip_rate import MIN_CLEAN_TO_FIT, cross_fitted_margins, estimate_flip_rate, fold_margins
from alignment.stories import NEGATIVE_WORDS, POSITIVE_WORDS, sentiment_reward

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


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4])
def test_scorer_estimate_recovers_injected_flips(data, rate):
    train, clean = data
    noisy, mask = inject_flips(train, rate, seed=2)
    assert mask.mean() == pytest.approx(rate, abs=1e-3)
    estimate = estimate_flip_rate(noisy, clean_pairs=clean, seed=0)
    assert estimate.method == "scorer"
    assert estimate.value == pytest.approx(rate, abs=0.05)
    assert estimate.ci_low <= rate + 0.01 and estimate.ci_high >= rate - 0.01
    assert estimate.ci_high - estimate.ci_low < 0.15


def test_scorer_fitted_on_noisy_pairs_is_weaker_at_high_flip_rates(data):
    train, clean = data
    noisy, _ = inject_flips(train, 0.4, seed=2)
    on_clean = estimate_flip_rate(noisy, clean_pairs=clean, fit_on="clean", seed=0)
    try:
        on_noisy = estimate_flip_rate(noisy, clean_pairs=clean, fit_on="noisy", seed=0)
    except ValueError:  # the noisy-fitted scorer can lose all signal at ε = 0.4: that is the point
        return
    assert on_noisy.ci_high - on_noisy.ci_low > on_clean.ci_high - on_clean.ci_low


def test_fit_on_auto_uses_clean_pairs_only_when_there_are_enough(data, monkeypatch):
    train, clean = data
    import alignment.flip_rate as module

    fitted_sizes = []
    original = module.cross_fitted_margins

    def spy(chosen, rejected, **kwargs):
        fitted_sizes.append(len(chosen))
        return original(chosen, rejected, **kwargs)

    monkeypatch.setattr(module, "cross_fitted_margins", spy)
    estimate_flip_rate(train, clean_pairs=clean, seed=0)
    estimate_flip_rate(train, clean_pairs=clean.iloc[: MIN_CLEAN_TO_FIT - 1], seed=0)
    assert fitted_sizes == [len(clean), len(train)]
    with pytest.raises(ValueError, match="fit_on"):
        estimate_flip_rate(train, clean_pairs=clean, fit_on="both")


def test_fold_margins_use_one_fold_model_per_pair(data):
    train, _ = data
    margins, bag, w_folds = cross_fitted_margins(list(train["chosen"]), list(train["rejected"]), n_folds=5, seed=0)
    assert margins.shape == (len(train),) and w_folds.shape[0] == 5
    assert (margins > 0).mean() > 0.8  # the bag-of-words scorer learns the lexicon reward
    other = fold_margins(bag, w_folds, list(train["chosen"][:10]), list(train["rejected"][:10]), seed=0)
    x = bag(list(train["chosen"][:10])) - bag(list(train["rejected"][:10]))
    per_fold = (x @ w_folds.T).numpy()
    assert all(np.isclose(per_fold[i], other[i], atol=1e-5).any() for i in range(10))
