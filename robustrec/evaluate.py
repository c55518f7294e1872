"""Full-ranking offline evaluation.

Every user with at least one test item is ranked against *all* items; the user's
training items are masked out. Scoring is a batched matrix product with top-k on the
model's device: no per-user Python loop. On CPU the products are computed in cache-sized
blocks of users and the masked top-k is one compiled pass per row (:mod:`robustrec.topk`): in bfloat16 where
the CPU has bfloat16 dot-product instructions, with the candidates rescored exactly (the same items as float32
and float64 products, faster), else in float32, each thread scoring (BLAS) and ranking its own chunks of users;
elsewhere it is ``torch.topk``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

METRICS = ("recall", "ndcg", "precision", "hit", "mrr")
DEFAULT_KS = (10, 20, 50)


def metric_key(metric: str, k: int) -> str:
    return f"{metric}@{k}"


def _row_entries(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(position in ``rows``, column) index pairs of the observed entries of ``matrix[rows]``."""
    starts, ends = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = ends - starts
    position = np.repeat(np.arange(rows.size), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    columns = matrix.indices[np.repeat(starts, lengths) + offsets].astype(np.int64)
    return torch.from_numpy(position).to(device), torch.from_numpy(columns).to(device)


def top_k_items(
    user_factors: torch.Tensor,
    item_factors: torch.Tensor,
    users: np.ndarray,
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items of ``users`` (b,) by score: (b, k) ids and (b, k) scores, best first.

    ``exclude`` (n_users, n_items) CSR marks items never returned (e.g. training items).
    """
    device = user_factors.device
    scores = user_factors[torch.from_numpy(users).to(device)] @ item_factors.T  # (b, n_items)
    if exclude is not None:
        scores.index_put_(_row_entries(exclude, users, device), torch.tensor(float("-inf"), dtype=scores.dtype, device=device))
    k = min(k, scores.shape[1])
    values, ids = torch.topk(scores, k, dim=1)
    return ids, values


# Scores per block on CPU (bytes): big enough for an efficient matrix product (a few hundred users against
# Gowalla's 41k items), about the last-level cache of the machines here.
CPU_SCORE_BLOCK_BYTES = 32 << 20
_CPU_CHUNK_USERS = 128  # float32 path: users a thread scores at a time (at most; fewer on a large catalogue)


def cpu_has_bf16_products() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AVX-512 BF16 or AMX): several times float32's
    rate; elsewhere torch emulates them, slower than float32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def _max_row_norm(factors: torch.Tensor) -> float:
    """The largest row norm of ``factors`` (n, D), in float64; NaN or inf where a factor is not finite."""
    return float(np.sqrt((factors.numpy().astype(np.float64) ** 2).sum(1)).max())


def _bf16_applies(max_user_norm: float, max_item_norm: float, users: np.ndarray, train: sp.csr_matrix,
                  k: int) -> bool:
    """Whether the bfloat16 pass's error bound holds (factors of finite, moderate norm: a non-finite factor makes
    a norm NaN or inf) and every user has ``k`` items to rank (the pass skips masked items instead of ranking them
    last)."""
    rankable = train.shape[1] - np.diff(train.indptr)[users]
    return max_user_norm * max_item_norm < 1e30 and (rankable.size == 0 or int(rankable.min()) >= k)


def top_k_hits(
    user_factors: torch.Tensor,
    item_factors: torch.Tensor,
    users: np.ndarray,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    k: int,
    *,
    batch_size: int = 1024,
    bf16: bool | None = None,
) -> torch.Tensor:
    """(len(users), k) bool on the factors' device: whether each of a user's top-``k`` items (best first, training
    items masked, ties to the lower item id on CPU) is one of its test items.

    On CPU a compiled pass per row (:mod:`robustrec.topk`) replaces the sort of every score, on blocks of
    users small enough to stay in cache; elsewhere it is ``torch.topk`` on the device. ``bf16``: whether the CPU
    products are bfloat16 with exact rescoring (None: where :func:`cpu_has_bf16_products` and the bound holds).
    """
    device = user_factors.device
    if device.type != "cpu":
        parts = []
        for start in range(0, users.size, batch_size):
            batch = users[start : start + batch_size]
            ids, _ = top_k_items(user_factors, item_factors, batch, k, exclude=train)
            relevant = torch.zeros(len(batch), train.shape[1], dtype=torch.bool, device=device)
            relevant[_row_entries(test, batch, device)] = True
            parts.append(torch.gather(relevant, 1, ids))
        return torch.cat(parts) if parts else torch.zeros((0, k), dtype=torch.bool, device=device)
    _, hits = cpu_masked_top_k(user_factors, item_factors, users, train, test, k, batch_size=batch_size, bf16=bf16)
    return torch.from_numpy(hits)


def cpu_masked_top_k(
    user_factors: torch.Tensor,
    item_factors: torch.Tensor,
    users: np.ndarray,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    k: int,
    *,
    batch_size: int = 1024,
    bf16: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The CPU path of :func:`top_k_hits`: (len(users), k) int64 item ids, best first, and (len(users), k) bool
    hits. ``train`` and ``test`` (n_users, n_items) CSR with sorted indices; ``bf16`` as in :func:`top_k_hits`."""
    from robustrec import topk
    from robustrec.jit import numba_thread_count, numba_threads

    csr = [a.astype(dtype, copy=False) for m in (train, test) for a, dtype in ((m.indptr, np.int64), (m.indices, np.int32))]
    ids, hits = np.empty((users.size, k), np.int64), np.empty((users.size, k), np.bool_)
    user_factors, item_factors = user_factors.detach(), item_factors.detach()
    use_bf16 = (cpu_has_bf16_products() if bf16 is None else bf16) and min(user_factors.numel(),
                                                                            item_factors.numel()) > 0
    if use_bf16:
        max_item_norm = _max_row_norm(item_factors)
        use_bf16 = _bf16_applies(_max_row_norm(user_factors), max_item_norm, users, train, k)
    if use_bf16:
        user_np, item_np = user_factors.numpy(), item_factors.numpy()
        user_bf16 = user_factors.to(torch.bfloat16)
        items_bf16_t = item_factors.to(torch.bfloat16).T.contiguous()  # (D, n_items)
        n_items = items_bf16_t.shape[1]
        block = max(1, min(batch_size, CPU_SCORE_BLOCK_BYTES // (n_items * 2)))
        approx = torch.empty((min(block, max(users.size, 1)), n_items), dtype=torch.bfloat16)
        with numba_threads(torch.get_num_threads()):
            for start in range(0, users.size, block):
                batch = users[start : start + block].astype(np.int64)
                out = approx[: batch.size]
                torch.matmul(user_bf16[torch.from_numpy(batch)], items_bf16_t, out=out)
                topk.masked_top_k_hits_bf16(out.view(torch.int16).numpy(), batch, k, user_np, item_np, max_item_norm,
                                            *csr, ids, hits, start)
        return ids, hits
    # each numba thread scores and ranks its own chunks of users, with BLAS (OpenBLAS, about twice torch's MKL on the
    # AMD machines here) on that thread: measured 0.10 -> 0.05 s on 2 cores (ML-1M-sized) against numpy's
    # multithreaded products between the ranking passes
    importlib.import_module("scipy.linalg.cython_blas")  # the BLAS numba's np.dot calls: loaded, threadpool_limits sees it
    from threadpoolctl import threadpool_limits

    dtype = np.result_type(user_factors.numpy(), item_factors.numpy())
    user_np = user_factors.numpy().astype(dtype, copy=False)
    items_t = np.ascontiguousarray(item_factors.numpy().T, dtype=dtype)  # (D, n_items)
    n_threads = numba_thread_count(torch.get_num_threads())  # one chunk scratch each
    n_items = items_t.shape[1]
    chunk = max(1, min(batch_size, _CPU_CHUNK_USERS, CPU_SCORE_BLOCK_BYTES // (n_threads * n_items * dtype.itemsize)))
    factors_scratch = np.empty((n_threads, chunk, user_np.shape[1]), dtype)
    scores_scratch = np.empty((n_threads, chunk, n_items), dtype)
    with numba_threads(n_threads), threadpool_limits(limits=1, user_api="blas"):
        topk.scored_masked_top_k_hits(user_np, items_t, users.astype(np.int64), k, *csr, ids, hits, factors_scratch,
                                      scores_scratch)
    return ids, hits


def per_user_metrics(
    user_factors: torch.Tensor,
    item_factors: torch.Tensor,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1024,
) -> pd.DataFrame:
    """One row per evaluated user (those with >= 1 test item), columns ``metric@k``.

    Args:
        user_factors: (n_users, D), item_factors: (n_items, D); score = user_factors @ item_factors.T.
        train: (n_users, n_items) CSR of items masked from the ranking.
        test: (n_users, n_items) CSR of held-out relevant items.
        ks: cut-offs.
        batch_size: users scored at a time (at most; on CPU fewer when the item count is large).

    NDCG uses binary gains, log2 discounts and the ideal DCG of min(|test_u|, k) hits.
    """
    if train.shape != test.shape:
        raise ValueError(f"train shape {train.shape} differs from test shape {test.shape}")
    if user_factors.shape[0] != train.shape[0] or item_factors.shape[0] != train.shape[1]:
        raise ValueError(
            f"factors ({user_factors.shape[0]} users, {item_factors.shape[0]} items) do not match "
            f"the interaction matrix {train.shape}"
        )
    train, test = _sorted_csr(train), _sorted_csr(test)
    ks = sorted(set(int(k) for k in ks))
    max_k = min(ks[-1], train.shape[1])
    n_test = np.diff(test.indptr)
    users = np.flatnonzero(n_test > 0)
    with torch.no_grad():
        hits = top_k_hits(user_factors, item_factors, users, train, test, max_k, batch_size=batch_size)
    columns = hit_metrics(hits.cpu().numpy(), n_test[users], ks)
    return metrics_frame(users, {key: [values] for key, values in columns.items()})


def hit_metrics(hits: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Every ``metric@k`` of b users from ``hits`` (b, max_k) bool — whether each ranked item, best first, is
    relevant — and ``n_relevant`` (b,), each user's number of relevant items; every k <= max_k unless max_k is the
    number of items. NDCG uses binary gains, log2 discounts and the ideal DCG of min(n_relevant, k) hits."""
    hits = hits.astype(np.float64)
    max_k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, max_k + 2, dtype=np.float64))
    ideal = np.cumsum(discounts)  # ideal[m-1] = IDCG with m relevant items
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    first_hit = np.where(hits.any(1), hits.argmax(1) + 1.0, np.inf)
    columns: dict[str, np.ndarray] = {}
    for k in sorted(set(int(k) for k in ks)):
        h = hits[:, :k]
        n_hits = h.sum(1)
        values = {
            "recall": n_hits / n_rel,
            "ndcg": (h @ discounts[: h.shape[1]]) / ideal[np.minimum(n_rel, k).astype(np.int64) - 1],
            "precision": n_hits / k,
            "hit": (n_hits > 0).astype(np.float64),
            "mrr": np.where(first_hit <= k, 1.0 / first_hit, 0.0),
        }
        for m in METRICS:
            columns[metric_key(m, k)] = values[m]
    return columns


def top_k_metrics(ids: torch.Tensor, users: np.ndarray, test: sp.csr_matrix, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Every ``metric@k`` of ``users`` (b,) whose ranked items, best first, are ``ids`` (b, max_k) (-1: no item),
    for evaluation that ranks elsewhere (sharded); ``test`` (n_users, n_items) CSR holds the relevant items."""
    device = ids.device
    relevant = torch.zeros(len(users), test.shape[1], dtype=torch.bool, device=device)
    relevant[_row_entries(test, users, device)] = True
    hits = torch.gather(relevant, 1, ids.clamp(min=0)) & (ids >= 0)  # (b, max_k)
    return hit_metrics(hits.cpu().numpy(), np.diff(test.indptr)[users], ks)


def metrics_frame(users: np.ndarray, columns: dict[str, list[np.ndarray]]) -> pd.DataFrame:
    """One row per user of ``users`` (sorted), one column per metric, from per-batch value arrays."""
    frame = pd.DataFrame({key: np.concatenate(parts) if parts else np.array([]) for key, parts in columns.items()})
    frame.insert(0, "user", users)
    return frame


def mean_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """Mean over the users of :func:`per_user_metrics`' frame of every ``metric@k``."""
    if frame.empty:
        raise ValueError("the test set has no user with a test item; nothing to evaluate")
    return {key: float(frame[key].mean()) for key in frame.columns if key != "user"}


def _sorted_csr(matrix: sp.spmatrix) -> sp.csr_matrix:
    """``matrix`` as CSR with sorted, duplicate-free column indices (a copy only when needed)."""
    matrix = sp.csr_matrix(matrix)
    if not matrix.has_canonical_format:
        matrix = matrix.copy()
        matrix.sum_duplicates()
    return matrix


def ranking_metrics(
    user_factors: torch.Tensor,
    item_factors: torch.Tensor,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Mean over evaluated users of every ``metric@k`` (see :func:`per_user_metrics`)."""
    return mean_metrics(per_user_metrics(user_factors, item_factors, train, test, ks=ks, batch_size=batch_size))
