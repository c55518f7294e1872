"""Interactions: id maps, duplicate merging, validation, views."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from robustrec.data import DataError, Interactions


def _log():
    return pd.DataFrame(
        {
            "user": ["bob", "alice", "bob", "carol", "alice"],
            "item": [30, 10, 20, 10, 30],
            "rating": [4.0, 5.0, 3.0, 1.0, 2.0],
            "timestamp": [5.0, 1.0, 2.0, 3.0, 4.0],
        }
    )


def test_from_frame_builds_sorted_contiguous_id_maps():
    inter = Interactions.from_frame(_log(), rating_col="rating", timestamp_col="timestamp")
    assert list(inter.user_ids) == ["alice", "bob", "carol"]
    assert list(inter.item_ids) == [10, 20, 30]
    assert (inter.n_users, inter.n_items, inter.n_interactions) == (3, 3, 5)
    assert inter.matrix.dtype == np.float32 and inter.matrix.has_canonical_format
    assert np.all(inter.matrix.data == 1.0)
    np.testing.assert_array_equal(inter.user_items(0), [0, 2])  # alice: items 10, 30
    users, items = inter.coo()
    assert users.dtype == np.int64 and items.dtype == np.int64
    np.testing.assert_array_equal(users, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(items, [0, 2, 1, 2, 0])
    # ratings/timestamps follow the same (CSR) order
    np.testing.assert_array_equal(inter.ratings.data, [5.0, 2.0, 3.0, 4.0, 1.0])
    np.testing.assert_array_equal(inter.timestamps.data, [1.0, 4.0, 2.0, 5.0, 3.0])
    assert inter.report.duplicates_merged == {"all": 0}


def test_to_frame_round_trips_with_raw_ids():
    inter = Interactions.from_frame(_log(), rating_col="rating", timestamp_col="timestamp")
    df = inter.to_frame()
    assert list(df.columns) == ["user", "item", "rating", "timestamp"]
    assert set(zip(df.user, df.item, df.rating)) == set(zip(*(_log()[c] for c in ["user", "item", "rating"])))
    again = Interactions.from_frame(
        df, rating_col="rating", timestamp_col="timestamp", user_ids=inter.user_ids, item_ids=inter.item_ids
    )
    assert again == inter


def test_duplicates_merged_keeping_max_rating_and_latest_timestamp():
    df = pd.DataFrame(
        {"user": [1, 1, 1, 2], "item": [7, 7, 7, 7], "rating": [2.0, 5.0, 3.0, 1.0], "timestamp": [9.0, 1.0, 4.0, 0.0]}
    )
    inter = Interactions.from_frame(df, rating_col="rating", timestamp_col="timestamp")
    assert inter.n_interactions == 2
    np.testing.assert_array_equal(inter.ratings.data, [5.0, 1.0])
    np.testing.assert_array_equal(inter.timestamps.data, [9.0, 0.0])
    assert inter.report.duplicates_merged == {"all": 2}


def test_given_maps_share_one_index_space():
    full = Interactions.from_frame(_log())
    part = Interactions.from_frame(_log().iloc[:2], user_ids=full.user_ids, item_ids=full.item_ids)
    assert part.matrix.shape == full.matrix.shape
    assert part.n_interactions == 2
    np.testing.assert_array_equal(part.user_items(1), [2])  # bob -> item 30 at index 2


def test_unknown_id_with_given_map_names_row_and_value():
    full = Interactions.from_frame(_log())
    df = pd.DataFrame({"user": ["alice", "zed"], "item": [10, 10]})
    with pytest.raises(DataError, match=r"<DataFrame>, row 1 .*column 'user'.*'zed'"):
        Interactions.from_frame(df, user_ids=full.user_ids, item_ids=full.item_ids)


def test_missing_column_and_bad_values_are_errors():
    with pytest.raises(DataError, match=r"mylog, column 'rating ': missing column; available columns"):
        Interactions.from_frame(_log(), rating_col="rating ", source="mylog")
    bad = _log().astype({"rating": object})
    bad.loc[3, "rating"] = "five"
    with pytest.raises(DataError, match=r"row 3 .*column 'rating'.*'five'"):
        Interactions.from_frame(bad, rating_col="rating")
    nan_user = _log()
    nan_user.loc[2, "user"] = None
    with pytest.raises(DataError, match=r"row 2 .*missing user id \(got nan\)$"):
        Interactions.from_frame(nan_user)
    assert str(DataError("bad id", value=np.int64(7))) == "bad id (got 7)"  # numpy scalars read as plain values


def test_datetime_timestamps_become_seconds():
    df = pd.DataFrame({"user": [1, 2], "item": [1, 1], "when": pd.to_datetime(["1970-01-01 00:00:10", "2000-01-01 00:00:00"])})
    inter = Interactions.from_frame(df, timestamp_col="when")
    np.testing.assert_allclose(inter.timestamps.data, [10.0, 946684800.0])
    strings = df.assign(when=["1970-01-01 00:00:10", "2000-01-01"])
    np.testing.assert_allclose(Interactions.from_frame(strings, timestamp_col="when").timestamps.data, [10.0, 946684800.0])


def test_constructor_validates_matrix():
    ok = sp.csr_matrix(np.array([[1, 0], [1, 1]], dtype=np.float32))
    Interactions(ok, np.arange(2), np.arange(2))
    with pytest.raises(DataError, match="shape"):
        Interactions(ok, np.arange(3), np.arange(2))
    with pytest.raises(DataError, match="1.0"):
        Interactions(ok * 2, np.arange(2), np.arange(2))
    with pytest.raises(DataError, match="float32"):
        Interactions(ok.astype(np.float64), np.arange(2), np.arange(2))
    other = sp.csr_matrix(np.array([[1, 1], [1, 1]], dtype=np.float32))
    with pytest.raises(DataError, match="same sparsity pattern"):
        Interactions(ok, np.arange(2), np.arange(2), ratings=other)
    unsorted = sp.csr_matrix((np.ones(2, np.float32), np.array([1, 0]), np.array([0, 2, 2])), shape=(2, 2))
    with pytest.raises(DataError, match="sorted"):
        Interactions(unsorted, np.arange(2), np.arange(2))


def test_select_and_from_indices():
    inter = Interactions.from_indices(
        [2, 0, 0, 2, 0], [1, 3, 0, 1, 3], n_users=4, n_items=5, ratings=[1, 2, 3, 4, 5]
    )
    assert inter.n_interactions == 3  # (0,3) and (2,1) merged
    np.testing.assert_array_equal(inter.ratings.data, [3, 5, 4])
    np.testing.assert_array_equal(inter.user_counts(), [2, 0, 1, 0])
    np.testing.assert_array_equal(inter.item_counts(), [1, 1, 0, 1, 0])
    sub = inter.select(np.array([True, False, True]))
    assert sub.matrix.shape == (4, 5)
    assert list(zip(*sub.coo())) == [(0, 0), (2, 1)]
    np.testing.assert_array_equal(sub.ratings.data, [3, 4])
    with pytest.raises(DataError, match="item index out of range"):
        Interactions.from_indices([0], [5], n_users=1, n_items=5)
