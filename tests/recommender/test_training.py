import numpy as np
import pytest
import torch

from robustrec import Recommender, data, ranking_metrics_at_k
from robustrec.config import TrainConfig
from robustrec.training import CHECKPOINT_FILE, fit


@pytest.fixture(scope="module")
def small_split():
    return data.generate(n_users=400, n_items=300, seed=1)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_same_seed_same_model(small_split):
    config = TrainConfig(epochs=2, dim=8, batch_size=512, eval_every=0, deterministic=True)
    a = fit(config, small_split.train.matrix, progress=False).model
    b = fit(config, small_split.train.matrix, progress=False).model
    for key, value in _state(a).items():
        torch.testing.assert_close(value, _state(b)[key])


def test_resume_continues_to_the_same_weights(small_split, tmp_path):
    train = small_split.train.matrix
    settings = dict(dim=8, batch_size=512, eval_every=0, deterministic=True)  # bit-identical reruns
    full = fit(TrainConfig(epochs=4, **settings), train, run_dir=tmp_path / "full", progress=False)
    fit(TrainConfig(epochs=4, **settings), train, run_dir=tmp_path / "part", progress=False)
    # pretend the run was cut after epoch 2: rebuild a checkpoint at epoch 2, then resume
    fit(TrainConfig(epochs=2, **settings), train, run_dir=tmp_path / "cut", progress=False)
    state = torch.load(tmp_path / "cut" / CHECKPOINT_FILE, weights_only=True)
    state["config"] = TrainConfig(epochs=4, **settings).to_dict()
    torch.save(state, tmp_path / "cut" / CHECKPOINT_FILE)
    resumed = fit(TrainConfig(epochs=4, **settings), train, run_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed.epochs == 4 and len(resumed.history) == 4
    for key, value in _state(full.model).items():
        torch.testing.assert_close(value, _state(resumed.model)[key])


def test_resume_refuses_another_configuration(small_split, tmp_path):
    fit(TrainConfig(epochs=1, dim=8, eval_every=0), small_split.train.matrix, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        fit(TrainConfig(epochs=2, dim=16, eval_every=0), small_split.train.matrix, run_dir=tmp_path, resume=True,
            progress=False)


def test_early_stopping_keeps_the_best_validation_epoch(small_split):
    config = TrainConfig(epochs=40, dim=8, batch_size=256, lr=0.3, eval_every=1, patience=2)
    result = fit(config, small_split.train.matrix, small_split.test.matrix, progress=False)
    scores = [r["valid_recall@20"] for r in result.history]
    assert result.best_epoch == int(np.argmax(scores)) + 1
    assert result.epochs < 40 or max(scores) == scores[-1]


def test_learns_better_than_popularity(small_split):
    rec = Recommender(epochs=15, dim=16, batch_size=512, eval_every=0).fit(small_split.train, show_progress=False)
    got = ranking_metrics_at_k(rec, small_split.train, small_split.test, K=20)
    popularity = np.asarray(small_split.train.matrix.sum(0)).ravel()
    from robustrec.evaluate import ranking_metrics

    pop = ranking_metrics(torch.ones(small_split.n_users, 1), torch.tensor(popularity[:, None], dtype=torch.float32),
                          small_split.train.matrix, small_split.test.matrix, ks=(20,))
    assert got["recall@20"] > 1.1 * pop["recall@20"]


def test_recommend_filters_seen_items(small_split):
    rec = Recommender(epochs=1, dim=8, eval_every=0).fit(small_split.train, show_progress=False)
    ids, scores = rec.recommend(0, N=10)
    assert ids.shape == (10,) and np.all(np.diff(scores) <= 0)
    assert not set(ids) & set(small_split.train.user_items(0))
    unfiltered, _ = rec.recommend(0, N=300, filter_already_liked_items=False)
    assert set(small_split.train.user_items(0)) <= set(unfiltered)
    with pytest.raises(IndexError):
        rec.recommend(10_000)


def test_nan_loss_is_a_clear_error(small_split):
    config = TrainConfig(epochs=3, dim=8, lr=1e30, optimizer="sgd", init_std=1e10, eval_every=0)
    with pytest.raises(FloatingPointError, match="epoch"):
        fit(config, small_split.train.matrix, progress=False)


@pytest.mark.parametrize("bad", [dict(loss="nope"), dict(model="nope"), dict(epochs=0), dict(lr=-1.0),
                                 dict(early_stop_metric="auc@20"), dict(optimizer="adam")])
def test_config_errors_name_the_problem(bad):
    with pytest.raises(ValueError, match=list(bad)[0] if list(bad)[0] != "early_stop_metric" else "METRIC"):
        TrainConfig(**bad)
