"""PandaLM's three human annotators: the Dawid–Skene fit must reproduce the agreement actually observed."""

import json

import numpy as np
import pytest

from robustrec.noise import flip_rate_dawid_skene, flip_rate_from_agreement, pairwise_agreement, preference_codes


def _pandalm(shared_data):
    path = shared_data / "pandalm-3annotators" / "testset-v1.json"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    rows = json.loads(path.read_text())
    raw = np.array([[r["annotator1"], r["annotator2"], r["annotator3"]] for r in rows])
    return preference_codes(raw, first=1, second=2, tie=0)


@pytest.mark.shared_data
def test_pandalm_dawid_skene_consistent_with_observed_agreement(shared_data):
    x = _pandalm(shared_data)
    with pytest.raises(ValueError, match="ties"):
        flip_rate_dawid_skene(x)
    res = flip_rate_dawid_skene(x, ties="drop", n_resamples=200)
    observed = pairwise_agreement(x, ties="drop")
    predicted = res.predicted_agreement()
    off = ~np.eye(3, dtype=bool)
    assert np.all(np.abs(predicted[off] - observed[off]) < 0.02), (predicted, observed)
    # the documented estimate (README, benchmarks/results): 0.027, matching crowd-kit's Dawid–Skene to 1e-6
    assert res.flip_rate.value == pytest.approx(0.0267, abs=5e-4) and res.flip_rate.identifiable
    assert 0.015 < res.flip_rate.ci_low < 0.0267 < res.flip_rate.ci_high < 0.04
    # each pair's flip probability for the majority label: far below a single annotator's rate
    pair_rates = res.pair_flip_rates()
    assert np.nanmean(pair_rates) < res.flip_rate.value / 3 and np.nanmax(pair_rates) <= 0.5
    # two-annotator estimates bracket the same range
    for i, j in ((0, 1), (0, 2), (1, 2)):
        e = flip_rate_from_agreement(x[:, i], x[:, j], ties="drop")
        implied = (1 - res.annotator_flip_rates[i]) * (1 - res.annotator_flip_rates[j]) + (
            res.annotator_flip_rates[i] * res.annotator_flip_rates[j]
        )
        assert abs(implied - observed[i, j]) < 0.02
        assert e.value < 0.2
