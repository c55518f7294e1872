"""Splits and k-core filtering."""

import numpy as np
import pytest

from robustrec.data import DataError, Interactions, Split, kcore, leave_last_out, random_holdout, temporal_cut


def _random_log(n_users=300, n_items=200, seed=0, with_time=True):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 40, n_users)
    users = np.repeat(np.arange(n_users), counts)
    items = rng.integers(0, n_items, len(users))
    stamps = rng.integers(0, 1000, len(users)).astype(float) if with_time else None
    return Interactions.from_indices(users, items, n_users=n_users, n_items=n_items, timestamps=stamps)


def _pairs(inter):
    return set(zip(*inter.coo()))


def _check_partition(inter, split):
    parts = [split.train, split.test] + ([split.validation] if split.validation is not None else [])
    for p in parts:
        assert p.matrix.shape == inter.matrix.shape
        assert p.user_ids is inter.user_ids or np.array_equal(p.user_ids, inter.user_ids)
        assert np.array_equal(p.item_ids, inter.item_ids)
    sets = [_pairs(p) for p in parts]
    assert sum(len(s) for s in sets) == inter.n_interactions
    assert set().union(*sets) == _pairs(inter)  # disjoint and complete


def test_random_holdout_partitions_per_user_fractions():
    inter = _random_log()
    split = random_holdout(inter, test_fraction=0.2, validation_fraction=0.1, seed=3)
    _check_partition(inter, split)
    n = inter.user_counts()
    exp_test = np.minimum(np.floor(0.2 * n + 0.5), n - 1)
    exp_val = np.minimum(np.floor(0.1 * n + 0.5), n - 1 - exp_test)
    np.testing.assert_array_equal(split.test.user_counts(), exp_test)
    np.testing.assert_array_equal(split.validation.user_counts(), exp_val)
    assert split.train.user_counts().min() >= 1  # every user keeps a training interaction
    # ratings/timestamps travel with their pairs
    full = dict(zip(zip(*inter.coo()), inter.timestamps.data))
    assert all(full[p] == t for p, t in zip(zip(*split.test.coo()), split.test.timestamps.data))


def test_random_holdout_is_seeded():
    inter = _random_log()
    a = random_holdout(inter, seed=1)
    b = random_holdout(inter, seed=1)
    c = random_holdout(inter, seed=2)
    assert a == b
    assert _pairs(a.test) != _pairs(c.test)
    assert a.validation is None


def test_random_holdout_rejects_bad_fractions():
    with pytest.raises(ValueError):
        random_holdout(_random_log(), test_fraction=0.6, validation_fraction=0.5, seed=0)


def test_leave_last_out_takes_latest():
    inter = _random_log(seed=1)
    split = leave_last_out(inter, n_test=2, n_validation=1)
    _check_partition(inter, split)
    n = inter.user_counts()
    np.testing.assert_array_equal(split.test.user_counts(), np.minimum(2, n - 1))
    np.testing.assert_array_equal(split.validation.user_counts(), np.clip(np.minimum(1, n - 3), 0, None))
    for u in range(inter.n_users):
        tr = split.train.timestamps[u].data
        te = split.test.timestamps[u].data
        va = split.validation.timestamps[u].data
        if len(te):
            assert te.min() >= tr.max()
            if len(va):
                assert te.min() >= va.max() >= tr.max()


def test_leave_last_out_tie_break_and_single_interaction():
    inter = Interactions.from_indices(
        [0, 0, 0, 1], [0, 1, 2, 0], n_users=2, n_items=3, timestamps=[5.0, 9.0, 9.0, 1.0]
    )
    split = leave_last_out(inter)
    assert _pairs(split.test) == {(0, 2)}  # tie at t=9 broken by the higher item index
    assert _pairs(split.train) == {(0, 0), (0, 1), (1, 0)}  # user 1 keeps its only interaction


def test_time_splits_need_timestamps():
    inter = _random_log(with_time=False)
    with pytest.raises(DataError, match="timestamps"):
        leave_last_out(inter)
    with pytest.raises(DataError, match="timestamps"):
        temporal_cut(inter, test_fraction=0.2)


def test_temporal_cut_is_a_global_time_cut():
    inter = _random_log(seed=2)
    split = temporal_cut(inter, test_fraction=0.2, validation_fraction=0.1)
    _check_partition(inter, split)
    n = inter.n_interactions
    assert split.test.n_interactions == int(np.floor(0.2 * n + 0.5))
    assert split.validation.n_interactions == int(np.floor(0.1 * n + 0.5))
    assert split.test.timestamps.data.min() >= split.validation.timestamps.data.max()
    assert split.validation.timestamps.data.min() >= split.train.timestamps.data.max()


def _kcore_reference(pairs, user_k, item_k):
    pairs = set(pairs)
    while True:
        from collections import Counter

        cu, ci = Counter(u for u, _ in pairs), Counter(i for _, i in pairs)
        kept = {(u, i) for u, i in pairs if cu[u] >= user_k and ci[i] >= item_k}
        if kept == pairs:
            return pairs
        pairs = kept


def test_kcore_matches_reference_and_reindexes():
    inter = _random_log(n_users=120, n_items=300, seed=4)
    core = kcore(inter, user_k=10, item_k=4)
    assert core.user_counts().min() >= 10 and core.item_counts().min() >= 4
    raw = {(inter.user_ids[u], inter.item_ids[i]) for u, i in _pairs(inter)}
    expected = _kcore_reference(raw, 10, 4)
    got = {(core.user_ids[u], core.item_ids[i]) for u, i in _pairs(core)}
    assert got == expected and len(expected) > 0
    assert core.n_users < inter.n_users and core.n_items < inter.n_items  # emptied rows/columns removed
    assert kcore(core, user_k=10, item_k=4) == core  # idempotent
    assert core.timestamps is not None


def test_split_rejects_mismatched_index_spaces():
    a = _random_log(n_users=10, n_items=10)
    b = _random_log(n_users=10, n_items=12)
    with pytest.raises(DataError, match="index space"):
        Split(train=a, test=b)


def test_validation_present_iff_requested():
    tiny = Interactions.from_indices([0, 1], [0, 1], n_users=2, n_items=2, timestamps=[1.0, 2.0])
    split = random_holdout(tiny, test_fraction=0.2, validation_fraction=0.1, seed=0)
    assert split.validation is not None and split.validation.n_interactions == 0
    assert leave_last_out(tiny, n_validation=1).validation is not None
    assert leave_last_out(tiny).validation is None
