"""A realistic synthetic implicit-feedback log — the embedded default data when no real data is given.

Generative model (all draws from one ``numpy.random.default_rng(seed)``):

* preferences: user factors ``P (n_users, dim)`` and item factors ``Q (n_items, dim)``, i.i.d. normal with
  variance ``dim**-0.5`` so that the affinity ``P_u · Q_i`` has unit variance;
* long-tail popularity: item i gets a popularity rank ``r_i`` (a random permutation) and a log-popularity bias
  ``b_i = -popularity_exponent · log(r_i + 1)`` (Zipf-like);
* varied activity: user u makes ``n_u ~ LogNormal`` interactions with mean ``mean_activity`` and log-std
  ``activity_sigma``, clipped to ``[min_activity, max_activity_share · n_items]``;
* choice: user u's ``n_u`` distinct items are a draw without replacement from
  ``softmax(affinity_scale · P_u · Q_i + b_i)`` over items, done for all users of a chunk at once with the
  Gumbel-top-k trick (the k largest of logits + Gumbel noise are a sample without replacement);
* a clean per-user random test set (:func:`~robustrec.data.split.random_holdout`, ``test_fraction``).

Both preference and popularity are learnable from the training part: a factorisation model recovers the
user-specific part and beats a popularity ranking on the test part by a wide margin (checked in the tests).
"""

from __future__ import annotations

import numpy as np

from robustrec.data.interactions import Interactions
from robustrec.data.split import Split, random_holdout

__all__ = ["generate", "hide_positives"]

_CHUNK = 512  # users per Gumbel-top-k block: (512, n_items) float32 logits at a time


def generate(
    *,
    n_users: int = 5000,
    n_items: int = 3000,
    dim: int = 16,
    mean_activity: float = 30,
    seed: int = 0,
    test_fraction: float = 0.2,
    affinity_scale: float = 3.5,
    popularity_exponent: float = 1.4,
    activity_sigma: float = 0.8,
    min_activity: int = 5,
    max_activity_share: float = 0.25,
) -> Split:
    """Generate a synthetic implicit-feedback log and its clean per-user test split.

    Args:
        n_users, n_items: size of the ``(n_users, n_items)`` log.
        dim: number of latent preference factors.
        mean_activity: mean number of interactions per user (before the train/test split).
        seed: seed of every random draw; equal seeds give identical splits.
        test_fraction: share of each user's interactions held out for test (see ``random_holdout``).
        affinity_scale: weight of the latent affinity in the choice logits (higher: more personal, less popular).
        popularity_exponent: Zipf exponent of the popularity bias (higher: longer tail).
        activity_sigma: log-std of the per-user activity.
        min_activity: fewest interactions any user has.
        max_activity_share: most interactions a user has, as a share of ``n_items``.

    Returns:
        ``Split`` (``validation=None``) with ``user_ids = arange(n_users)``, ``item_ids = arange(n_items)``.
    """
    if n_users < 1 or n_items < 2 or dim < 1:
        raise ValueError("need n_users >= 1, n_items >= 2, dim >= 1")
    max_activity = max(min_activity, int(max_activity_share * n_items))
    if min_activity < 1 or min_activity > n_items:
        raise ValueError(f"min_activity must be in [1, n_items], got {min_activity}")
    rng = np.random.default_rng(seed)
    scale = dim**-0.25
    user_f = (rng.standard_normal((n_users, dim)) * scale).astype(np.float32)
    item_f = (rng.standard_normal((n_items, dim)) * scale).astype(np.float32)
    rank = rng.permutation(n_items)
    bias = (-popularity_exponent * np.log1p(rank)).astype(np.float32)

    mu = np.log(mean_activity) - activity_sigma**2 / 2  # lognormal with mean = mean_activity
    activity = np.rint(rng.lognormal(mu, activity_sigma, n_users)).astype(np.int64)
    activity = np.clip(activity, min_activity, max_activity)

    users = np.repeat(np.arange(n_users, dtype=np.int64), activity)
    items = np.empty(len(users), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(activity)])
    for lo in range(0, n_users, _CHUNK):
        hi = min(lo + _CHUNK, n_users)
        logits = affinity_scale * (user_f[lo:hi] @ item_f.T) + bias
        logits -= np.log(-np.log(rng.random(logits.shape, dtype=np.float32) + np.float32(1e-20)))  # + Gumbel
        n_u = activity[lo:hi]
        k = int(n_u.max())
        top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(logits, top, 1), axis=1), 1)
        take = np.arange(k) < n_u[:, None]  # first n_u of each user's ordered top-k
        items[offsets[lo] : offsets[hi]] = top[take]
    log = Interactions.from_indices(users, items, n_users=n_users, n_items=n_items)
    return random_holdout(log, test_fraction=test_fraction, seed=seed)


def hide_positives(split: Split, share: float, *, seed: int = 0) -> Split:
    """``split`` with ``share`` of each user's training interactions hidden: taken out of train (each user keeps at
    least one) and added to the test part, since they are true positives the log does not show — the hidden
    positives that NBPO's φ models (Yu & Qin 2020). The validation part is unchanged.

    Hidden uniformly at random, this is positive-unlabeled data whose label frequency P(observed | positive) is
    about ``1 - share`` of the training part's.
    """
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share}")
    if share == 0:
        return split
    kept = random_holdout(split.train, test_fraction=share, seed=seed)
    test_users, test_items = split.test.coo()
    hidden_users, hidden_items = kept.test.coo()
    test = Interactions.from_indices(np.concatenate([test_users, hidden_users]),
                                     np.concatenate([test_items, hidden_items]), n_users=split.n_users,
                                     n_items=split.n_items, user_ids=split.user_ids, item_ids=split.item_ids)
    return Split(train=kept.train, test=test, validation=split.validation, report=split.report)
