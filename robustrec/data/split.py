"""Train / validation / test splits of an :class:`Interactions` log, and k-core filtering.

Every split keeps the full index space of its input (same ``user_ids`` / ``item_ids`` in every part), so that a
model trained on ``split.train`` scores ``split.test`` users and items by the same indices. All functions are
vectorised with numpy and seeded where random.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robustrec.data.errors import DataError
from robustrec.data.interactions import Interactions
from robustrec.data.report import LoadReport, logger

__all__ = ["SPLITS", "Split", "drop_cold", "kcore", "leave_last_out", "random_holdout", "split_log", "temporal_cut"]

SPLITS: tuple[str, ...] = ("random", "leave-last-out", "temporal")
"""How :func:`split_log` splits a log: per-user random holdout, per-user leave-last-out, a global time cut."""


@dataclass(frozen=True)
class Split:
    """Train, test and optional validation logs over one shared index space.

    Attributes:
        train: ``(n_users, n_items)`` training interactions.
        test: ``(n_users, n_items)`` held-out interactions (disjoint from ``train`` for every split made here).
        validation: ``(n_users, n_items)`` held-out interactions for model selection, or ``None``.
        report: what the loader merged/dropped when the split came from a file; ``None`` otherwise.
    """

    train: Interactions
    test: Interactions
    validation: Interactions | None = None
    report: LoadReport | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("test", "validation"):
            part = getattr(self, name)
            if part is None:
                continue
            if part.matrix.shape != self.train.matrix.shape or not (
                _same(part.user_ids, self.train.user_ids) and _same(part.item_ids, self.train.item_ids)
            ):
                raise DataError(f"Split.{name} does not share train's user_ids/item_ids index space")

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    @property
    def user_ids(self) -> np.ndarray:
        return self.train.user_ids

    @property
    def item_ids(self) -> np.ndarray:
        return self.train.item_ids

    def __repr__(self) -> str:
        val = "None" if self.validation is None else f"{self.validation.n_interactions:,}"
        return (
            f"Split(n_users={self.n_users:,}, n_items={self.n_items:,}, train={self.train.n_interactions:,}, "
            f"validation={val}, test={self.test.n_interactions:,})"
        )


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and bool(np.array_equal(a, b)))


def _check_fractions(test_fraction: float, validation_fraction: float) -> None:
    if not 0.0 <= test_fraction < 1.0 or not 0.0 <= validation_fraction < 1.0:
        raise ValueError(
            f"test_fraction and validation_fraction must be in [0, 1), got {test_fraction}, {validation_fraction}"
        )
    if test_fraction + validation_fraction >= 1.0:
        raise ValueError("test_fraction + validation_fraction must be < 1")


def _assign(
    inter: Interactions, order: np.ndarray, n_test: np.ndarray, n_val: np.ndarray, *, with_validation: bool
) -> Split:
    """Split by per-user rank: the first ``n_test[u]`` of user u in ``order`` go to test, the next ``n_val[u]``
    to validation, the rest to train. ``order`` is a permutation of interactions grouped by user (users
    ascending, as CSR order is)."""
    users, _ = inter.coo()
    indptr = inter.matrix.indptr.astype(np.int64)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - indptr[users]  # users[order] == users: order keeps user groups
    n_test_i, n_val_i = n_test[users], n_val[users]
    test = rank < n_test_i
    val = (rank >= n_test_i) & (rank < n_test_i + n_val_i)
    train = ~(test | val)
    return Split(
        train=inter.select(train),
        test=inter.select(test),
        validation=inter.select(val) if with_validation else None,
    )


def _per_user_counts(n_u: np.ndarray, test: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cap held-out counts so that every user with an interaction keeps at least one in train."""
    test = np.clip(np.minimum(test, n_u - 1), 0, None)
    val = np.clip(np.minimum(val, n_u - 1 - test), 0, None)
    return test.astype(np.int64), val.astype(np.int64)


def random_holdout(
    inter: Interactions,
    *,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.0,
    seed: int = 0,
) -> Split:
    """Per-user random holdout.

    Each user u with n_u interactions gives ``round(test_fraction · n_u)`` of them, chosen uniformly at random,
    to test and ``round(validation_fraction · n_u)`` to validation (round half up), always keeping at least one
    in train (so a user with a single interaction has no held-out item). Reproducible for a given ``seed``.

    Returns:
        Split with ``validation=None`` when ``validation_fraction == 0``.
    """
    _check_fractions(test_fraction, validation_fraction)
    users, _ = inter.coo()
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(users)), users))
    n_u = inter.user_counts()
    n_test, n_val = _per_user_counts(
        n_u, np.floor(test_fraction * n_u + 0.5), np.floor(validation_fraction * n_u + 0.5)
    )
    return _assign(inter, order, n_test, n_val, with_validation=validation_fraction > 0)


def _require_timestamps(inter: Interactions, fn: str) -> np.ndarray:
    if inter.timestamps is None:
        raise DataError(f"{fn} needs timestamps; this log has none (load it with a timestamp column)")
    return inter.timestamps.data


def leave_last_out(inter: Interactions, *, n_test: int = 1, n_validation: int = 0) -> Split:
    """Per-user leave-last-out by timestamp.

    Each user's ``n_test`` latest interactions go to test and the ``n_validation`` latest before those to
    validation; equal timestamps are ordered by item index (higher index counts as later). A user keeps at
    least one interaction in train, so users with few interactions hold out fewer.

    Raises:
        DataError: the log has no timestamps.
    """
    if n_test < 0 or n_validation < 0:
        raise ValueError("n_test and n_validation must be >= 0")
    stamps = _require_timestamps(inter, "leave_last_out")
    users, items = inter.coo()
    order = np.lexsort((-items, -stamps, users))  # by user, latest first
    n_u = inter.user_counts()
    t, v = _per_user_counts(n_u, np.full_like(n_u, n_test), np.full_like(n_u, n_validation))
    return _assign(inter, order, t, v, with_validation=n_validation > 0)


def temporal_cut(inter: Interactions, *, test_fraction: float, validation_fraction: float = 0.0) -> Split:
    """Global time cut: the latest ``round(test_fraction · n)`` interactions of the whole log go to test and the
    ``round(validation_fraction · n)`` before them to validation; everything earlier is train.

    Ties in time at a cut are broken by (user, item) index, so the sizes are exact. Users or items that occur
    only after the cut stay in the index space with no training interactions (cold start); filter them with
    :func:`kcore` on the result or evaluate only warm users.

    Raises:
        DataError: the log has no timestamps.
    """
    _check_fractions(test_fraction, validation_fraction)
    stamps = _require_timestamps(inter, "temporal_cut")
    users, items = inter.coo()
    n = len(users)
    order = np.lexsort((items, users, stamps))  # oldest first
    n_test = int(np.floor(test_fraction * n + 0.5))
    n_val = int(np.floor(validation_fraction * n + 0.5))
    part = np.zeros(n, dtype=np.int8)  # 0 train, 1 validation, 2 test
    part[order[n - n_test :]] = 2
    part[order[n - n_test - n_val : n - n_test]] = 1
    return Split(
        train=inter.select(part == 0),
        test=inter.select(part == 2),
        validation=inter.select(part == 1) if validation_fraction > 0 else None,
    )


def kcore(inter: Interactions, *, user_k: int, item_k: int) -> Interactions:
    """Iterative k-core: repeatedly drop users with fewer than ``user_k`` and items with fewer than ``item_k``
    interactions until every remaining user and item meets its threshold.

    Returns:
        Interactions over the surviving users and items only, re-indexed contiguously (their raw ids kept in
        ``user_ids`` / ``item_ids``, in the original order); may be empty.
    """
    users, items = inter.coo()
    keep = np.ones(len(users), dtype=bool)
    while True:
        u_deg = np.bincount(users[keep], minlength=inter.n_users)
        i_deg = np.bincount(items[keep], minlength=inter.n_items)
        new_keep = keep & (u_deg[users] >= user_k) & (i_deg[items] >= item_k)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    kept_users = np.flatnonzero(np.bincount(users[keep], minlength=inter.n_users))
    kept_items = np.flatnonzero(np.bincount(items[keep], minlength=inter.n_items))
    u_new = np.full(inter.n_users, -1, np.int64)
    u_new[kept_users] = np.arange(len(kept_users))
    i_new = np.full(inter.n_items, -1, np.int64)
    i_new[kept_items] = np.arange(len(kept_items))
    return Interactions.from_indices(
        u_new[users[keep]],
        i_new[items[keep]],
        n_users=len(kept_users),
        n_items=len(kept_items),
        ratings=None if inter.ratings is None else inter.ratings.data[keep],
        timestamps=None if inter.timestamps is None else inter.timestamps.data[keep],
        user_ids=inter.user_ids[kept_users],
        item_ids=inter.item_ids[kept_items],
    )


def split_log(inter: Interactions, strategy: str, *, test_fraction: float, seed: int = 0) -> Split:
    """Train and test parts of a log by ``strategy`` (one of :data:`SPLITS`), without a validation part.

    ``random``: :func:`random_holdout` (``test_fraction`` per user, ``seed``); ``leave-last-out``:
    :func:`leave_last_out` (each user's latest interaction; ``test_fraction`` unused); ``temporal``:
    :func:`temporal_cut` (the latest ``test_fraction`` of the log), then :func:`drop_cold` on the test part.
    """
    if strategy == "random":
        return random_holdout(inter, test_fraction=test_fraction, seed=seed)
    if strategy == "leave-last-out":
        return leave_last_out(inter, n_test=1)
    if strategy == "temporal":
        return drop_cold(temporal_cut(inter, test_fraction=test_fraction))
    raise ValueError(f"unknown split {strategy!r}; expected one of {SPLITS}")


def drop_cold(split: Split) -> Split:
    """``split`` without the held-out interactions whose user or item has no training interaction (a model
    trained on ``split.train`` cannot score them); the number dropped is logged on ``robustrec.data``."""
    warm_users = split.train.user_counts() > 0
    warm_items = split.train.item_counts() > 0
    parts, dropped = {}, {}
    for name in ("test", "validation"):
        part = getattr(split, name)
        if part is None:
            parts[name] = None
            continue
        users, items = part.coo()
        keep = warm_users[users] & warm_items[items]
        parts[name], dropped[name] = part.select(keep), int((~keep).sum())
    if any(dropped.values()):
        logger.warning("dropped held-out interactions of users or items absent from the training part: %s",
                       ", ".join(f"{k} {v:,}" for k, v in dropped.items() if v))
    return Split(train=split.train, report=split.report, **parts)
