"""Summaries of the controlled experiment's grid: shards merge into the same results as one process."""

import pytest

from alignment.experiment import ExperimentSettings, build_results, estimates_table, merge_results, results_markdown

from dataclasses import asdict

SETTINGS = asdict(ExperimentSettings(methods=("dpo", "rdpo_auto")))
RATES = [0.0, 0.2]


def run(seed, rate, method, reward):
    record = {"flip_rate": rate, "seed": seed, "method": method, "loss": "dpo" if method == "dpo" else "rdpo",
              "trained_flip_rate": 0.0, "reward": reward, "kl": 1.0, "clean_pref_accuracy": 0.5}
    if method == "rdpo_auto":
        estimate = rate + 0.01 * (seed + 1)
        record["trained_flip_rate"] = estimate
        record["estimate"] = {"value": estimate, "ci_low": estimate - 0.05, "ci_high": estimate + 0.05,
                              "method": "scorer", "n": 100, "confidence": 0.95, "n_excluded": 0}
    return record


def grid(seeds):
    return [run(s, r, m, reward=float(s + 10 * r + (m == "rdpo_auto"))) for s in seeds for r in RATES
            for m in ("dpo", "rdpo_auto")]


def test_shards_merge_into_the_single_process_results():
    whole = build_results(grid([0, 1, 2]), {"0": 0.1, "1": 0.2, "2": 0.3}, RATES, SETTINGS["methods"], SETTINGS)
    runs = grid([0, 1, 2])
    part_a = build_results(runs[::2], {"0": 0.1, "1": 0.2, "2": 0.3}, RATES, SETTINGS["methods"], SETTINGS)
    part_b = build_results(runs[1::2], {"0": 0.1, "1": 0.2}, RATES, SETTINGS["methods"], SETTINGS)
    merged = merge_results([part_a, part_b])
    assert merged["seeds"] == 3 and merged["results"] == whole["results"]
    assert merged["results"]["0.2"]["dpo"]["reward"]["mean"] == pytest.approx(3.0)
    assert merged["results"]["0.2"]["dpo"]["reward"]["std"] == pytest.approx(1.0)
    est = merged["results"]["0.2"]["estimated_flip_rate"]
    assert est["mean"] == pytest.approx(0.22) and len(est["per_seed"]) == 3
    assert "| 0.2 | 0.220 ± 0.010 |" in estimates_table(merged)
    assert "rdpo_auto" in results_markdown(merged, "python benchmarks/rdpo_experiment.py")
    with pytest.raises(ValueError, match="overlap"):
        merge_results([part_a, part_a])
    with pytest.raises(ValueError, match="settings"):
        merge_results([part_a, dict(part_b, settings={**SETTINGS, "steps": 1})])
