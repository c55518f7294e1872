"""Full-ranking metrics against a brute-force per-user reference on random data."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from robustrec.evaluate import METRICS, per_user_metrics, ranking_metrics


def _random_csr(rng, n_users, n_items, density):
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


def _brute_force(users_f, items_f, train, test, k):
    scores = users_f @ items_f.T
    out = {m: [] for m in METRICS}
    for u in range(train.shape[0]):
        relevant = set(test[u].indices)
        if not relevant:
            continue
        s = scores[u].copy()
        s[train[u].indices] = -np.inf
        ranked = sorted(range(len(s)), key=lambda i: (-s[i], i))[:k]
        hits = [1.0 if i in relevant else 0.0 for i in ranked]
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), k)))
        out["recall"].append(sum(hits) / len(relevant))
        out["ndcg"].append(dcg / idcg)
        out["precision"].append(sum(hits) / k)
        out["hit"].append(float(sum(hits) > 0))
        first = next((r for r, h in enumerate(hits) if h), None)
        out["mrr"].append(0.0 if first is None else 1.0 / (first + 1))
    return {m: float(np.mean(v)) for m, v in out.items()}


@pytest.mark.parametrize("k", [1, 5, 20])
def test_metrics_match_brute_force(k):
    rng = np.random.default_rng(k)
    n_users, n_items = 60, 40
    users_f = rng.normal(size=(n_users, 6))
    items_f = rng.normal(size=(n_items, 6))
    train = _random_csr(rng, n_users, n_items, 0.2)
    test = sp.csr_matrix(_random_csr(rng, n_users, n_items, 0.15).multiply(train == 0))
    got = ranking_metrics(torch.tensor(users_f), torch.tensor(items_f), train, test, ks=(k,), batch_size=7)
    want = _brute_force(users_f, items_f, train, test, k)
    for metric in METRICS:
        assert got[f"{metric}@{k}"] == pytest.approx(want[metric], abs=1e-9), metric


def test_training_items_are_never_ranked_and_users_without_test_are_skipped():
    users_f = torch.eye(3)
    items_f = torch.eye(3)  # user u scores item u highest
    train = sp.csr_matrix(np.eye(3))  # ... but it is a training item
    test = sp.csr_matrix(np.array([[0, 1, 0], [0, 0, 0], [0, 0, 1]], dtype=np.float32))
    frame = per_user_metrics(users_f, items_f, train, test, ks=(1,))
    assert frame["user"].tolist() == [0, 2]
    assert (frame["hit@1"] <= 1).all()


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="do not match"):
        ranking_metrics(torch.zeros(2, 3), torch.zeros(5, 3), sp.csr_matrix((2, 4)), sp.csr_matrix((2, 4)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ties_rank_the_lower_item_first_in_float32_and_float64(dtype):
    """Integer factors give many exactly tied scores: the compiled top-k must rank them like a stable sort."""
    rng = np.random.default_rng(7)
    n_users, n_items = 50, 300
    users_f = rng.integers(-2, 3, size=(n_users, 3)).astype(np.float64)
    items_f = rng.integers(-2, 3, size=(n_items, 3)).astype(np.float64)
    train = _random_csr(rng, n_users, n_items, 0.1)
    test = sp.csr_matrix(_random_csr(rng, n_users, n_items, 0.1).multiply(train == 0))
    got = ranking_metrics(torch.tensor(users_f, dtype=dtype), torch.tensor(items_f, dtype=dtype), train, test,
                          ks=(20,), batch_size=16)
    want = _brute_force(users_f, items_f, train, test, 20)
    for metric in METRICS:
        assert got[f"{metric}@20"] == pytest.approx(want[metric], abs=1e-12), metric


def test_compiled_top_k_agrees_with_torch_top_k():
    from robustrec.evaluate import top_k_hits, top_k_items

    rng = np.random.default_rng(8)
    users_f, items_f = torch.randn(40, 8, dtype=torch.float32), torch.randn(500, 8, dtype=torch.float32)
    train = _random_csr(rng, 40, 500, 0.05)
    test = sp.csr_matrix(_random_csr(rng, 40, 500, 0.05).multiply(train == 0))
    users = np.arange(40)
    hits = top_k_hits(users_f, items_f, users, train, test, 25, batch_size=9)
    ids, _ = top_k_items(users_f, items_f, users, 25, exclude=train)  # torch.topk
    expected = np.array([[test[u, i] != 0 for i in row] for u, row in zip(users, ids.numpy())])
    assert hits.shape == (40, 25) and hits.sum() > 0
    np.testing.assert_array_equal(hits.numpy(), expected)
