"""The synthetic default log: shape, seeding, long tail, learnable preferences."""

import numpy as np
import pytest
from scipy.sparse.linalg import svds

from robustrec.data import Split, synthetic


def _recall_at(scores, split, k=20):
    scores = np.array(scores, dtype=np.float64)
    users, items = split.train.coo()
    scores[users, items] = -np.inf  # full ranking with training items masked
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    hits = np.take_along_axis(split.test.matrix.toarray(), top, 1).sum(1)
    n_test = split.test.user_counts()
    has = n_test > 0
    return float((hits[has] / np.minimum(n_test[has], k)).mean())


def test_shape_and_minimum_activity():
    split = synthetic.generate(n_users=400, n_items=300, seed=0)
    assert isinstance(split, Split) and split.validation is None
    assert (split.n_users, split.n_items) == (400, 300)
    total = split.train.user_counts() + split.test.user_counts()
    assert total.min() >= 5
    assert 20 < total.mean() < 40  # mean_activity 30 (lognormal, clipped)
    assert split.train.user_counts().min() >= 1
    frac = split.test.n_interactions / total.sum()
    assert 0.15 < frac < 0.25
    keys_tr = set(zip(*split.train.coo()))
    assert keys_tr.isdisjoint(zip(*split.test.coo()))


def test_seed_reproducible():
    a = synthetic.generate(n_users=300, n_items=200, seed=7)
    b = synthetic.generate(n_users=300, n_items=200, seed=7)
    c = synthetic.generate(n_users=300, n_items=200, seed=8)
    assert a == b
    assert a.train != c.train


def test_long_tail_popularity():
    split = synthetic.generate(n_users=2000, n_items=1000, seed=1)
    counts = np.sort(split.train.item_counts() + split.test.item_counts())[::-1]
    assert counts[: len(counts) // 10].sum() > 0.4 * counts.sum()
    assert counts[len(counts) // 2 :].sum() < 0.2 * counts.sum()  # uniform would be 0.5


def test_preferences_learnable_beyond_popularity():
    """A plain factorisation of the training matrix (PureSVD) must beat popularity on the test part."""
    split = synthetic.generate(n_users=2000, n_items=1000, seed=2)
    popularity = np.broadcast_to(split.train.item_counts().astype(float), (split.n_users, split.n_items))
    u, s, vt = svds(split.train.matrix.astype(np.float64), k=32)
    pop, mf = _recall_at(popularity, split), _recall_at((u * s) @ vt, split)
    assert mf > 1.3 * pop, (mf, pop)


def test_hide_positives_moves_a_share_of_each_users_training_positives_to_test():
    from robustrec.data import generate, hide_positives

    split = generate(n_users=200, n_items=150, seed=2)
    hidden = hide_positives(split, 0.5, seed=1)
    before, after = split.train.user_counts(), hidden.train.user_counts()
    assert (after >= 1).all() and np.allclose(after, before - np.floor(0.5 * before + 0.5), atol=1)
    assert hidden.train.matrix.multiply(hidden.test.matrix).nnz == 0  # hidden items are not in train
    moved = split.train.matrix - hidden.train.matrix
    assert (hidden.test.matrix - split.test.matrix - moved).nnz == 0  # test = old test + the hidden positives
    assert hide_positives(split, 0.0) is split
    with pytest.raises(ValueError, match="share"):
        hide_positives(split, 1.0)
