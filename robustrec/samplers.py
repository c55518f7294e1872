"""Training batches: observed (user, item) pairs with sampled unobserved items.

Negatives are drawn uniformly from all items and rejected, in vectorised rounds,
when they are one of the user's training positives (looked up in the sorted keys
``user * n_items + item`` of the CSR matrix).
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

    Args:
        train: (n_users, n_items) CSR of training interactions.
        max_rounds: rejection rounds before giving up (a user who has interacted
            with almost every item cannot be served).
    """

    def __init__(self, train: sp.csr_matrix, *, max_rounds: int = 100) -> None:
        self.n_users, self.n_items = train.shape
        self.keys = positive_keys(train)
        self.max_rounds = max_rounds
        counts = np.diff(train.indptr)
        if np.any(counts >= self.n_items):
            full = int(np.flatnonzero(counts >= self.n_items)[0])
            raise ValueError(f"user index {full} has interacted with every item; no negative exists")

    def sample(self, users: np.ndarray, n_negatives: int, rng: np.random.Generator) -> np.ndarray:
        """users (B,) -> (B, n_negatives) int64 items, each unobserved by its user."""
        rows = np.repeat(users.astype(np.int64), n_negatives)
        items = rng.integers(0, self.n_items, size=rows.size, dtype=np.int64)
        bad = np.flatnonzero(is_observed(self.keys, rows, items, self.n_items))
        for _ in range(self.max_rounds):
            if bad.size == 0:
                return items.reshape(len(users), n_negatives)
            items[bad] = rng.integers(0, self.n_items, size=bad.size, dtype=np.int64)
            bad = bad[is_observed(self.keys, rows[bad], items[bad], self.n_items)]
        raise RuntimeError(f"negative sampling did not converge in {self.max_rounds} rounds")


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
