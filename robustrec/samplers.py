"""Training batches: observed (user, item) pairs with sampled unobserved items.

Negatives are drawn uniformly from all items and rejected, in vectorised rounds,
when they are one of the user's training positives (looked up in the sorted keys
``user * n_items + item`` of the CSR matrix); no per-row Python loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

SAMPLERS = ("uniform",)


def positive_keys(matrix: sp.csr_matrix) -> np.ndarray:
    """Sorted int64 keys ``user * n_items + item`` of the observed entries of a CSR (n_users, n_items)."""
    users = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    keys = users * matrix.shape[1] + matrix.indices.astype(np.int64)
    if keys.size > 1 and not np.all(keys[1:] > keys[:-1]):
        keys = np.unique(keys)
    return keys


def is_observed(keys: np.ndarray, users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Boolean array, True where (users[k], items[k]) is an observed entry."""
    query = users.astype(np.int64) * n_items + items
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, keys.size - 1)
    return keys[pos] == query if keys.size else np.zeros(query.shape, dtype=bool)


class UniformNegativeSampler:
    """Uniform unobserved items for each row, never a training positive of its user.

    Draws uniformly over all items and redraws, in vectorised rounds, the draws that hit
    a positive; rows still unresolved after ``rejection_rounds`` (users who interacted
    with most items) get an exact draw from their complement: the r-th unobserved item
    of user u is ``r + #{j : p_j - j <= r}`` for u's sorted positives p_0 < p_1 < ...

    Args:
        train: (n_users, n_items) CSR of training interactions.
        rejection_rounds: redraw rounds before the exact complement draw.
    """

    def __init__(self, train: sp.csr_matrix, *, rejection_rounds: int = 3) -> None:
        train = sp.csr_matrix(train)
        train.sort_indices()
        self.n_users, self.n_items = train.shape
        self.keys = positive_keys(train)
        self.rejection_rounds = rejection_rounds
        self.indptr = train.indptr.astype(np.int64)
        self.degree = np.diff(self.indptr)
        if np.any(self.degree >= self.n_items):
            full = int(np.flatnonzero(self.degree >= self.n_items)[0])
            raise ValueError(f"user index {full} has interacted with every item; no negative exists")
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), self.degree)
        rank_in_user = np.arange(train.nnz, dtype=np.int64) - self.indptr[users]
        # p_j - j per user, offset so one sorted global array serves every user
        self.gap_keys = users * (self.n_items + 1) + (train.indices.astype(np.int64) - rank_in_user)

    def _exact(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        r = np.floor(rng.random(users.size) * (self.n_items - self.degree[users])).astype(np.int64)
        below = np.searchsorted(self.gap_keys, users * (self.n_items + 1) + r, side="right") - self.indptr[users]
        return r + below

    def sample(self, users: np.ndarray, n_negatives: int, rng: np.random.Generator) -> np.ndarray:
        """users (B,) -> (B, n_negatives) int64 items, each unobserved by its user."""
        rows = np.repeat(users.astype(np.int64), n_negatives)
        items = rng.integers(0, self.n_items, size=rows.size, dtype=np.int64)
        bad = np.flatnonzero(is_observed(self.keys, rows, items, self.n_items))
        for _ in range(self.rejection_rounds):
            if bad.size == 0:
                break
            items[bad] = rng.integers(0, self.n_items, size=bad.size, dtype=np.int64)
            bad = bad[is_observed(self.keys, rows[bad], items[bad], self.n_items)]
        if bad.size:
            items[bad] = self._exact(rows[bad], rng)
        return items.reshape(len(users), n_negatives)


def positive_batches(
    train: sp.csr_matrix, batch_size: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch: every training interaction once, shuffled, as (users (B,), items (B,)) batches."""
    users = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
    items = train.indices.astype(np.int64)
    order = rng.permutation(users.size)
    for start in range(0, order.size, batch_size):
        idx = order[start : start + batch_size]
        yield users[idx], items[idx]
