"""Injection keeps its mask, is seeded, and PLD-style additions follow the protocol exactly."""

import numpy as np
import pytest

from robustrec.noise import add_random_interactions, apply_flips, flip_labels, flip_pairs


def test_flip_pairs_exact_count_and_seeded():
    m = flip_pairs(1001, 0.3, seed=4)
    assert m.dtype == bool and m.sum() == round(0.3 * 1001)
    np.testing.assert_array_equal(m, flip_pairs(1001, 0.3, seed=4))
    assert not np.array_equal(m, flip_pairs(1001, 0.3, seed=5))
    assert flip_pairs(10, 0.0).sum() == 0
    with pytest.raises(ValueError):
        flip_pairs(10, 1.5)


def test_apply_flips():
    y = np.array([0, 1, 1, 0])
    m = np.array([True, False, True, False])
    np.testing.assert_array_equal(apply_flips(y, m), [1, 1, 0, 0])
    np.testing.assert_array_equal(y, [0, 1, 1, 0])  # input untouched
    np.testing.assert_array_equal(apply_flips(y.astype(bool), m), [True, True, False, False])
    with pytest.raises(ValueError):
        apply_flips(np.array([0, 2]), np.array([True, False]))


def test_flip_labels_follows_matrix():
    nm = np.array([[0.7, 0.1, 0.0], [0.2, 0.9, 0.3], [0.1, 0.0, 0.7]])
    true = np.repeat(np.arange(3), 20000)
    out = flip_labels(true, nm, seed=0)
    emp = np.stack([np.bincount(out.labels[true == j], minlength=3) / 20000 for j in range(3)], axis=1)
    np.testing.assert_allclose(emp, nm, atol=0.01)
    np.testing.assert_array_equal(out.is_flipped, out.labels != true)
    with pytest.raises(ValueError, match="sum to 1"):
        flip_labels(true, nm * 0.5)


def _log(n_users=300, n_items=200, seed=0):
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        k = rng.integers(1, 60)
        users.append(np.full(k, u))
        items.append(rng.choice(n_items, size=k, replace=False))
    perm = rng.permutation(sum(len(x) for x in users))
    return np.concatenate(users)[perm].astype(np.int64), np.concatenate(items)[perm].astype(np.int64)


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 2.0])
def test_add_random_interactions_protocol(ratio):
    n_items = 200
    users, items = _log(n_items=n_items)
    out = add_random_interactions(users, items, n_items, ratio, seed=1)
    # exact per-user counts: floor(ratio * |train_u|)
    per_user = np.bincount(users, minlength=300)
    added = np.bincount(out.users[out.is_noise], minlength=300)
    np.testing.assert_array_equal(added, np.floor(ratio * per_user + 1e-9).astype(int))
    # no duplicates, sorted by (user, item)
    keys = out.users * n_items + out.items
    assert np.all(np.diff(keys) > 0)
    # the originals are all kept and unmarked; added ones never hit an existing positive
    orig = np.sort(users * n_items + items)
    np.testing.assert_array_equal(keys[~out.is_noise], orig)
    assert not np.isin(keys[out.is_noise], orig).any()
    assert out.items.max() < n_items
    # seeded
    again = add_random_interactions(users, items, n_items, ratio, seed=1)
    np.testing.assert_array_equal(again.items, out.items)


def test_add_random_interactions_uniform_over_unobserved():
    users = np.zeros(5, np.int64)
    items = np.arange(5, dtype=np.int64)
    counts = np.zeros(20)
    for s in range(400):
        out = add_random_interactions(users, items, 20, 0.6, seed=s)  # 3 of the 15 free items
        counts += np.bincount(out.items[out.is_noise], minlength=20)
    assert counts[:5].sum() == 0
    expected = 400 * 3 / 15
    assert np.all(np.abs(counts[5:] - expected) < 5 * np.sqrt(expected))


def test_add_random_interactions_errors():
    with pytest.raises(ValueError, match="duplicate"):
        add_random_interactions(np.array([0, 0]), np.array([1, 1]), 5, 0.5)
    with pytest.raises(ValueError, match="unobserved"):
        add_random_interactions(np.zeros(4, np.int64), np.arange(4), 5, 0.5)
    with pytest.raises(ValueError, match="n_items"):
        add_random_interactions(np.array([0]), np.array([7]), 5, 0.5)
    out = add_random_interactions(np.array([0, 1]), np.array([0, 1]), 5, 0.0)
    assert out.n_added == 0
