"""Full-ranking metrics against a brute-force per-user reference on random data."""

import math
import subprocess
import sys

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


_FLOAT32_PATH_IN_A_FRESH_PROCESS = """
import numpy as np, scipy.sparse as sp, torch
from robustrec.evaluate import cpu_masked_top_k
torch.set_num_threads(2)
train = sp.random(512, 3000, density=0.02, format="csr", random_state=1, dtype=np.float32)
test = sp.random(512, 3000, density=0.01, format="csr", random_state=2, dtype=np.float32)
ids, _ = cpu_masked_top_k(torch.randn(512, 64), torch.randn(3000, 64), np.arange(512), train, test, 20, bf16=False)
assert ids.shape == (512, 20)
"""


def test_float32_path_runs_its_blas_on_one_thread_from_the_first_call():
    """The float32 path calls BLAS from numba's OpenMP threads, limited to one thread each; numba loads the BLAS it
    calls lazily, so on a first call in a process the limit must be set on a library already loaded (else
    OpenBLAS starts its own threads inside OpenMP's: oversubscribed, and it warns that it may hang)."""
    env = {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", _FLOAT32_PATH_IN_A_FRESH_PROCESS], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OpenBLAS Warning" not in done.stderr, done.stderr[:500]


def _exact_top_k(users_f, items_f, users, train, k):
    """(len(users), k) ids by float64 scores, training items masked, ties to the lower id (stable sort)."""
    scores = np.asarray(users_f, np.float64)[users] @ np.asarray(items_f, np.float64).T
    for r, u in enumerate(users):
        scores[r, train[u].indices] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_items,k", [(1000, 20), (1000, 50), (37, 5), (700, 1)])
def test_bfloat16_pass_returns_the_exact_top_k(dtype, n_items, k):
    from robustrec.evaluate import cpu_masked_top_k

    rng = np.random.default_rng(n_items + k)
    n_users = 30
    users_f = rng.normal(size=(n_users, 16))
    items_f = rng.normal(size=(n_items, 16)) * rng.gamma(1.0, size=(n_items, 1))  # popular items: larger norms
    users_f[:5] = np.abs(users_f[:5])
    items_f[: n_items // 2] = -np.abs(items_f[: n_items // 2])  # the first five users score these all below zero
    train = _random_csr(rng, n_users, n_items, 0.1)
    test = sp.csr_matrix(_random_csr(rng, n_users, n_items, 0.1).multiply(train == 0))
    users = np.arange(n_users)
    want = _exact_top_k(users_f, items_f, users, train, k)
    for bf16 in (True, False):
        ids, hits = cpu_masked_top_k(torch.tensor(users_f, dtype=dtype), torch.tensor(items_f, dtype=dtype), users,
                                     train, test, k, batch_size=7, bf16=bf16)
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_array_equal(hits, np.array([[test[u, i] != 0 for i in row] for u, row in zip(users, want)]))


@pytest.mark.parametrize("k", [1, 20, 50])
def test_float32_pass_returns_the_exact_top_k_among_many_exact_ties(k):
    """Small-integer factors make every score an exact small integer (any summation order), so thousands of items
    tie and the ranking rests on the tie rule (lower id first). Rows cover the threshold pass (enough 32-item
    strides for k) with items past the strides, users with fewer than k rankable items (-inf, ranked by id), users
    whose scores are all negative, and a catalogue too small for the pass."""
    from robustrec.evaluate import cpu_masked_top_k

    rng = np.random.default_rng(k)
    n_users = 12
    for n_items in (64 * k + 7, 31 * k):
        users_f = rng.integers(-2, 3, size=(n_users, 8)).astype(np.float64)
        items_f = rng.integers(-2, 3, size=(n_items, 8)).astype(np.float64)
        users_f[0] = np.abs(users_f[0]) + 1
        items_f[:, :] = np.where(np.arange(n_items)[:, None] % 3 == 0, -np.abs(items_f), items_f)
        users_f[1] = 0.0  # every item ties
        dense = (rng.random((n_users, n_items)) < 0.2).astype(np.float32)
        dense[2, :] = 1
        dense[2, rng.choice(n_items, max(1, k // 2), replace=False)] = 0  # fewer than k rankable items
        dense[3, : n_items - 3] = 1  # three rankable items, all past the strides for the first catalogue
        train = sp.csr_matrix(dense)
        test = sp.csr_matrix(_random_csr(rng, n_users, n_items, 0.1).multiply(train == 0))
        users = np.arange(n_users)
        want = _exact_top_k(users_f, items_f, users, train, k)
        for dtype in (torch.float32, torch.float64):
            ids, hits = cpu_masked_top_k(torch.tensor(users_f, dtype=dtype), torch.tensor(items_f, dtype=dtype),
                                         users, train, test, k, batch_size=5, bf16=False)
            np.testing.assert_array_equal(ids, want)
            np.testing.assert_array_equal(hits, np.array([[test[u, i] != 0 for i in row]
                                                          for u, row in zip(users, want)]))


def test_bfloat16_pass_is_exact_where_bfloat16_rounding_reorders_the_items():
    """Item j = (1 + x_j, 1 - x_j + 1e-5 y_j), user (1, 1): exact score 2 + 1e-5 y_j, but the two coordinates
    round to bfloat16 (spacing 2^-7 near 1) with errors that do not cancel, scrambling the approximate order.
    Only candidates kept within the error bound and rescored exactly give the true top k."""
    from robustrec.evaluate import cpu_masked_top_k

    rng = np.random.default_rng(3)
    n_items, k = 2048, 20
    y = rng.permutation(n_items)
    x = rng.uniform(0, 0.02, n_items)
    items_f = np.zeros((n_items, 4))
    items_f[:, 0], items_f[:, 1] = 1.0 + x, 1.0 - x + 1e-5 * y
    users_f = np.array([[1.0, 1.0, 0.0, 0.0]])
    approx = (torch.tensor(users_f).bfloat16() @ torch.tensor(items_f).bfloat16().T).float().numpy()[0]
    best = y >= n_items - k
    assert approx[best].min() < np.sort(approx)[-k]  # bfloat16 alone would miss some of the true best k
    train = sp.csr_matrix((1, n_items), dtype=np.float32)
    ids, _ = cpu_masked_top_k(torch.tensor(users_f), torch.tensor(items_f), np.array([0]), train, train, k,
                              bf16=True)
    np.testing.assert_array_equal(y[ids[0]], np.arange(n_items - 1, n_items - 1 - k, -1))


def test_bfloat16_pass_defers_to_float32_when_a_user_has_fewer_than_k_items():
    from robustrec.evaluate import cpu_masked_top_k

    rng = np.random.default_rng(4)
    users_f, items_f = torch.randn(3, 8), torch.randn(100, 8)
    dense = np.zeros((3, 100), np.float32)
    dense[1, :95] = 1  # user 1 can rank 5 items, fewer than k
    train = sp.csr_matrix(dense)
    test = sp.csr_matrix(_random_csr(rng, 3, 100, 0.1).multiply(train == 0))
    users = np.arange(3)
    got = cpu_masked_top_k(users_f, items_f, users, train, test, 10, bf16=True)
    want = cpu_masked_top_k(users_f, items_f, users, train, test, 10, bf16=False)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert set(got[0][1, :5]) == set(range(95, 100)) and set(got[0][1, 5:]) <= set(range(95))


@pytest.mark.parametrize("dim", [4, 64, 256])
def test_bfloat16_products_stay_within_the_error_bound(dim):
    """The pass is exact only if |bfloat16 product - exact| <= BF16_RELATIVE_ERROR |u| |i|; worst cases put
    every coordinate half a bfloat16 step from its rounding (1 + 2^-8 - tiny)."""
    from robustrec.topk import BF16_RELATIVE_ERROR

    rng = np.random.default_rng(dim)
    users_f = np.concatenate([rng.normal(size=(200, dim)) * 10.0 ** rng.uniform(-3, 3, (200, 1)),
                              np.full((1, dim), 1 + 2**-8 - 2**-20)])
    items_f = np.concatenate([rng.normal(size=(300, dim)) * 10.0 ** rng.uniform(-3, 3, (300, 1)),
                              np.full((1, dim), 1 + 2**-8 - 2**-20)])
    exact = users_f @ items_f.T
    approx = (torch.tensor(users_f).bfloat16() @ torch.tensor(items_f).bfloat16().T).double().numpy()
    bound = np.linalg.norm(users_f, axis=1)[:, None] * np.linalg.norm(items_f, axis=1)[None, :]
    ratio = np.abs(approx - exact) / bound
    assert ratio.max() <= BF16_RELATIVE_ERROR
    assert ratio[-1, -1] > BF16_RELATIVE_ERROR / 4  # the worst case comes near the bound: it is not loose by far
