"""Controlled noise injection that keeps the mask of what was injected (seeded, vectorised).

- :func:`flip_pairs` / :func:`apply_flips`: symmetric random flips of preference pairs at rate ε (the noise
  model of robust DPO, Chowdhury et al., ICML 2024).
- :func:`flip_labels`: class-conditional flips drawn from a noise matrix ``P(observed | true)`` (the noise
  model of confident learning, Northcutt et al., JAIR 2021, section 2).
- :func:`add_random_interactions`: PLD's protocol (Zhang et al., WWW 2025, section 5.1): each user gets
  ``⌊r·|train_u|⌋`` extra interactions with items drawn uniformly from the items they have not interacted
  with. The one implementation used by the recommender experiments too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "FlippedLabels",
    "InjectedInteractions",
    "flip_pairs",
    "apply_flips",
    "flip_labels",
    "add_random_interactions",
]


@dataclass(frozen=True)
class FlippedLabels:
    """Labels after class-conditional flipping.

    Attributes:
        labels: (n,) int64 observed labels.
        is_flipped: (n,) bool, true where ``labels`` differs from the input (true) label.
    """

    labels: np.ndarray
    is_flipped: np.ndarray


@dataclass(frozen=True)
class InjectedInteractions:
    """Interactions with random ones added, sorted by (user, item).

    Attributes:
        users, items: (n + n_added,) int64 COO arrays.
        is_noise: (n + n_added,) bool, true for the added interactions.
    """

    users: np.ndarray
    items: np.ndarray
    is_noise: np.ndarray

    @property
    def n_added(self) -> int:
        return int(self.is_noise.sum())

    @property
    def noise_share(self) -> float:
        """Share of the (returned) interactions that were injected."""
        return float(self.is_noise.mean()) if len(self.is_noise) else 0.0


def flip_pairs(n: int, rate: float, *, seed: int | None = 0) -> np.ndarray:
    """Mask of pairs to flip: exactly ``round(rate·n)`` of the ``n`` pairs, chosen uniformly without replacement.

    An exact count (not a Bernoulli draw per pair) so that the realised flip rate equals the requested one up to
    rounding, which makes estimator-recovery checks sharper.

    Args:
        n: number of pairs (>= 0).
        rate: flip rate ε in [0, 1] (robust DPO needs ε < 1/2, injection does not).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        (n,) bool mask, true for the flipped pairs.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1]; got {rate}")
    k = int(round(rate * n))
    mask = np.zeros(n, dtype=bool)
    if k:
        mask[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    return mask


def apply_flips(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reverse binary labels where ``mask`` is true: ``1 − label`` (bool labels stay bool).

    Args:
        labels: (n,) labels in {0, 1} (or bool). mask: (n,) bool.

    Returns:
        a new (n,) array of the same dtype; the input is not modified.
    """
    labels = np.asarray(labels)
    mask = np.asarray(mask, dtype=bool)
    if labels.shape != mask.shape:
        raise ValueError(f"labels and mask must have equal shape; got {labels.shape} and {mask.shape}")
    if labels.dtype == bool:
        return labels ^ mask
    if np.any((labels != 0) & (labels != 1)):
        raise ValueError("apply_flips needs binary labels in {0, 1}")
    return np.where(mask, 1 - labels, labels).astype(labels.dtype)


def flip_labels(labels: np.ndarray, noise_matrix: np.ndarray, *, seed: int | None = 0) -> FlippedLabels:
    """Class-conditional flips: each example of true class ``j`` gets label ``i`` with probability
    ``noise_matrix[i, j]`` (independent draws, so the realised rates vary binomially around the matrix).

    Args:
        labels: (n,) true labels in ``[0, K)``.
        noise_matrix: (K, K) ``P(observed = i | true = j)``; non-negative, each column sums to 1.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        :class:`FlippedLabels` with the new labels and the mask of changed ones.
    """
    nm = np.asarray(noise_matrix, dtype=np.float64)
    y = np.asarray(labels)
    if nm.ndim != 2 or nm.shape[0] != nm.shape[1]:
        raise ValueError(f"noise_matrix must be square (K, K); got {nm.shape}")
    k = nm.shape[0]
    if not np.all(np.isfinite(nm)) or nm.min() < 0:
        raise ValueError("noise_matrix must hold probabilities >= 0")
    if not np.allclose(nm.sum(axis=0), 1.0, atol=1e-6):
        raise ValueError(
            f"each column of noise_matrix (a true class) must sum to 1; column sums are {nm.sum(axis=0).tolist()}"
        )
    if y.ndim != 1 or y.dtype.kind not in "iub":
        raise ValueError("labels must be a 1-D integer array")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must be in [0, {k})")
    cum = np.cumsum(nm, axis=0)  # (K, K): cum[i, j] = P(observed <= i | true j)
    cum[-1, :] = 1.0
    u = np.random.default_rng(seed).random(len(y))
    # new label = first i with u < cum[i, true]
    new = (u[:, None] >= cum[:, y].T).sum(axis=1).astype(np.int64)
    return FlippedLabels(labels=new, is_flipped=new != y)


def add_random_interactions(
    users: np.ndarray,
    items: np.ndarray,
    n_items: int,
    ratio: float,
    *,
    seed: int | None = 0,
    max_rounds: int = 100,
) -> InjectedInteractions:
    """PLD's noise protocol: per user, add ``⌊ratio·|train_u|⌋`` uniformly random items the user never interacted with.

    Zhang et al., "Personalized Denoising Implicit Feedback for Robust Recommender System", WWW 2025, section
    5.1. Apply it to the training part only. Every added item is distinct from the user's existing items and
    from the other added ones. Users absent from ``users`` get nothing.

    Vectorised rejection sampling: each round draws, for all users still short, an oversampled batch of
    candidates, rejects existing or already-added pairs by a sorted lookup of ``user·n_items + item`` keys and
    duplicates within the batch, and keeps a uniformly random subset of the survivors (random priorities), so
    each user's added set is a uniformly random subset of their unobserved items.

    Args:
        users, items: (n,) int64 COO arrays of the training interactions; no duplicate pairs; ids >= 0 and
            ``items < n_items``.
        n_items: number of items in the catalogue.
        ratio: r >= 0 (PLD uses 0.1 … 0.5).
        seed: seed of ``numpy.random.default_rng``.
        max_rounds: rejection rounds before giving up (never reached unless users are nearly saturated).

    Returns:
        :class:`InjectedInteractions`, original and added interactions together, sorted by (user, item), with
        ``is_noise`` marking the added ones.

    Raises:
        ValueError: bad shapes or ids, duplicate pairs, negative ratio, or a user with too few unobserved items.
    """
    u = np.asarray(users)
    it = np.asarray(items)
    if u.ndim != 1 or u.shape != it.shape:
        raise ValueError(f"users and items must be 1-D of equal length; got {u.shape} and {it.shape}")
    if u.dtype.kind not in "iu" or it.dtype.kind not in "iu":
        raise ValueError("users and items must be integer arrays")
    u = u.astype(np.int64)
    it = it.astype(np.int64)
    if ratio < 0:
        raise ValueError(f"ratio must be >= 0; got {ratio}")
    if n_items <= 0:
        raise ValueError(f"n_items must be positive; got {n_items}")
    if len(u) and (u.min() < 0 or it.min() < 0 or it.max() >= n_items):
        raise ValueError(f"ids must be >= 0 and items < n_items ({n_items})")
    keys = u * n_items + it
    existing = np.sort(keys)
    if len(existing) > 1 and np.any(existing[1:] == existing[:-1]):
        raise ValueError("users/items contain duplicate (user, item) pairs; deduplicate the log first")

    uniq_users, per_user = np.unique(u, return_counts=True)
    need = np.floor(ratio * per_user + 1e-9).astype(np.int64)
    free = n_items - per_user
    if np.any(need > free):
        bad = int(uniq_users[np.argmax(need > free)])
        raise ValueError(
            f"user {bad} needs {need[need > free][0]} added items but has only {free[need > free][0]} unobserved ones"
        )
    rng = np.random.default_rng(seed)
    taken = existing  # sorted keys to avoid
    added_chunks: list[np.ndarray] = []
    pending = need > 0
    remaining = need.copy()
    for _ in range(max_rounds):
        if not pending.any():
            break
        pu = uniq_users[pending]
        pr = remaining[pending]
        pfree = free[pending] - (need[pending] - pr)
        # Oversample by the inverse acceptance rate, with slack for small counts.
        draw = np.ceil(pr * (n_items / np.maximum(pfree, 1)) * 1.2 + 4).astype(np.int64)
        cand_u = np.repeat(pu, draw)
        cand_i = rng.integers(0, n_items, size=len(cand_u))
        cand = cand_u * n_items + cand_i
        pos = np.searchsorted(taken, cand)
        pos = np.minimum(pos, len(taken) - 1) if len(taken) else pos
        ok = ~(taken[pos] == cand) if len(taken) else np.ones(len(cand), bool)
        cand = cand[ok]
        cand_u = cand_u[ok]
        # Deduplicate within the batch, then keep a random subset of size remaining per user.
        cand, first = np.unique(cand, return_index=True)
        cand_u = cand_u[first]
        prio = rng.random(len(cand))
        order = np.lexsort((prio, cand_u))
        cand, cand_u = cand[order], cand_u[order]
        grp_users, grp_start = np.unique(cand_u, return_index=True)
        grp_sizes = np.diff(np.append(grp_start, len(cand_u)))
        rank = np.arange(len(cand_u)) - np.repeat(grp_start, grp_sizes)
        user_slot = np.searchsorted(uniq_users, cand_u)
        keep = rank < remaining[user_slot]
        chosen = cand[keep]
        got = np.bincount(user_slot[keep], minlength=len(uniq_users))
        remaining = remaining - got
        pending = remaining > 0
        added_chunks.append(chosen)
        taken = np.union1d(taken, chosen) if len(chosen) else taken
    else:
        if pending.any():
            raise RuntimeError("rejection sampling did not finish; users are too close to saturation")
    added = np.concatenate(added_chunks) if added_chunks else np.zeros(0, np.int64)
    all_keys = np.concatenate([keys, added])
    is_noise = np.concatenate([np.zeros(len(keys), bool), np.ones(len(added), bool)])
    order = np.argsort(all_keys, kind="stable")
    all_keys = all_keys[order]
    return InjectedInteractions(
        users=all_keys // n_items, items=all_keys % n_items, is_noise=is_noise[order]
    )
