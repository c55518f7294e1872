"""``tune``: Optuna selection on the validation part only, reproducible with a seed, its best config trainable with
``train --config``; ``compare --tune`` reports the selected settings."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustrec import data
from robustrec.cli import main
from robustrec.config import TrainConfig, search_space
from robustrec.data import DataSpec, prepare_data
from robustrec.tune import TuneSettings, method_space, run_trial, tune

#: A trial budget small enough for a test: a few epochs of a tiny model on a tiny log.
TINY = dict(dim=8, epochs=2, eval_every=1, patience=2, batch_size=1024, lr=0.05)


def _write_nbpo_json(folder: Path, split: data.Split, test_items: list[list[int]] | None = None) -> Path:
    """The NBPO authors' JSON layout (entry u = user u's items) of a split with a validation part."""
    folder.mkdir(parents=True, exist_ok=True)

    def lists(part):
        rows = [[] for _ in range(split.n_users)]
        for u, i in zip(*part.coo()):
            rows[int(u)].append(int(i))
        return rows

    (folder / "train_data.json").write_text(json.dumps(lists(split.train)))
    (folder / "validation_data.json").write_text(json.dumps(lists(split.validation)))
    (folder / "test_data.json").write_text(json.dumps(test_items if test_items is not None else lists(split.test)))
    return folder


@pytest.fixture(scope="module")
def tiny_split():
    split = data.generate(n_users=200, n_items=150, seed=4)
    inner = data.random_holdout(split.train, test_fraction=0.15, seed=5)
    return data.Split(train=inner.train, test=split.test, validation=inner.test)


def test_every_method_has_a_search_space_and_unknown_params_are_errors():
    assert set(search_space(TrainConfig(loss="nbpo"))) >= {"lr", "l2", "phi_l2", "phi_prior"}
    assert "phi_l2" not in search_space(TrainConfig(loss="bpr"))
    assert {"tce_max_drop", "tce_warmup_epochs"} <= set(search_space(TrainConfig(loss="tce")))
    assert "rce_beta" in search_space(TrainConfig(loss="rce"))
    assert "pld_temperature" in search_space(TrainConfig(sampler="pld"))
    with pytest.raises(ValueError, match="phi_l2"):
        method_space(TrainConfig(loss="bpr"), ("lr", "phi_l2"))


def test_selection_never_reads_the_test_part(tmp_path, tiny_split):
    """The same study on the same train/validation files gives the same trials whatever the test file holds."""
    rng = np.random.default_rng(0)
    scrambled = [rng.choice(tiny_split.n_items, size=5, replace=False).tolist() for _ in range(tiny_split.n_users)]
    settings = TuneSettings(trials=2, startup_trials=1, prune=False)
    config = TrainConfig(loss="bpr", seed=1, **TINY)
    frames = []
    for name, test_items in (("real", None), ("scrambled", scrambled)):
        folder = _write_nbpo_json(tmp_path / name, tiny_split, test_items)
        spec = DataSpec(path=str(folder), format="nbpo-json")
        frames.append(tune(config, spec, tmp_path / f"study-{name}", settings).trials)
    # the test parts differ a lot: a model's test metric tells them apart
    real, fake = (prepare_data(DataSpec(path=str(tmp_path / n), format="nbpo-json")).split.test for n in
                  ("real", "scrambled"))
    assert (real.matrix != fake.matrix).nnz > 0
    pd.testing.assert_frame_equal(frames[0][["number", "value", "lr", "l2"]], frames[1][["number", "value", "lr", "l2"]])


def test_a_trial_value_is_the_best_validation_metric(tiny_split):
    from robustrec.training import fit

    config = TrainConfig(loss="bpr", seed=2, **TINY)
    value, details = run_trial(config, tiny_split.train.matrix, tiny_split.validation.matrix)
    history = fit(config, tiny_split.train.matrix, tiny_split.validation.matrix, progress=False).history
    assert value == pytest.approx(max(row["valid_recall@20"] for row in history if "valid_recall@20" in row))
    assert details["epochs"] == config.epochs


def test_a_trial_that_reports_trains_exactly_like_one_run_and_stops_when_told(tmp_path, tiny_split):
    config = TrainConfig(loss="nbpo", seed=3, **{**TINY, "epochs": 3})
    train, validation = tiny_split.train.matrix, tiny_split.validation.matrix
    whole, _ = run_trial(config, train, validation)
    reported = []
    chunked, details = run_trial(config, train, validation, scratch=tmp_path / "a",
                                 report=lambda value, epoch: reported.append((epoch, value)) or False)
    assert chunked == whole and [epoch for epoch, _ in reported] == [1, 2]
    assert not (tmp_path / "a").exists()  # the trial's checkpoints are removed
    _, details = run_trial(config, train, validation, scratch=tmp_path / "b", report=lambda value, epoch: True)
    assert details["stopped"] and details["epochs"] == config.eval_every


def test_a_seeded_study_is_reproducible_and_starts_from_the_defaults(tmp_path, tiny_split):
    prepared = data.PreparedData(tiny_split)
    settings = TuneSettings(trials=2, startup_trials=1, prune=False)
    config = TrainConfig(loss="nbpo", seed=7, **TINY)
    spec = DataSpec()
    first = tune(config, spec, tmp_path / "a", settings, prepared=prepared).trials
    again = tune(config, spec, tmp_path / "b", settings, prepared=prepared).trials
    other = tune(replace(config, seed=8), spec, tmp_path / "c", settings, prepared=prepared).trials
    columns = ["number", "value", "state", "lr", "l2", "phi_l2", "phi_prior"]
    pd.testing.assert_frame_equal(first[columns], again[columns])
    assert first.loc[0, ["lr", "l2", "phi_l2", "phi_prior"]].tolist() == pytest.approx(
        [config.lr, config.l2, config.phi_l2, config.phi_prior])
    assert not np.allclose(first.loc[1:, "lr"], other.loc[1:, "lr"])  # the seed drives the sampler


def test_tune_command_writes_a_study_whose_best_config_trains(tmp_path, capsys):
    out = tmp_path / "study"
    args = ["-q", "tune", "--loss", "bpr", "--synthetic-users", "200", "--synthetic-items", "150", "--trials", "3",
            "--startup-trials", "2", "--params", "lr", "l2", "--out", str(out)]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "tune.json").read_text())
    best = json.loads((out / "best_config.json").read_text())
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and (out / "history.png").stat().st_size > 1000
    assert summary["budget"]["trials"] == 3 and set(summary["space"]) == {"lr", "l2"}
    assert summary["best"]["value"] == pytest.approx(trials["value"].max())
    assert best["train"]["lr"] == pytest.approx(summary["best"]["settings"]["lr"])
    assert best["data"]["validation_fraction"] == 0.1  # tune's own default: a validation part carved from train
    assert "best: validation recall@20" in printed and "best_config.json" in printed
    run = tmp_path / "run"
    assert main(["-q", "train", "--config", str(out / "best_config.json"), "--out", str(run)]) == 0
    trained = json.loads((run / "config.json").read_text())
    assert trained["train"] == best["train"] and trained["data"] == best["data"]


def test_tune_without_a_validation_part_is_a_one_line_error(tmp_path, capsys):
    args = ["-q", "tune", "--synthetic-users", "100", "--synthetic-items", "80", "--validation-fraction", "0",
            "--trials", "1", "--out", str(tmp_path / "study")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "validation" in err and "--validation-fraction" in err and "Traceback" not in err
    assert not (tmp_path / "study" / "tune.json").exists()


def test_compare_tune_reports_the_selected_settings(tmp_path, capsys):
    out = tmp_path / "compare"
    args = ["-q", "compare", "--losses", "bpr", "rce", "--synthetic-users", "200", "--synthetic-items", "150",
            "--validation-fraction", "0.15", "--tune", "--trials", "2", "--startup-trials", "1", "--out", str(out)]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert main(args) == 0
    summary = pd.read_csv(out / "summary.csv")
    for method, loss in (("mf/bpr/uniform", "bpr"), ("mf/rce/uniform", "rce")):
        study = json.loads((out / "tune" / "r0" / method.replace("/", "-") / "tune.json").read_text())
        row = summary[summary["method"] == method].iloc[0]
        assert study["budget"]["trials"] == 2 and study["budget"]["epochs"] == TINY["epochs"]
        assert f"lr={study['best']['settings']['lr']:.4g}" in row["selected"]
        trained = json.loads((out / "r0" / "seed0" / method.replace("/", "-") / "config.json").read_text())["train"]
        assert trained["lr"] == pytest.approx(study["best"]["settings"]["lr"])
    assert "rce_beta=" in summary.loc[summary["method"] == "mf/rce/uniform", "selected"].iloc[0]
    assert "selected" in (out / "summary.md").read_text()
