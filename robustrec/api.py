"""A small Python API in the shape of ``implicit`` (0.7).

    >>> from robustrec import Recommender, ranking_metrics_at_k
    >>> model = Recommender(loss="bpr", epochs=20).fit(split.train)
    >>> ids, scores = model.recommend(0, N=10)                    # user index 0, training items filtered
    >>> ids, scores = model.recommend(users, train[users], N=10)  # implicit's call: one user_items row per user
    >>> ids, scores = model.similar_items(3, N=5)                 # cosine on the item factors, item 3 first
    >>> model.recommend_frame(["alice", "bob"], N=20)             # raw ids in, DataFrame user, item, rank, score
    >>> model.save("models/bpr"); Recommender.load("models/bpr"); Recommender.from_run("runs/gowalla")
    >>> ranking_metrics_at_k(model, split.train, split.test, K=20)["ndcg@20"]

Array methods (``recommend``, ``similar_items``, ``similar_users``) take and return the contiguous indices of
an ``Interactions`` (rows / columns of its CSR matrix), as implicit does; the ``*_frame`` helpers take and return
raw ids (``user_ids`` / ``item_ids``, kept from the ``Interactions`` the model was fitted on).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from robustrec import persistence
from robustrec.config import TrainConfig
from robustrec.data import Interactions
from robustrec.evaluate import ranking_metrics
from robustrec.training import FitResult, fit

#: Columns of :meth:`Recommender.recommend_frame` (and of ``python -m robustrec recommend``'s output).
RECOMMENDATION_COLUMNS: tuple[str, ...] = ("user", "item", "rank", "score")
#: Scores computed at once (queries x candidates) when many users are scored in batches: 64 MB of float32.
SCORE_BUDGET = 2**24


def _csr(data: Interactions | sp.spmatrix) -> sp.csr_matrix:
    return data.matrix if isinstance(data, Interactions) else sp.csr_matrix(data)


def _indices(values, n: int, what: str) -> np.ndarray:
    """(m,) int64 indices of ``values`` (scalar or array of ints), IndexError when outside [0, n)."""
    array = np.atleast_1d(np.asarray(values))
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integer indices, got {array.dtype} values such as {array[0]!r}; "
                        f"raw ids go to the *_frame methods")
    array = array.astype(np.int64).ravel()
    if array.size and (array.min() < 0 or array.max() >= n):
        raise IndexError(f"{what} index out of range [0, {n}): {array[(array < 0) | (array >= n)][:5].tolist()}")
    return array


def top_n(queries: torch.Tensor, candidates: torch.Tensor, n: int, *, exclude: sp.csr_matrix | None = None,
          filter_ids: np.ndarray | None = None, only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best ``n`` candidates of every query by dot product: ids (b, n) int64 and scores (b, n) float32.

    Args:
        queries: (b, D); candidates: (m, D), on one device.
        exclude: (b, m) CSR, row i the candidates never returned for query i (score -inf).
        filter_ids: candidate ids never returned for any query.
        only: rank only these candidate ids (others are never returned).

    Slots with no candidate left hold score -inf (their ids mean nothing).
    """
    device = candidates.device
    pool = candidates if only is None else candidates[torch.from_numpy(only).to(device)]
    scores = queries @ pool.T  # (b, m or |only|)
    position = None
    if only is not None:  # candidate id -> column of ``scores``
        position = np.full(candidates.shape[0], -1, np.int64)
        position[only] = np.arange(only.size)
    minus_inf = torch.tensor(float("-inf"), dtype=scores.dtype, device=device)
    if exclude is not None and exclude.nnz:
        rows = np.repeat(np.arange(exclude.shape[0], dtype=np.int64), np.diff(exclude.indptr))
        cols = exclude.indices.astype(np.int64)
        if position is not None:
            rows, cols = rows[position[cols] >= 0], position[cols][position[cols] >= 0]
        scores.index_put_((torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)), minus_inf)
    if filter_ids is not None and len(filter_ids):
        cols = np.asarray(filter_ids, np.int64) if position is None else position[filter_ids]
        scores[:, torch.from_numpy(cols[cols >= 0]).to(device)] = minus_inf
    values, ids = torch.topk(scores, min(n, scores.shape[1]), dim=1)
    ids = ids.cpu().numpy()
    return (ids if only is None else only[ids]), values.cpu().numpy()


class Recommender:
    """Train a model on a users × items log, recommend from it, save and load it.

    Args:
        config: a full :class:`~robustrec.config.TrainConfig`; or keyword overrides of its fields.

    After :meth:`fit` or :meth:`load`: ``user_factors`` (n_users, D) and ``item_factors`` (n_items, D) are the
    factors whose products are the scores (LightGCN: propagated), ``user_ids`` / ``item_ids`` the raw ids,
    ``user_items`` the training interactions (filtered from recommendations), ``model`` the ``nn.Module``.
    """

    def __init__(self, config: TrainConfig | None = None, **overrides) -> None:
        if config is not None and overrides:
            raise TypeError("pass either a TrainConfig or keyword overrides, not both")
        self.config = config or TrainConfig(**overrides)
        self.result: FitResult | None = None
        self.history: list[dict] = []
        self._artefact: persistence.Artefact | None = None
        self._model: torch.nn.Module | None = None

    # ------------------------------------------------------------------ training, saving, loading
    def fit(
        self,
        user_items: Interactions | sp.spmatrix,
        *,
        validation: Interactions | sp.spmatrix | None = None,
        show_progress: bool = True,
    ) -> "Recommender":
        """Train on ``user_items`` (n_users, n_items); early-stop on ``validation`` when given.

        With an :class:`Interactions`, its raw ids are kept for the ``*_frame`` methods and :meth:`save`.
        """
        self.config.warn_schedule()
        train = _csr(user_items)
        ids = (user_items.user_ids, user_items.item_ids) if isinstance(user_items, Interactions) else (
            np.arange(train.shape[0]), np.arange(train.shape[1]))
        valid = _csr(validation) if validation is not None else None
        self.result = fit(self.config, train, valid, progress=show_progress)
        self.history = self.result.history
        self._artefact = persistence.from_model(self.config, self.result.model, train, *ids)
        self._model = self.result.model
        return self

    def save(self, path: str | Path) -> Path:
        """Write the recommender into the directory ``path`` (safetensors + JSON, see
        :mod:`robustrec.persistence`): factors, model tables, training interactions, raw ids, config."""
        return persistence.save(path, self._require())

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> "Recommender":
        """A recommender saved by :meth:`save` (or a run directory), scores identical to the saved one's."""
        return cls._from_artefact(persistence.load(path, device=device))

    @classmethod
    def from_run(cls, run_dir: str | Path, *, device: str | torch.device = "cpu") -> "Recommender":
        """The recommender of a finished ``python -m robustrec train`` run directory."""
        from robustrec import runs

        return cls._from_artefact(runs.load_artefact(run_dir, device=device))

    @classmethod
    def _from_artefact(cls, artefact: persistence.Artefact) -> "Recommender":
        self = cls(artefact.config)
        self._artefact = artefact
        return self

    def __getstate__(self) -> dict:
        # the live training module holds FBGEMM objects that cannot be pickled; the artefact rebuilds it
        return {**self.__dict__, "result": None, "_model": None}

    def _require(self) -> persistence.Artefact:
        if self._artefact is None:
            raise RuntimeError("call fit() or load() before using the model")
        return self._artefact

    # ------------------------------------------------------------------ what the model holds
    @property
    def user_factors(self) -> torch.Tensor:
        """(n_users, D)."""
        return self._require().user_factors

    @property
    def item_factors(self) -> torch.Tensor:
        """(n_items, D)."""
        return self._require().item_factors

    @property
    def user_ids(self) -> np.ndarray:
        """(n_users,) raw id of each user index."""
        return self._require().user_ids

    @property
    def item_ids(self) -> np.ndarray:
        """(n_items,) raw id of each item index."""
        return self._require().item_ids

    @property
    def user_items(self) -> sp.csr_matrix:
        """(n_users, n_items) CSR of the training interactions."""
        return self._require().seen

    @property
    def model(self) -> torch.nn.Module:
        """The trained ``nn.Module`` (after :meth:`load`: rebuilt on plain torchrec tables, no optimizer)."""
        if self._model is None:
            self._model = persistence.rebuild_model(self._require(), device=self.user_factors.device)
        return self._model

    def user_index(self, raw_ids) -> np.ndarray:
        """(m,) int64 user index of each raw id, -1 where the id is unknown."""
        return pd.Index(self.user_ids).get_indexer(np.atleast_1d(np.asarray(raw_ids, dtype=object))).astype(np.int64)

    def item_index(self, raw_ids) -> np.ndarray:
        """(m,) int64 item index of each raw id, -1 where the id is unknown."""
        return pd.Index(self.item_ids).get_indexer(np.atleast_1d(np.asarray(raw_ids, dtype=object))).astype(np.int64)

    # ------------------------------------------------------------------ implicit's methods (indices)
    def _liked(self, users: np.ndarray, user_items) -> sp.csr_matrix:
        """(len(users), n_items) CSR of the items to filter for each requested user."""
        n_users, n_items = self.user_items.shape
        if user_items is None:
            return self.user_items[users]
        if not isinstance(user_items, (Interactions, sp.spmatrix, sp.sparray)):
            raise TypeError(f"user_items must be a sparse matrix or Interactions, got {type(user_items).__name__}"
                            " (pass N by keyword: recommend(userid, N=10))")
        matrix = _csr(user_items)
        if matrix.shape[1] != n_items:
            raise ValueError(f"user_items has {matrix.shape[1]} columns, the model {n_items} items")
        if matrix.shape[0] == len(users):  # implicit's convention: row i belongs to userid[i]
            return matrix
        if matrix.shape[0] == n_users:
            return matrix[users]
        raise ValueError(f"user_items must have one row per requested user ({len(users)}) or one per user of "
                         f"the model ({n_users}), got {matrix.shape[0]}")

    def recommend(
        self,
        userid: int | np.ndarray,
        user_items: Interactions | sp.spmatrix | None = None,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: np.ndarray | None = None,
        items: np.ndarray | None = None,
        *,
        filter_seen: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` item indices and scores of a user index ((N,) each) or of an array of them ((n, N) each).

        Args:
            userid: user index or array of user indices.
            user_items: the items to filter when ``filter_already_liked_items``: a CSR with one row per entry of
                ``userid`` (implicit's convention; ``train[userid]``) or the whole (n_users, n_items) matrix.
                Default: the training interactions.
            N: number of items.
            filter_already_liked_items: never return the items of ``user_items``.
            filter_items: item indices never returned, for every user.
            items: rank only these item indices.
            filter_seen: the 0.1 name of ``filter_already_liked_items`` (deprecated).

        For a single user the slots left without an unfiltered item are dropped; for an array they keep score
        ``-inf``.
        """
        if filter_seen is not None:
            warnings.warn("filter_seen is deprecated; use filter_already_liked_items", FutureWarning, stacklevel=2)
            filter_already_liked_items = filter_seen
        artefact = self._require()
        n_users, n_items = self.user_items.shape
        users = _indices(userid, n_users, "userid")
        liked = self._liked(users, user_items) if filter_already_liked_items else None
        ids, scores = self._batched(artefact.user_factors, users, artefact.item_factors, N, liked,
                                    _optional_indices(filter_items, n_items, "filter_items"),
                                    _optional_indices(items, n_items, "items"))
        if np.ndim(userid) == 0:
            keep = np.isfinite(scores[0])
            return ids[0][keep], scores[0][keep]
        return ids, scores

    def _batched(self, query_factors, queries, candidates, n, exclude=None, filter_ids=None, only=None):
        """:func:`top_n` over ``query_factors[queries]`` in batches of at most :data:`SCORE_BUDGET` scores."""
        step = max(1, SCORE_BUDGET // max(1, candidates.shape[0]))
        parts = [top_n(query_factors[torch.from_numpy(queries[s:s + step]).to(query_factors.device)], candidates,
                       n, exclude=None if exclude is None else exclude[s:s + step], filter_ids=filter_ids, only=only)
                 for s in range(0, len(queries), step)]
        if not parts:
            width = min(n, candidates.shape[0] if only is None else len(only))
            return np.zeros((0, width), np.int64), np.zeros((0, width), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _similar(self, factors: torch.Tensor, query, n: int, filter_ids, only, what: str):
        """Cosine top-``n`` of ``factors[query]`` among ``factors`` (the query itself included, score 1)."""
        norms = factors.norm(dim=1, keepdim=True).clamp_min(1e-10)
        normalised = factors / norms
        index = _indices(query, factors.shape[0], what)
        ids, scores = self._batched(normalised, index, normalised, n,
                                    filter_ids=_optional_indices(filter_ids, factors.shape[0], f"filter_{what}s"),
                                    only=_optional_indices(only, factors.shape[0], f"{what}s"))
        return (ids[0], scores[0]) if np.ndim(query) == 0 else (ids, scores)

    def similar_items(self, itemid: int | np.ndarray, N: int = 10, filter_items: np.ndarray | None = None,
                      items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Item indices most similar to an item index (or an array of them) by cosine of the item factors,
        best first, the item itself included (as in implicit): ids and scores, (N,) or (n, N)."""
        return self._similar(self.item_factors, itemid, N, filter_items, items, "item")

    def similar_users(self, userid: int | np.ndarray, N: int = 10, filter_users: np.ndarray | None = None,
                      users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """User indices most similar to a user index (or an array of them) by cosine of the user factors."""
        return self._similar(self.user_factors, userid, N, filter_users, users, "user")

    # ------------------------------------------------------------------ raw ids and DataFrames
    def _known(self, raw_ids, kind: str) -> np.ndarray:
        index = (self.user_index if kind == "user" else self.item_index)(raw_ids)
        unknown = np.flatnonzero(index < 0)
        if unknown.size:
            sample = np.atleast_1d(np.asarray(raw_ids, dtype=object))[unknown[:5]].tolist()
            raise KeyError(f"{unknown.size} unknown {kind} id(s), e.g. {sample}")
        return index

    def recommendation_batches(
        self,
        users: np.ndarray | None = None,
        N: int = 10,
        *,
        filter_already_liked_items: bool = True,
        filter_items: np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Recommendations of user indices ``users`` (default: every user), one DataFrame per batch, columns
        :data:`RECOMMENDATION_COLUMNS` with raw ids and 1-based ranks; filtered slots are left out."""
        users = np.arange(self.user_items.shape[0]) if users is None else _indices(users, self.user_items.shape[0],
                                                                                   "users")
        step = batch_size or max(1, SCORE_BUDGET // self.user_items.shape[1])
        for start in range(0, len(users), step):
            batch = users[start:start + step]
            ids, scores = self.recommend(batch, N=N, filter_already_liked_items=filter_already_liked_items,
                                         filter_items=filter_items)
            keep = np.isfinite(scores)
            rows = np.repeat(np.arange(len(batch)), keep.sum(1))
            yield pd.DataFrame({
                "user": self.user_ids[batch[rows]], "item": self.item_ids[ids[keep]],
                "rank": (np.cumsum(keep, axis=1)[keep]).astype(np.int64), "score": scores[keep],
            }, columns=list(RECOMMENDATION_COLUMNS))

    def recommend_frame(
        self,
        users: Sequence | np.ndarray | None = None,
        N: int = 10,
        *,
        filter_already_liked_items: bool = True,
        filter_items: Sequence | np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Top-``N`` recommendations of raw user ids ``users`` (default: every user), one row per (user, item):
        columns ``user, item, rank, score``, raw ids, rank 1 first. ``filter_items`` are raw item ids.

        Raises:
            KeyError: a raw user or item id the model does not know (the count and a few are named).
        """
        index = None if users is None else self._known(users, "user")
        exclude = None if filter_items is None else self._known(filter_items, "item")
        frames = list(self.recommendation_batches(index, N, filter_already_liked_items=filter_already_liked_items,
                                                  filter_items=exclude))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RECOMMENDATION_COLUMNS))

    def _similar_frame(self, raw_ids, N: int, kind: str) -> pd.DataFrame:
        index = self._known(raw_ids, kind)
        ids, scores = (self.similar_items if kind == "item" else self.similar_users)(index, N=N + 1)
        other = ids != index[:, None]  # the query itself is left out
        rank = np.cumsum(other, axis=1)
        keep = other & (rank <= N) & np.isfinite(scores)
        raw = self.item_ids if kind == "item" else self.user_ids
        rows = np.repeat(np.arange(len(index)), keep.sum(1))
        return pd.DataFrame({kind: raw[index[rows]], f"similar_{kind}": raw[ids[keep]],
                             "rank": rank[keep].astype(np.int64), "score": scores[keep]})

    def similar_items_frame(self, items: Sequence | np.ndarray, N: int = 10) -> pd.DataFrame:
        """The ``N`` items most similar to each raw item id (itself left out): columns ``item, similar_item,
        rank, score`` (cosine)."""
        return self._similar_frame(items, N, "item")

    def similar_users_frame(self, users: Sequence | np.ndarray, N: int = 10) -> pd.DataFrame:
        """The ``N`` users most similar to each raw user id (itself left out): columns ``user, similar_user,
        rank, score`` (cosine)."""
        return self._similar_frame(users, N, "user")


def _optional_indices(values, n: int, what: str) -> np.ndarray | None:
    return None if values is None else _indices(values, n, what)


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
