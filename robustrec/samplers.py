"""Training batches: observed (user, item) pairs with sampled unobserved items.

Negatives are drawn uniformly from all items and rejected, in vectorised rounds,
when they are one of the user's training positives (looked up in the sorted keys
``user * n_items + item`` of the CSR matrix); no per-row Python loop.

A batch sampler (``SAMPLERS``, built by :func:`build_sampler`) yields one epoch of
``(users (B,), items (B, 1 + n_negatives))`` batches, column 0 the observed item:

- ``uniform``: every training interaction once, shuffled, with uniform unobserved items;
- ``pld``: PLD's personal-loss resampling (Zhang et al., WWW 2025), which scores candidate
  positives with the current model through a ``score_fn`` hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from robustrec.config import TrainConfig

SAMPLERS = ("uniform", "pld")

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``score_fn(users (B,), items (B, M)) -> (B, M)`` float scores s_ui, computed without gradient."""


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
    if keys.size == 0:
        return np.zeros(query.shape, dtype=bool)
    # searching in sorted order is ~2.5x faster: consecutive binary searches share cache lines
    order = np.argsort(query, kind="stable")
    pos = np.empty_like(order)
    pos[order] = np.searchsorted(keys, query[order])
    pos = np.minimum(pos, keys.size - 1)
    return keys[pos] == query


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


class UniformSampler:
    """Batch sampler ``uniform``: each epoch visits every training interaction once, shuffled,
    and pairs it with ``n_negatives`` uniform unobserved items of its user.

    Args:
        train: (n_users, n_items) CSR of training interactions.
        n_negatives: sampled unobserved items per row.
    """

    def __init__(self, train: sp.csr_matrix, *, n_negatives: int = 1) -> None:
        self.train = sp.csr_matrix(train)
        self.train.sort_indices()
        self.negatives = UniformNegativeSampler(self.train)
        self.n_negatives = n_negatives

    def n_batches(self, batch_size: int) -> int:
        return math.ceil(self.train.nnz / batch_size)

    def epoch(
        self, batch_size: int, rng: np.random.Generator, *, epoch: int = 1, score_fn: ScoreFn | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch of (users (B,), items (B, 1 + n_negatives)) batches; ``epoch`` counts from 1."""
        for users, positives in positive_batches(self.train, batch_size, rng):
            negatives = self.negatives.sample(users, self.n_negatives, rng)
            yield users, np.concatenate([positives[:, None], negatives], axis=1)


class PLDSampler(UniformSampler):
    """Batch sampler ``pld``: Personalized Loss Distribution resampling (Zhang et al., WWW 2025, Alg. 1).

    For the first ``warmup_epochs`` epochs it is the uniform sampler (plain BPR). Afterwards each row:
    a user u drawn uniformly from the users with training items; a pool of ``pool_size`` (k) of u's
    observed items, without replacement when u has >= k of them; one unobserved item j; the no-gradient
    losses ℓ_c = softplus(s_uj − s_uc) of the pool; one candidate c drawn with probability
    softmax(−ℓ/τ) (``temperature`` τ). The row is (u, c, j, further negatives). An epoch has as many
    rows as the training matrix has interactions. Per batch: one ``score_fn`` call on (B, k + 1) pairs,
    no per-user Python loop.
    """

    def __init__(
        self,
        train: sp.csr_matrix,
        *,
        n_negatives: int = 1,
        pool_size: int = 5,
        temperature: float = 0.1,
        warmup_epochs: int = 5,
    ) -> None:
        super().__init__(train, n_negatives=n_negatives)
        if pool_size < 1 or temperature <= 0 or warmup_epochs < 0:
            raise ValueError("PLD needs pool_size >= 1, temperature > 0 and warmup_epochs >= 0")
        self.pool_size, self.temperature, self.warmup_epochs = pool_size, temperature, warmup_epochs
        self.indptr = self.train.indptr.astype(np.int64)
        self.degree = np.diff(self.indptr)
        self.active_users = np.flatnonzero(self.degree > 0)

    def candidate_pools(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B,) users -> (B, k) observed items of each user: k distinct ones when the user has >= k
        (a uniform k-subset, by Floyd's algorithm vectorised over the rows), else k draws with replacement."""
        k = self.pool_size
        degree = self.degree[users]
        full = degree >= k
        positions = np.empty((users.size, k), dtype=np.int64)
        # Floyd: for j = d-k .. d-1 draw t in [0, j]; take t unless already taken, then take j.
        for step in range(k):
            top = degree - k + step  # j, (B,)
            t = np.floor(rng.random(users.size) * np.maximum(top + 1, 1)).astype(np.int64)
            taken = (positions[:, :step] == t[:, None]).any(1)
            positions[:, step] = np.where(taken, top, t)
        short = ~full
        if short.any():
            positions[short] = np.floor(rng.random((int(short.sum()), k)) * degree[short, None]).astype(np.int64)
        return self.train.indices[self.indptr[users, None] + positions].astype(np.int64)

    def select(self, losses: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B, k) candidate losses -> (B,) column drawn with probability softmax(−ℓ/τ) (Gumbel-max)."""
        gumbel = -np.log(-np.log(rng.random(losses.shape, dtype=np.float32) + np.float32(1e-12)))
        return np.argmax(-losses / np.float32(self.temperature) + gumbel, axis=1)

    def epoch(
        self, batch_size: int, rng: np.random.Generator, *, epoch: int = 1, score_fn: ScoreFn | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if epoch <= self.warmup_epochs:
            yield from super().epoch(batch_size, rng, epoch=epoch)
            return
        if score_fn is None:
            raise ValueError("the pld sampler needs score_fn(users, items) -> scores after its warm-up")
        rows = self.train.nnz
        for start in range(0, rows, batch_size):
            b = min(batch_size, rows - start)
            users = self.active_users[rng.integers(0, self.active_users.size, size=b)]
            pools = self.candidate_pools(users, rng)
            negatives = self.negatives.sample(users, self.n_negatives, rng)
            scores = np.asarray(score_fn(users, np.concatenate([pools, negatives[:, :1]], axis=1)), dtype=np.float32)
            losses = np.logaddexp(np.float32(0), scores[:, -1:] - scores[:, :-1])  # softplus(s_uj - s_uc), (B, k)
            chosen = pools[np.arange(b), self.select(losses, rng)]
            yield users, np.concatenate([chosen[:, None], negatives], axis=1)


def build_sampler(config: TrainConfig, train: sp.csr_matrix) -> UniformSampler:
    """The batch sampler ``config.sampler`` (one of ``SAMPLERS``) with its settings from ``config``."""
    if config.sampler == "uniform":
        return UniformSampler(train, n_negatives=config.sampled_items)
    if config.sampler == "pld":
        return PLDSampler(train, n_negatives=config.sampled_items, pool_size=config.pld_pool_size,
                          temperature=config.pld_temperature, warmup_epochs=config.pld_warmup_epochs)
    raise ValueError(f"unknown sampler {config.sampler!r}; expected one of {SAMPLERS}")
