"""Serving a trained recommender: implicit-shaped methods (indices), raw-id DataFrames, and the recommend /
similar-items / similar-users commands."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from robustrec import Recommender, data
from robustrec.api import RECOMMENDATION_COLUMNS
from robustrec.cli import main


@pytest.fixture(scope="module")
def log():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 60, 1500)
    items = (users // 20) * 15 + rng.integers(0, 15, users.size)
    frame = pd.DataFrame({"user": [f"u{u}" for u in users], "item": [f"i{i}" for i in items]})
    return data.Interactions.from_frame(frame)


@pytest.fixture(scope="module")
def rec(log):
    return Recommender(dim=8, epochs=3, batch_size=256, eval_every=0).fit(log, show_progress=False)


def test_recommend_takes_user_items_positionally_as_implicit_does(rec, log):
    users = np.array([0, 5, 7])
    ids, scores = rec.recommend(users, log.matrix[users], 5)
    assert ids.shape == scores.shape == (3, 5)
    for row, u in enumerate(users):
        assert not set(ids[row]) & set(log.user_items(u))
        assert np.all(np.diff(scores[row]) <= 0)
    same, _ = rec.recommend(users, N=5)  # default: the training interactions
    np.testing.assert_array_equal(same, ids)
    full, _ = rec.recommend(users, log.matrix, N=5)  # the whole matrix works too
    np.testing.assert_array_equal(full, ids)
    with pytest.raises(TypeError, match="pass N by keyword"):
        rec.recommend(0, 5)  # 0.1's recommend(user, N) is not silently misread


def test_user_items_rows_decide_what_is_filtered(rec, log):
    liked = sp.csr_matrix(([1.0], ([0], [3])), shape=(1, log.n_items), dtype=np.float32)
    ids, _ = rec.recommend(0, liked, N=log.n_items)
    assert 3 not in ids and len(ids) == log.n_items - 1  # only item 3 is filtered, training items are back
    unfiltered, _ = rec.recommend(0, N=log.n_items, filter_already_liked_items=False)
    assert sorted(unfiltered) == list(range(log.n_items))


def test_filter_items_and_items(rec, log):
    ids, _ = rec.recommend(np.arange(10), N=10, filter_items=[0, 1, 2, 3])
    assert not set(ids.ravel()) & {0, 1, 2, 3}
    only = np.array([5, 9, 30, 44])
    ids, scores = rec.recommend(np.arange(4), N=3, items=only, filter_already_liked_items=False)
    assert set(ids.ravel()) <= set(only) and ids.shape == (4, 3)
    scores_all = (rec.user_factors[:4] @ rec.item_factors.T).numpy()
    # the restricted and full products take different BLAS paths: equal up to float32 rounding
    np.testing.assert_allclose(scores, np.take_along_axis(scores_all, ids, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[:, 0], scores_all[:, only].max(1), rtol=1e-5, atol=1e-6)


def test_a_user_with_too_few_unseen_items_gets_fewer(rec, log):
    n_seen = len(log.user_items(0))
    ids, scores = rec.recommend(0, N=log.n_items)
    assert len(ids) == log.n_items - n_seen and np.isfinite(scores).all()
    ids, scores = rec.recommend(np.array([0]), N=log.n_items)
    assert ids.shape == (1, log.n_items) and np.isinf(scores[0, -n_seen:]).all()


def test_similar_items_and_users_are_cosine_with_the_query_first(rec):
    ids, scores = rec.similar_items(4, N=5)
    assert ids[0] == 4 and scores[0] == pytest.approx(1.0, abs=1e-5)
    factors = rec.item_factors.numpy()
    cosine = factors @ factors[4] / (np.linalg.norm(factors, axis=1) * np.linalg.norm(factors[4]))
    np.testing.assert_array_equal(ids, np.argsort(-cosine)[:5])
    np.testing.assert_allclose(scores, np.sort(cosine)[::-1][:5], rtol=1e-5)
    ids, _ = rec.similar_items(np.array([4, 6]), N=3, filter_items=[4])
    assert ids.shape == (2, 3) and 4 not in ids
    users, _ = rec.similar_users(np.array([1, 2]), N=4)
    assert users.shape == (2, 4) and list(users[:, 0]) == [1, 2]


def test_the_methods_match_implicit_on_the_same_factors(rec, log):
    implicit_als = pytest.importorskip("implicit.cpu.als")
    other = implicit_als.AlternatingLeastSquares(factors=8, num_threads=1)
    other.user_factors, other.item_factors = rec.user_factors.numpy(), rec.item_factors.numpy()
    users = np.arange(20)
    ours = rec.recommend(users, log.matrix[users], N=7, filter_items=[1, 2])
    theirs = other.recommend(users, log.matrix[users], N=7, filter_items=np.array([1, 2]))
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5)
    ours, theirs = rec.similar_items(np.arange(5), N=4), other.similar_items(np.arange(5), N=4)
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-4)


def test_frames_use_raw_ids(rec, log):
    frame = rec.recommend_frame(["u3", "u10"], N=4)
    assert tuple(frame.columns) == RECOMMENDATION_COLUMNS and len(frame) == 8
    assert list(frame["rank"]) == [1, 2, 3, 4] * 2 and set(frame["user"]) == {"u3", "u10"}
    u3 = int(np.flatnonzero(log.user_ids == "u3")[0])
    ids, _ = rec.recommend(u3, N=4)
    assert list(frame["item"][:4]) == list(log.item_ids[ids])
    with pytest.raises(KeyError, match="2 unknown user id"):
        rec.recommend_frame(["u3", "nobody", "ghost"])
    assert len(rec.recommend_frame(N=2)) == 2 * log.n_users
    similar = rec.similar_items_frame(["i0", "i20"], N=3)
    assert list(similar.columns) == ["item", "similar_item", "rank", "score"] and len(similar) == 6
    assert not (similar["item"] == similar["similar_item"]).any()


# ---------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, log):
    root = tmp_path_factory.mktemp("recommend")
    log.to_frame().to_csv(root / "log.csv", index=False)
    assert main(["-q", "train", "--data", str(root / "log.csv"), "--epochs", "2", "--dim", "8",
                 "--out", str(root / "run")]) == 0
    return root / "run"


def test_recommend_writes_raw_ids_and_reports_unknown_users(run_dir, tmp_path, capsys):
    (tmp_path / "users.txt").write_text("u1\nu2\n\nnobody\nu3\nghost\n")
    out = tmp_path / "recs.csv"
    assert main(["recommend", str(run_dir), "--users", str(tmp_path / "users.txt"), "-N", "5",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "2 of 5 user ids are unknown to the model" in err and "'nobody'" in err
    assert "15 rows for 3 users; 2 unknown user ids got none" in err
    frame = pd.read_csv(out)
    assert tuple(frame.columns) == RECOMMENDATION_COLUMNS and len(frame) == 15
    expected = Recommender.from_run(run_dir).recommend_frame(["u1", "u2", "u3"], N=5)
    assert list(frame["item"]) == list(expected["item"]) and list(frame["user"]) == list(expected["user"])
    model = Recommender.from_run(run_dir)
    for user, items in frame.groupby("user")["item"]:
        seen = model.item_ids[model.user_items[model.user_index([user])[0]].indices]
        assert not set(items) & set(seen)


def test_recommend_all_users_to_parquet_and_without_the_seen_filter(run_dir, tmp_path, capsys):
    assert main(["recommend", str(run_dir), "-N", "3", "--batch-size", "7", "--out", str(tmp_path / "r.parquet")]) == 0
    err = capsys.readouterr().err
    assert "recommend: 100%" in err  # the progress bar over all users
    frame = pd.read_parquet(tmp_path / "r.parquet")
    model = Recommender.from_run(run_dir)
    assert len(frame) == 3 * len(model.user_ids)
    pd.testing.assert_frame_equal(frame, model.recommend_frame(N=3), check_dtype=False)
    assert main(["-q", "recommend", str(run_dir), "-N", "3", "--no-filter-seen", "--out", str(tmp_path / "a.csv")]) == 0
    unfiltered = pd.read_csv(tmp_path / "a.csv")
    expected = model.recommend_frame(N=3, filter_already_liked_items=False)
    assert list(unfiltered["item"]) == list(expected["item"])
    assert list(unfiltered["item"]) != list(frame["item"])


def test_recommend_errors_are_one_line(run_dir, tmp_path, capsys):
    (tmp_path / "users.txt").write_text("nobody\n")
    assert main(["recommend", str(run_dir), "--users", str(tmp_path / "users.txt")]) == 2
    assert "none of the 1 user ids is known to the model" in capsys.readouterr().err
    assert main(["recommend", str(run_dir), "--out", str(tmp_path / "recs.json")]) == 2
    assert "--out" in capsys.readouterr().err and not (tmp_path / "recs.json").exists()
    assert main(["recommend", str(tmp_path)]) == 2
    assert "neither a training run" in capsys.readouterr().err


def test_similar_items_and_users_commands(run_dir, tmp_path, capsys):
    assert main(["-q", "similar-items", str(run_dir), "--items", "i0", "i16", "nothing", "-N", "4"]) == 0
    captured = capsys.readouterr()
    assert "1 of 3 item ids are unknown" in captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0].split() == ["item", "similar_item", "rank", "score"] and len(lines) == 1 + 8
    assert main(["-q", "similar-users", str(run_dir), "--users", "u0", "-N", "2", "--out",
                 str(tmp_path / "s.parquet")]) == 0
    frame = pd.read_parquet(tmp_path / "s.parquet")
    expected = Recommender.from_run(run_dir).similar_users_frame(["u0"], N=2)
    pd.testing.assert_frame_equal(frame, expected)
