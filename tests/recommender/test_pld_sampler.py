"""PLD's personal-loss resampling: candidate pools, selection, warm-up, one scoring pass per batch."""

import numpy as np
import pytest
import scipy.sparse as sp

from robustrec.config import TrainConfig
from robustrec.samplers import SAMPLERS, PLDSampler, UniformSampler, build_sampler


def _train(seed=0, n_users=40, n_items=60, density=0.15):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    dense[0, :3] = True
    dense[0, 3:] = False  # user 0 has 3 items (< k): pool drawn with replacement
    return sp.csr_matrix(dense.astype(np.float32))


def test_names_build_their_sampler():
    assert SAMPLERS == ("uniform", "pld")
    assert type(build_sampler(TrainConfig(sampler="uniform"), _train())) is UniformSampler
    assert isinstance(build_sampler(TrainConfig(sampler="pld"), _train()), PLDSampler)
    with pytest.raises(ValueError, match="uniform"):
        build_sampler(TrainConfig(sampler="nope"), _train())


def test_candidates_are_the_users_positives_distinct_when_enough():
    train = _train()
    sampler = PLDSampler(train, pool_size=5)
    rng = np.random.default_rng(1)
    users = rng.integers(0, train.shape[0], size=4000)
    users = users[np.diff(train.indptr)[users] > 0]
    pools = sampler.candidate_pools(users, rng)
    dense = train.toarray() > 0
    assert pools.shape == (users.size, 5)
    assert dense[users[:, None], pools].all(), "a candidate is not an observed item of its user"
    big = np.diff(train.indptr)[users] >= 5
    assert all(len(set(row)) == 5 for row in pools[big]), "pool drawn with replacement although the user has >= k"
    assert set(pools[users == 0].ravel()) == {0, 1, 2}


def test_pools_are_uniform_over_the_users_positives():
    train = _train(density=0.3)
    sampler = PLDSampler(train, pool_size=5)
    u = int(np.argmax(np.diff(train.indptr)))
    deg = int(np.diff(train.indptr)[u])
    pools = sampler.candidate_pools(np.full(20000, u), np.random.default_rng(2))
    counts = np.bincount(pools.ravel(), minlength=train.shape[1])[train.indices[train.indptr[u]:train.indptr[u + 1]]]
    expected = 20000 * 5 / deg
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), (counts, expected)


def test_selection_follows_softmax_of_minus_loss_over_tau():
    sampler = PLDSampler(_train(), temperature=0.5)
    losses = np.tile(np.array([0.1, 0.4, 1.0, 2.0, 0.1], dtype=np.float32), (50000, 1))
    picked = sampler.select(losses, np.random.default_rng(3))
    freq = np.bincount(picked, minlength=5) / picked.size
    target = np.exp(-losses[0] / 0.5) / np.exp(-losses[0] / 0.5).sum()
    np.testing.assert_allclose(freq, target, atol=0.01)
    # tau = 0.1 (the paper's): a low-loss candidate is picked almost always
    sharp = PLDSampler(_train(), temperature=0.1).select(np.tile(np.array([[0.0, 2.0, 2.0, 2.0, 2.0]]), (5000, 1)),
                                                         np.random.default_rng(4))
    assert (sharp == 0).mean() > 0.99


def test_epoch_scores_once_per_batch_and_prefers_low_loss_items():
    train = _train(density=0.3)
    n_users, n_items = train.shape
    favourite = np.zeros(n_items)
    favourite[::2] = 5.0  # even items score high for everyone: low BPR loss as positives
    calls = []

    def score_fn(users, items):
        calls.append(items.shape)
        return favourite[items]

    sampler = PLDSampler(train, pool_size=5, warmup_epochs=1, n_negatives=2)
    rng = np.random.default_rng(5)
    warm = list(sampler.epoch(64, rng, epoch=1, score_fn=score_fn))
    assert not calls, "the warm-up is plain uniform sampling"
    assert sum(len(u) for u, _ in warm) == train.nnz
    batches = list(sampler.epoch(64, rng, epoch=2, score_fn=score_fn))
    assert len(calls) == len(batches) and all(shape[1] == 5 + 1 for shape in calls)
    users = np.concatenate([u for u, _ in batches])
    items = np.concatenate([i for _, i in batches])
    assert users.size == train.nnz and items.shape == (train.nnz, 3)
    dense = train.toarray() > 0
    assert dense[users, items[:, 0]].all() and not dense[users[:, None], items[:, 1:]].any()
    even_share_observed = (train.indices % 2 == 0).mean()
    assert (items[:, 0] % 2 == 0).mean() > even_share_observed + 0.2


def test_pld_needs_a_score_fn_after_warmup():
    sampler = PLDSampler(_train(), warmup_epochs=0)
    with pytest.raises(ValueError, match="score_fn"):
        next(sampler.epoch(8, np.random.default_rng(0), epoch=1))
