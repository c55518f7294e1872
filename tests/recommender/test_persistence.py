"""Saving and loading a recommender: Recommender.save/load/from_run give identical scores, for every model kind."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from robustrec import Recommender, data, persistence
from robustrec.cli import main
from robustrec.evaluate import ranking_metrics
from robustrec.objectives import PHI


@pytest.fixture(scope="module")
def log():
    """A log with string ids (users u0.., items i0..), 120 users x 80 items."""
    rng = np.random.default_rng(0)
    users = rng.integers(0, 120, 2400)
    items = (users // 30) * 20 + rng.integers(0, 20, users.size)  # 4 blocks
    frame = pd.DataFrame({"user": [f"u{u}" for u in users], "item": [f"i{i}" for i in items]})
    return data.Interactions.from_frame(frame)


def _fit(log, **overrides):
    return Recommender(dim=8, epochs=2, batch_size=256, eval_every=0, **overrides).fit(log, show_progress=False)


@pytest.mark.parametrize("overrides", [dict(), dict(model="lightgcn", n_layers=2), dict(loss="nbpo", phi_dim=4),
                                       dict(model="lightgcn", loss="nbpo")], ids=["mf", "lightgcn", "nbpo", "lgcn-nbpo"])
def test_save_then_load_gives_identical_scores(log, tmp_path, overrides):
    rec = _fit(log, **overrides)
    rec.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == sorted(persistence.ARTEFACT_FILES)
    loaded = Recommender.load(tmp_path / "model")
    assert torch.equal(loaded.user_factors, rec.user_factors) and torch.equal(loaded.item_factors, rec.item_factors)
    users = np.arange(log.n_users)
    ids, scores = rec.recommend(users, N=10)
    ids2, scores2 = loaded.recommend(users, N=10)
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_array_equal(scores2, scores)
    assert loaded.config == rec.config
    assert list(loaded.user_ids) == list(log.user_ids) and list(loaded.item_ids) == list(log.item_ids)
    assert (loaded.user_items != log.matrix).nnz == 0
    # the rebuilt module (plain torchrec tables, no fused optimizer) scores like the trained one, every head
    from torchrec import EmbeddingBagCollection

    assert type(loaded.model.user_tables.collection) is EmbeddingBagCollection
    for head in rec.model.heads:
        for got, expected in zip(loaded.model.embedding_matrices(head), rec.model.embedding_matrices(head)):
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    if overrides.get("loss") == "nbpo":
        assert PHI in loaded.model.heads


def test_a_recommender_pickles_without_its_training_module(log):
    rec = _fit(log)
    with pytest.raises(Exception):  # what 0.1 users hit: FBGEMM's fused module does not pickle
        pickle.dumps(rec.result.model)
    again = pickle.loads(pickle.dumps(rec))
    np.testing.assert_array_equal(again.recommend(3, N=5)[0], rec.recommend(3, N=5)[0])
    assert again.history == rec.history and again.result is None


def test_from_run_holds_the_model_the_run_evaluated(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["-q", "train", "--epochs", "2", "--dim", "8", "--synthetic-users", "200", "--synthetic-items",
                 "120", "--model", "lightgcn", "--n-layers", "1", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rec = Recommender.from_run(out)
    config = json.loads((out / "config.json").read_text())
    split = data.prepare_data(data.DataSpec(**config["data"])).split
    again = ranking_metrics(rec.user_factors, rec.item_factors, split.train.matrix, split.test.matrix,
                            ks=rec.config.ks)
    assert again["recall@20"] == metrics["recall@20"] and again["ndcg@50"] == metrics["ndcg@50"]
    assert Recommender.load(out).config == rec.config  # a run directory is a saved recommender
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recall@20"] == metrics["recall@20"]


def test_a_run_of_version_0_1_with_model_pt_still_loads(tmp_path):
    out = tmp_path / "run"
    assert main(["-q", "train", "--epochs", "1", "--dim", "8", "--synthetic-users", "150", "--synthetic-items",
                 "100", "--out", str(out)]) == 0
    rec = Recommender.from_run(out)
    torch.save(rec.model.state_dict(), out / "model.pt")
    for name in persistence.ARTEFACT_FILES:
        (out / name).unlink()
    old = Recommender.from_run(out)
    assert torch.equal(old.user_factors, rec.user_factors)
    np.testing.assert_array_equal(old.recommend(0, N=5)[0], rec.recommend(0, N=5)[0])


def test_missing_or_incomplete_artefacts_are_clear_errors(tmp_path, log):
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        Recommender.load(tmp_path)
    _fit(log).save(tmp_path / "m")
    (tmp_path / "m" / "model_ids.json").unlink()
    with pytest.raises(FileNotFoundError, match="model_ids.json is missing"):
        Recommender.load(tmp_path / "m")
    with pytest.raises(RuntimeError, match="call fit"):
        Recommender(dim=8).recommend(0)


def test_evaluate_refuses_data_that_changed_since_training(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(0, 40, 800), "item": rng.integers(0, 30, 800)})
    frame.to_csv(tmp_path / "log.csv", index=False)
    assert main(["-q", "train", "--data", str(tmp_path / "log.csv"), "--epochs", "1", "--dim", "4",
                 "--out", str(tmp_path / "run")]) == 0
    frame.iloc[:700].to_csv(tmp_path / "log.csv", index=False)
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    assert "no longer gives the training part" in capsys.readouterr().err
