"""Noise injection with the mask kept, noise diagnostics, plots, and the compare CLI end to end."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from robustrec import data
from robustrec.cli import main
from robustrec.data import DataSpec, prepare_data
from robustrec.diagnostics import noise_diagnostics

PNG = b"\x89PNG\r\n\x1a\n"


def test_injected_noise_is_on_train_only_and_masked():
    spec = DataSpec(synthetic_users=300, synthetic_items=200, inject_noise=0.5, seed=4)
    clean = prepare_data(DataSpec(synthetic_users=300, synthetic_items=200, seed=4)).split
    prepared = prepare_data(spec)
    split, mask = prepared.split, prepared.noise_mask
    assert prepared.noise_source == "injected"
    assert (split.test.matrix != clean.test.matrix).nnz == 0
    per_user = np.diff(clean.train.matrix.indptr)
    assert mask.sum() == np.floor(0.5 * per_user).sum()
    assert mask.shape == (split.train.n_interactions,)
    users, items = split.train.coo()
    was_there = np.asarray(clean.train.matrix[users, items]).ravel() > 0
    np.testing.assert_array_equal(was_there, ~mask)
    assert prepare_data(spec).split.train == split.train  # same split whenever rebuilt from the spec


def test_deca_real_noise_mask(shared_data):
    prepared = prepare_data(DataSpec(path=str(shared_data / "ml-100k-deca"), format="deca"))
    assert prepared.noise_source == "ratings"
    assert prepared.noise_mask.sum() == 34_015 and prepared.noise_mask.size == 79_619


def test_noise_diagnostics_count_noisy_items_in_the_top20():
    split = data.generate(n_users=80, n_items=100, seed=0)
    train = split.train.matrix
    _, items = split.train.coo()
    noisy = items < 10  # call the interactions with items 0..9 noisy and make exactly those items score highest
    item_score = (np.arange(train.shape[1]) < 10).astype(np.float32)
    got = noise_diagnostics(torch.ones(train.shape[0], 1), torch.tensor(item_score[:, None]), train, noisy, k=10)
    assert got["noisy_in_top10"] == 1.0 and got["clean_in_top10"] == 0.0 and got["n_noisy"] == noisy.sum()
    assert 0.0 <= got["noise_auc_global"] <= 1.0


def test_train_cli_with_injected_noise_writes_diagnostics_and_the_loss_plot(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["-q", "train", "--model", "lightgcn", "--loss", "nbpo", "--sampler", "pld", "--pld-warmup-epochs", "1",
            "--epochs", "2", "--dim", "8", "--synthetic-users", "200", "--synthetic-items", "150",
            "--inject-noise", "0.3", "--out", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["noise_source"] == "injected" and 0 <= metrics["noisy_in_top20"] <= 1
    assert (out / "loss_distribution.png").read_bytes()[:8] == PNG
    capsys.readouterr()
    assert main(["evaluate", str(out), "--k", "20", "--json"]) == 0  # LightGCN rebuilt from the (noisy) split
    assert json.loads(capsys.readouterr().out)["recall@20"] == pytest.approx(metrics["recall@20"])


def test_compare_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["-q", "compare", "--configs", "mf/bpr", "mf/bpr/pld", "mf/tce", "--inject-noise", "0.1", "0.4",
            "--epochs", "2", "--pld-warmup-epochs", "1", "--dim", "8", "--synthetic-users", "200",
            "--synthetic-items", "150", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "mf/bpr/pld" in printed and "noisy_in_top20" in printed
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 6 and set(runs["inject_noise"]) == {0.1, 0.4}
    assert runs["noisy_in_top20"].between(0, 1).all() and (runs["time_ratio"] > 0).all()
    summary = (out / "summary.md").read_text()
    assert summary.startswith("| method | noise |") and summary.count("\n") == 2 + 6
    assert (out / "metric_vs_noise.png").read_bytes()[:8] == PNG
    assert pd.read_csv(out / "summary.csv").shape[0] == 6


def test_compare_rejects_a_bad_configuration(tmp_path, capsys):
    assert main(["-q", "compare", "--configs", "mf/hinge", "--out", str(tmp_path)]) == 2
    assert "hinge" in capsys.readouterr().err


def test_plots_write_pngs(tmp_path):
    from robustrec import plots

    rng = np.random.default_rng(0)
    users = rng.integers(0, 20, 500)
    noisy = rng.random(500) < 0.2
    losses = rng.random(500) + noisy
    path = plots.loss_distributions(losses, noisy, users, tmp_path / "a" / "loss.png")
    assert path.read_bytes()[:8] == PNG
    frame = pd.DataFrame({"method": ["x", "x", "y", "y"], "inject_noise": [0.1, 0.3, 0.1, 0.3],
                          "recall@20": [0.2, 0.1, 0.25, 0.2]})
    assert plots.metric_vs_noise(frame, tmp_path / "curve.png").read_bytes()[:8] == PNG
