"""``flip_rate="auto"`` and ``"per-pair"`` in training: the per-pair rDPO loss, refusal and fallback, annotated data,
and ``estimate-flip-rate --json``. Runs are a couple of steps of a tiny random Llama (conftest.py)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from alignment.cli import main
from alignment.config import RobustDPOConfig
from alignment.flip_rate import FlipRateRefusedError
from alignment.policy import build_trainer

from .conftest import PAIRS, write_jsonl

QUIET = ["--disable-tqdm", "true", "--gradient-checkpointing", "false", "--logging-steps", "1"]


def _config(tmp_path, **overrides):
    settings = dict(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4, learning_rate=1e-3,
                    report_to="none", save_strategy="no", disable_tqdm=True, gradient_checkpointing=False, seed=0)
    return RobustDPOConfig(**{**settings, **overrides})


def _batch_loss(trainer, rows) -> float:
    batch = trainer.data_collator([trainer.train_dataset[i] for i in rows])
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, batch))


def test_per_pair_loss_is_the_mean_of_each_pairs_rdpo_loss(tiny_llama, tmp_path):
    pairs = PAIRS.iloc[:4].assign(flip_rate=[0.0, 0.1, 0.25, 0.4])
    trainer = build_trainer(pairs, _config(tmp_path, loss="rdpo", flip_rate="per-pair"), tiny_llama)
    with torch.no_grad():  # a policy that differs from the reference, so that the margins are not 0
        for parameter in trainer.model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    whole = _batch_loss(trainer, range(4))
    each = [_batch_loss(trainer, [i]) for i in range(4)]
    assert whole == pytest.approx(np.mean(each), rel=1e-5)
    # and each single-pair loss is global rDPO at that pair's rate
    for i, rate in enumerate(pairs["flip_rate"]):
        single = build_trainer(pairs.iloc[[i]].drop(columns="flip_rate"),
                               _config(tmp_path, loss="rdpo", flip_rate=float(rate)), tiny_llama)
        single.model.load_state_dict(trainer.model.state_dict())
        assert _batch_loss(single, [0]) == pytest.approx(each[i], rel=1e-5)


def test_per_pair_needs_each_pairs_rate(tiny_llama, tmp_path):
    with pytest.raises(ValueError, match="needs a 'flip_rate' column"):
        build_trainer(PAIRS, _config(tmp_path, loss="rdpo", flip_rate="per-pair"), tiny_llama)
    with pytest.raises(ValueError, match="loss='rdpo'"):
        _config(tmp_path, loss="cdpo", flip_rate="per-pair")


def _near_chance_pairs(n: int, seed: int) -> pd.DataFrame:
    """Pairs whose words say nothing about the label: a bag-of-words scorer is at chance on them."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"w{i}" for i in range(40)]
    rows = [{"prompt": "Once upon a time",
             "chosen": " " + " ".join(rng.choice(vocabulary, 6)), "rejected": " " + " ".join(rng.choice(vocabulary, 6))}
            for _ in range(n)]
    return pd.DataFrame(rows)


def test_auto_refuses_a_near_chance_estimate_and_says_what_would_fix_it(tiny_llama, tmp_path):
    train, clean = _near_chance_pairs(120, 0), _near_chance_pairs(120, 1)
    with pytest.raises(FlipRateRefusedError, match="flip_rate='auto' refused") as refused:
        build_trainer(train, _config(tmp_path, loss="rdpo", flip_rate="auto"), tiny_llama, clean_pairs=clean)
    assert "What would fix it" in str(refused.value)
    trainer = build_trainer(train, _config(tmp_path, loss="rdpo", flip_rate="auto", flip_rate_fallback=0.1),
                            tiny_llama, clean_pairs=clean)
    assert trainer.flip_rate == 0.1 and trainer.label_smoothing == 0.1 and trainer.flip_rate_estimate is not None


def test_auto_trains_with_an_accepted_estimate(tiny_llama, tmp_path):
    from robustrec.noise import Estimate

    accepted = Estimate(0.12, 0.08, 0.16, "test", 500)
    trainer = build_trainer(PAIRS, _config(tmp_path, loss="rdpo", flip_rate="auto"), tiny_llama,
                            flip_rate_estimator=lambda pairs, clean: accepted)
    assert trainer.flip_rate == 0.12 and trainer.label_smoothing == 0.12
    wide = Estimate(0.12, 0.0, 0.35, "test", 50)
    with pytest.raises(FlipRateRefusedError, match="too imprecise"):
        build_trainer(PAIRS, _config(tmp_path, loss="rdpo", flip_rate="auto"), tiny_llama,
                      flip_rate_estimator=lambda pairs, clean: wide)


def _annotated(path, n: int, *, flip: float, seed: int = 0):
    """``n`` pairs judged by three simulated annotators who each flip the true preference with rate ``flip``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        truth = rng.integers(1, 3)  # 1: response1 better, 2: response2 better
        labels = [int(truth if rng.random() >= flip else 3 - truth) for _ in range(3)]
        rows.append({"instruction": f"Tell story {i}", "input": "", "response1": f" happy end {i}",
                     "response2": f" sad end {i}", **{f"annotator{k + 1}": v for k, v in enumerate(labels)}})
    path.write_text(json.dumps(rows))
    return path


def test_train_per_pair_and_auto_on_annotated_data(tiny_llama, tmp_path, capsys):
    data = _annotated(tmp_path / "annotated.json", 300, flip=0.1)
    argv = ["train", "--model", str(tiny_llama), "--data", str(data), "--steps", "1", "--batch-size", "4",
            "--lr", "1e-3", "--loss", "rdpo", *QUIET]
    assert main([*argv, "--flip-rate", "per-pair", "--out", str(tmp_path / "per-pair")]) == 0
    run = json.loads((tmp_path / "per-pair" / "run.json").read_text())
    assert run["flip_rate"] == "per-pair" and run["annotations"]["one_annotation_flip_rate"]["identifiable"]
    assert main([*argv, "--flip-rate", "auto", "--out", str(tmp_path / "auto")]) == 0
    run = json.loads((tmp_path / "auto" / "run.json").read_text())
    one = run["annotations"]["one_annotation_flip_rate"]
    assert one["ci_low"] <= 0.1 <= one["ci_high"] or abs(one["value"] - 0.1) < 0.05
    # majority labels of three annotators flip far less often than one annotation: 3ε²(1-ε) + ε³ = 0.028 at 0.1
    assert run["trained_flip_rate"] == pytest.approx(run["annotations"]["label_flip_rate"])
    assert run["trained_flip_rate"] < one["value"] / 2


def test_train_auto_refuses_annotators_at_chance(tiny_llama, tmp_path, capsys):
    data = _annotated(tmp_path / "coin.json", 200, flip=0.5, seed=2)
    argv = ["train", "--model", str(tiny_llama), "--data", str(data), "--steps", "1", "--batch-size", "4",
            "--loss", "rdpo", "--flip-rate", "auto", "--on-invalid", "drop", "--out", str(tmp_path / "run"), *QUIET]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "flip_rate='auto' refused" in err[0]
    assert not (tmp_path / "run").exists()


def test_estimate_flip_rate_json_says_what_auto_would_do(tmp_path, capsys):
    data = _annotated(tmp_path / "annotated.json", 400, flip=0.15, seed=3)
    assert main(["estimate-flip-rate", "--data", str(data), "--json", "--out", str(tmp_path / "e.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads((tmp_path / "e.json").read_text())
    for key in ("value", "ci_low", "ci_high", "method", "n", "identifiable", "reason"):
        assert key in result
    assert result["method"] == "dawid_skene" and result["ci_low"] <= 0.15 <= result["ci_high"]
    assert result["auto"]["accepted"] and result["auto"]["trains_with"] < result["value"]


def test_estimate_flip_rate_on_text_pairs_reports_the_refusal(tmp_path, capsys):
    noisy = write_jsonl(tmp_path / "noisy.jsonl", _near_chance_pairs(150, 4).to_dict("records"))
    clean = write_jsonl(tmp_path / "clean.jsonl", _near_chance_pairs(150, 5).to_dict("records"))
    assert main(["estimate-flip-rate", "--data", str(noisy), "--clean-data", str(clean), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "scorer" and "clean_error" in result
    assert not result["auto"]["accepted"] and "refused" in result["auto"]["refusal"]
    assert result["value"] is None or result["ci_high"] - result["ci_low"] > 0.2
