"""Full-ranking offline evaluation.

Every user with at least one test item is ranked against *all* items; the user's
training items are masked out. Scoring is a batched matrix product with top-k on the
model's device: no per-user Python loop.
"""

from __future__ import annotations

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

    NDCG uses binary gains, log2 discounts and the ideal DCG of min(|test_u|, k) hits.
    """
    if train.shape != test.shape:
        raise ValueError(f"train shape {train.shape} differs from test shape {test.shape}")
    if user_factors.shape[0] != train.shape[0] or item_factors.shape[0] != train.shape[1]:
        raise ValueError(
            f"factors ({user_factors.shape[0]} users, {item_factors.shape[0]} items) do not match "
            f"the interaction matrix {train.shape}"
        )
    ks = sorted(set(int(k) for k in ks))
    max_k = min(ks[-1], train.shape[1])
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    columns: dict[str, list[np.ndarray]] = {metric_key(m, k): [] for k in ks for m in METRICS}
    with torch.no_grad():
        for start in range(0, users.size, batch_size):
            batch = users[start : start + batch_size]
            ids, _ = top_k_items(user_factors, item_factors, batch, max_k, exclude=train)
            for key, values in top_k_metrics(ids, batch, test, ks).items():
                columns[key].append(values)
    return metrics_frame(users, columns)


def top_k_metrics(ids: torch.Tensor, users: np.ndarray, test: sp.csr_matrix, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Every ``metric@k`` of ``users`` (b,) whose ranked items, best first, are ``ids`` (b, max_k) (-1: no item).

    ``test`` (n_users, n_items) CSR holds the relevant items; ``ks`` must not exceed max_k unless max_k is the
    number of items. NDCG uses binary gains, log2 discounts and the ideal DCG of min(|test_u|, k) hits.
    """
    device = ids.device
    max_k = ids.shape[1]
    discounts = 1.0 / torch.log2(torch.arange(2, max_k + 2, device=device, dtype=torch.float64))
    ideal = torch.cumsum(discounts, 0)  # ideal[m-1] = IDCG with m relevant items
    relevant = torch.zeros(len(users), test.shape[1], dtype=torch.bool, device=device)
    relevant[_row_entries(test, users, device)] = True
    hits = (torch.gather(relevant, 1, ids.clamp(min=0)) & (ids >= 0)).double()  # (b, max_k)
    n_rel = torch.from_numpy(np.diff(test.indptr)[users]).to(device).double()
    first_hit = torch.where(hits.any(1), hits.argmax(1).double() + 1, torch.inf)
    out = {}
    for k in sorted(set(int(k) for k in ks)):
        h = hits[:, :k]
        n_hits = h.sum(1)
        dcg = (h * discounts[:k]).sum(1)
        idcg = ideal[torch.clamp(n_rel, max=k).long() - 1]
        values = {
            "recall": n_hits / n_rel,
            "ndcg": dcg / idcg,
            "precision": n_hits / k,
            "hit": (n_hits > 0).double(),
            "mrr": torch.where(first_hit <= k, 1.0 / first_hit, 0.0),
        }
        for m in METRICS:
            out[metric_key(m, k)] = values[m].cpu().numpy()
    return out


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
