"""One tiny end-to-end run per CLI command, with the shipped default model; and the experiment in miniature."""

import json

import numpy as np
import pandas as pd
import pytest

from alignment.cli import main, train_parser
from alignment.losses import PREFERENCE_LOSSES

from .conftest import PAIRS


def test_loss_choices_come_from_losses(capsys):
    parser = train_parser()
    assert parser.parse_args(["--loss", PREFERENCE_LOSSES[-1]]).loss == PREFERENCE_LOSSES[-1]
    with pytest.raises(SystemExit):
        parser.parse_args(["--loss", "sigmoid"])
    assert main(["train", "--loss", "rdpo", "--flip-rate", "0.5"]) == 2
    assert "flip rate must lie in [0, 0.5), got 0.5" in capsys.readouterr().err


@pytest.mark.slow
def test_train_then_evaluate(tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    PAIRS.to_json(data, orient="records", lines=True)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--loss", "rdpo", "--flip-rate", "0.1", "--steps", "2",
                 "--batch-size", "4", "--out", str(run)]) == 0
    saved = json.loads((run / "run.json").read_text())
    assert saved["loss"] == "rdpo" and saved["trained_flip_rate"] == 0.1
    assert (run / "model" / "config.json").is_file()
    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    metrics = json.loads((run / "eval.json").read_text())
    assert 0.0 <= metrics["pref_accuracy"] <= 1.0 and metrics["n_pairs"] == len(PAIRS)


def test_train_rejects_bad_data(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"prompt": "p", "chosen": "x", "rejected": "x"}) + "\n")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run")]) == 2
    assert "bad.jsonl, row 1: 'chosen' and 'rejected' are identical" in capsys.readouterr().err


def test_estimate_flip_rate_from_annotations(tmp_path, capsys):
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 3, size=400)
    frame = pd.DataFrame({f"annotator{k}": np.where(rng.random(400) < 0.1, 3 - truth, truth) for k in (1, 2, 3)})
    path = tmp_path / "annotated.json"
    frame.to_json(path, orient="records")
    out = tmp_path / "estimate.json"
    assert main(["estimate-flip-rate", "--data", str(path), "--out", str(out)]) == 0
    estimate = json.loads(out.read_text())
    assert estimate["method"] == "dawid_skene" and abs(estimate["value"] - 0.1) < 0.05


@pytest.mark.shared_data
def test_estimate_flip_rate_pandalm(shared_data, capsys):
    assert main(["estimate-flip-rate", "--data", str(shared_data / "pandalm-3annotators" / "testset-v1.json")]) == 0
    assert "879 unanimous" in capsys.readouterr().out


@pytest.mark.slow
def test_experiment_in_miniature(tmp_path):
    out = tmp_path / "exp"
    assert main(["experiment", "--flip-rate", "0", "0.2", "--seeds", "1", "--steps", "2", "--train-prompts", "40",
                 "--samples-per-prompt", "32", "--eval-prompts", "12", "--eval-samples", "8",
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == {"0.0", "0.2"}
    for entry in results["results"].values():
        assert {"dpo", "cdpo", "rdpo", "rdpo_auto", "estimated_flip_rate"} <= set(entry)
        assert set(entry["dpo"]) == {"reward", "kl", "clean_pref_accuracy"}
    assert (out / "reward_vs_flip_rate.png").stat().st_size > 1000
    assert "| 0.2 | rdpo |" in (out / "results.md").read_text()
    assert results["settings"]["n_eval_prompts"] == 12
    rdpo = [r for r in results["runs"] if r["method"] == "rdpo" and r["flip_rate"] == 0.2]
    assert rdpo[0]["trained_flip_rate"] == 0.2
    auto = [r for r in results["runs"] if r["method"] == "rdpo_auto" and r["flip_rate"] == 0.2][0]
    assert auto["estimate"]["method"] == "scorer"
    # ~130 training pairs and ~55 clean ones: the estimate's interval is far wider than ±0.1, so "auto" refuses to
    # train and the experiment records the refusal (its accuracy is tested in test_flip_rate.py)
    assert auto["estimate"]["ci_high"] - auto["estimate"]["ci_low"] > 0.2
    assert "flip_rate='auto' refused" in auto["refused"] and "trained_flip_rate" not in auto
    assert results["results"]["0.2"]["rdpo_auto"]["refused"] == 1
    assert "| 0.2 | rdpo_auto | — | — | — | refused (1 seeds) |" in (out / "results.md").read_text()
