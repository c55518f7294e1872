"""A small Python API in the style of ``implicit``.

    >>> from robustrec import Recommender, ranking_metrics_at_k
    >>> model = Recommender(loss="bpr", epochs=20).fit(split.train)
    >>> ids, scores = model.recommend(0, N=10)               # user index 0, training items filtered
    >>> ranking_metrics_at_k(model, split.train, split.test, K=20)["ndcg@20"]

Users and items are the contiguous indices of an ``Interactions`` (rows / columns
of its CSR matrix); ``Interactions.user_ids`` / ``item_ids`` map them back to raw ids.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from robustrec.data import Interactions
from robustrec.evaluate import ranking_metrics, top_k_items
from robustrec.models import PREFERENCE
from robustrec.config import TrainConfig
from robustrec.training import FitResult, fit


def _csr(data: Interactions | sp.spmatrix) -> sp.csr_matrix:
    return data.matrix if isinstance(data, Interactions) else sp.csr_matrix(data)


class Recommender:
    """Train a model on a users × items log and recommend from it.

    Args:
        config: a full :class:`~robustrec.training.TrainConfig`; or keyword overrides of its fields.
    """

    def __init__(self, config: TrainConfig | None = None, **overrides) -> None:
        if config is not None and overrides:
            raise TypeError("pass either a TrainConfig or keyword overrides, not both")
        self.config = config or TrainConfig(**overrides)
        self.result: FitResult | None = None
        self._train: sp.csr_matrix | None = None
        self._factors: tuple[torch.Tensor, torch.Tensor] | None = None

    def fit(
        self,
        user_items: Interactions | sp.spmatrix,
        *,
        validation: Interactions | sp.spmatrix | None = None,
        show_progress: bool = True,
    ) -> "Recommender":
        """Train on ``user_items`` (n_users, n_items); early-stop on ``validation`` when given."""
        self._train = _csr(user_items)
        valid = _csr(validation) if validation is not None else None
        self.result = fit(self.config, self._train, valid, progress=show_progress)
        self._factors = self.result.model.embedding_matrices(PREFERENCE)
        return self

    @property
    def user_factors(self) -> torch.Tensor:
        """(n_users, D)."""
        return self._require()[0]

    @property
    def item_factors(self) -> torch.Tensor:
        """(n_items, D)."""
        return self._require()[1]

    def _require(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._factors is None:
            raise RuntimeError("call fit() before using the model")
        return self._factors

    def recommend(
        self,
        user: int | np.ndarray,
        N: int = 10,
        *,
        filter_seen: bool = True,
        user_items: Interactions | sp.spmatrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` items of a user index (ids (N,), scores (N,)) or of an array of users ((n, N) each).

        ``filter_seen`` drops the items in ``user_items`` (default: the training log).
        """
        users_f, items_f = self._require()
        users = np.atleast_1d(np.asarray(user, dtype=np.int64))
        if users.min() < 0 or users.max() >= users_f.shape[0]:
            raise IndexError(f"user index out of range [0, {users_f.shape[0]}): {users.tolist()[:5]}")
        exclude = (_csr(user_items) if user_items is not None else self._train) if filter_seen else None
        ids, scores = top_k_items(users_f, items_f, users, N, exclude=exclude)
        ids, scores = ids.cpu().numpy(), scores.cpu().numpy()
        if exclude is not None:  # users with fewer than N unseen items: drop the masked tail
            keep = np.isfinite(scores)
            if not keep.all() and np.ndim(user) == 0:
                return ids[0][keep[0]], scores[0][keep[0]]
        return (ids[0], scores[0]) if np.ndim(user) == 0 else (ids, scores)


def ranking_metrics_at_k(
    model: Recommender,
    train_user_items: Interactions | sp.spmatrix,
    test_user_items: Interactions | sp.spmatrix,
    K: int = 10,
) -> dict[str, float]:
    """Recall, NDCG, Precision, Hit and MRR at ``K`` over users with test items, training items masked."""
    return ranking_metrics(
        model.user_factors, model.item_factors, _csr(train_user_items), _csr(test_user_items), ks=(K,)
    )
