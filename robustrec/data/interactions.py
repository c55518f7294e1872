"""The users × items implicit-feedback log every other stage consumes.

An :class:`Interactions` is a CSR matrix with one stored 1.0 per observed (user, item) pair, the raw id of each
row and column, and optionally the rating and timestamp of each pair on the same sparsity pattern. Indices are
contiguous ``0..n-1``; raw ids (ints or strings, whatever the log used) live in ``user_ids`` / ``item_ids``.
The "interaction order" used throughout (``coo()``, ``select()``, noise masks) is the CSR order: by user index,
then by item index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from robustrec.data.errors import DataError

if TYPE_CHECKING:
    from robustrec.data.report import LoadReport

__all__ = ["Interactions"]

Locate = Callable[[int], dict[str, Any]]
"""Maps a 0-based row position to DataError location keywords (``line=`` or ``where=``)."""


def _frame_rows(df: pd.DataFrame) -> Locate:
    return lambda pos: {"where": f"row {pos} (index {df.index[pos]!r})"}


@dataclass(frozen=True, eq=False)
class Interactions:
    """users × items implicit-feedback log.

    Attributes:
        matrix: ``(n_users, n_items)`` float32 CSR, 1.0 per observed (user, item); sorted indices, no duplicates.
        user_ids: ``(n_users,)`` raw id of each user index.
        item_ids: ``(n_items,)`` raw id of each item index.
        ratings: ``(n_users, n_items)`` CSR with the same sparsity pattern holding rating values, or ``None``.
        timestamps: ``(n_users, n_items)`` float64 CSR with the same pattern holding timestamps, or ``None``.
        report: how a loader produced this log (counts of merged/dropped rows), ``None`` when built in memory.
            Not part of equality.
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    ratings: sp.csr_matrix | None = None
    timestamps: sp.csr_matrix | None = None
    report: LoadReport | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        m = self.matrix
        if not (sp.issparse(m) and m.format == "csr"):
            raise TypeError(f"Interactions.matrix must be a scipy CSR matrix, got {type(m).__name__}")
        user_ids, item_ids = np.asarray(self.user_ids), np.asarray(self.item_ids)
        object.__setattr__(self, "user_ids", user_ids)
        object.__setattr__(self, "item_ids", item_ids)
        if user_ids.ndim != 1 or item_ids.ndim != 1 or m.shape != (len(user_ids), len(item_ids)):
            raise DataError(
                f"matrix shape {m.shape} does not match user_ids {user_ids.shape} and item_ids {item_ids.shape}"
            )
        if m.dtype != np.float32:
            raise DataError("Interactions.matrix must be float32", value=str(m.dtype))
        if not m.has_canonical_format:
            raise DataError("Interactions.matrix must have sorted indices and no duplicate entries")
        if m.nnz and not np.all(m.data == 1.0):
            raise DataError("Interactions.matrix must store 1.0 for every observed pair")
        for name in ("ratings", "timestamps"):
            other = getattr(self, name)
            if other is None:
                continue
            if not (sp.issparse(other) and other.format == "csr"):
                raise TypeError(f"Interactions.{name} must be a scipy CSR matrix, got {type(other).__name__}")
            if (
                other.shape != m.shape
                or not np.array_equal(other.indptr, m.indptr)
                or not np.array_equal(other.indices, m.indices)
            ):
                raise DataError(f"Interactions.{name} must have the same sparsity pattern as matrix")

    def __eq__(self, other: object) -> bool:
        """Same ids, same pattern, same ratings/timestamps (``report`` ignored)."""
        if not isinstance(other, Interactions):
            return NotImplemented
        if self.matrix.shape != other.matrix.shape:
            return False
        if not (np.array_equal(self.user_ids, other.user_ids) and np.array_equal(self.item_ids, other.item_ids)):
            return False
        for name in ("matrix", "ratings", "timestamps"):
            a, b = getattr(self, name), getattr(other, name)
            if (a is None) != (b is None):
                return False
            if a is not None and not (
                np.array_equal(a.indptr, b.indptr)
                and np.array_equal(a.indices, b.indices)
                and np.array_equal(a.data, b.data)
            ):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # mutable numpy contents

    # ------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    @property
    def n_interactions(self) -> int:
        return int(self.matrix.nnz)

    def __len__(self) -> int:
        return self.n_interactions

    def __repr__(self) -> str:
        extra = "".join(f", {n}" for n in ("ratings", "timestamps") if getattr(self, n) is not None)
        return (
            f"Interactions(n_users={self.n_users:,}, n_items={self.n_items:,}, "
            f"n_interactions={self.n_interactions:,}{extra})"
        )

    # ------------------------------------------------------------------ views
    def user_items(self, u: int) -> np.ndarray:
        """``(n_u,)`` int64 sorted item indices user index ``u`` interacted with."""
        m = self.matrix
        return m.indices[m.indptr[u] : m.indptr[u + 1]].astype(np.int64)

    def user_counts(self) -> np.ndarray:
        """``(n_users,)`` int64 number of interactions of each user."""
        return np.diff(self.matrix.indptr).astype(np.int64)

    def item_counts(self) -> np.ndarray:
        """``(n_items,)`` int64 number of interactions of each item (popularity)."""
        return np.bincount(self.matrix.indices, minlength=self.n_items).astype(np.int64)

    def coo(self) -> tuple[np.ndarray, np.ndarray]:
        """``(users, items)``: two ``(n_interactions,)`` int64 index arrays in interaction (CSR) order."""
        m = self.matrix
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(m.indptr))
        return users, m.indices.astype(np.int64)

    def to_frame(self) -> pd.DataFrame:
        """One row per interaction in CSR order: columns ``user``, ``item`` (raw ids) and, when present,
        ``rating`` and ``timestamp``."""
        users, items = self.coo()
        cols: dict[str, np.ndarray] = {"user": self.user_ids[users], "item": self.item_ids[items]}
        if self.ratings is not None:
            cols["rating"] = self.ratings.data
        if self.timestamps is not None:
            cols["timestamp"] = self.timestamps.data
        return pd.DataFrame(cols)

    def select(self, mask: np.ndarray) -> Interactions:
        """Keep the interactions where ``mask`` is True; same index space (ids unchanged).

        Args:
            mask: ``(n_interactions,)`` bool, in interaction (CSR) order.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.n_interactions,):
            raise ValueError(f"mask must have shape ({self.n_interactions},), got {mask.shape}")
        m = self.matrix
        users, _ = self.coo()
        indptr = np.zeros(self.n_users + 1, dtype=m.indptr.dtype)
        np.cumsum(np.bincount(users[mask], minlength=self.n_users), out=indptr[1:])
        indices = m.indices[mask]

        def sub(x: sp.csr_matrix | None) -> sp.csr_matrix | None:
            if x is None:
                return None
            return _csr(x.data[mask], indices, indptr, m.shape)

        return Interactions(
            _csr(np.ones(len(indices), np.float32), indices, indptr, m.shape),
            self.user_ids,
            self.item_ids,
            sub(self.ratings),
            sub(self.timestamps),
        )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_indices(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        *,
        n_users: int,
        n_items: int,
        ratings: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
    ) -> Interactions:
        """Build from index arrays; duplicate (user, item) pairs are merged (max rating, latest timestamp).

        Args:
            users, items: ``(n,)`` integer indices in ``[0, n_users)`` / ``[0, n_items)``.
            ratings, timestamps: optional ``(n,)`` values of each row.
            user_ids, item_ids: raw ids, default ``arange(n_users)`` / ``arange(n_items)``.
        """
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError("users and items must be 1-d arrays of the same length")
        for name, idx, n in (("user", users, n_users), ("item", items, n_items)):
            bad = np.flatnonzero((idx < 0) | (idx >= n))
            if len(bad):
                raise DataError(f"{name} index out of range [0, {n})", where=f"row {bad[0]}", value=int(idx[bad[0]]))
        inter, _ = _build(
            users,
            items,
            n_users,
            n_items,
            None if ratings is None else np.asarray(ratings, np.float64),
            None if timestamps is None else np.asarray(timestamps, np.float64),
            np.arange(n_users) if user_ids is None else user_ids,
            np.arange(n_items) if item_ids is None else item_ids,
        )
        return inter

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str | None = None,
        timestamp_col: str | None = None,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        source: str = "<DataFrame>",
    ) -> Interactions:
        """Build from a DataFrame with one row per (user, item) event.

        Index maps: without ``user_ids``/``item_ids``, user (item) indices are the positions of the sorted
        distinct raw ids (order of first appearance when the ids cannot be sorted, e.g. mixed types). With them,
        each raw id is looked up in the given map, so that several logs (train/test) share one index space;
        a raw id absent from the map is an error.

        Duplicates: rows with the same (user, item) are merged into one interaction keeping the **maximum
        rating** and the **latest timestamp** (each taken independently). The number merged is in
        ``result.report.duplicates_merged["all"]``.

        Timestamps may be numeric or datetimes (converted to float seconds since the epoch).

        Raises:
            DataError: missing column, missing / non-numeric value, or id not in a given map, naming
                ``source``, the row and the value.
        """
        return _from_frame(
            df,
            user_col=user_col,
            item_col=item_col,
            rating_col=rating_col,
            timestamp_col=timestamp_col,
            user_ids=user_ids,
            item_ids=item_ids,
            source=source,
            locate=_frame_rows(df),
            fmt="DataFrame",
        )


# ---------------------------------------------------------------------- helpers (used by loaders and splits)
def _csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR from canonical (sorted, unique) parts without re-checking or copying."""
    m = sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)
    m.has_sorted_indices = True
    m.has_canonical_format = True
    return m


def _build(
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    n_items: int,
    ratings: np.ndarray | None,
    timestamps: np.ndarray | None,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
) -> tuple[Interactions, int]:
    """Canonical Interactions from in-range index arrays, merging duplicates; returns it and the number merged."""
    key = users * np.int64(max(n_items, 1)) + items
    if len(key) > 1 and not np.all(key[1:] > key[:-1]):
        order = np.argsort(key, kind="stable")
        key = key[order]
        ratings = None if ratings is None else ratings[order]
        timestamps = None if timestamps is None else timestamps[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    n_dup = int(len(key) - first.sum())
    if n_dup:
        starts = np.flatnonzero(first)
        ratings = None if ratings is None else np.maximum.reduceat(ratings, starts)
        timestamps = None if timestamps is None else np.maximum.reduceat(timestamps, starts)
        key = key[starts]
    rows, cols = np.divmod(key, np.int64(max(n_items, 1)))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    idx_dtype = np.int32 if max(n_items, len(key)) < 2**31 - 1 else np.int64
    indices, indptr = cols.astype(idx_dtype), indptr.astype(idx_dtype)
    shape = (n_users, n_items)
    inter = Interactions(
        _csr(np.ones(len(key), np.float32), indices, indptr, shape),
        user_ids,
        item_ids,
        None if ratings is None else _csr(ratings, indices, indptr, shape),
        None if timestamps is None else _csr(timestamps.astype(np.float64), indices, indptr, shape),
    )
    return inter, n_dup


def _index_map(raw: pd.Series, ids: np.ndarray | None, name: str, source: str, locate: Locate):
    """(codes (n,) int64, ids (k,)) for raw id values; codes index into ids."""
    if raw.isna().any():
        pos = int(np.flatnonzero(raw.isna().to_numpy())[0])
        raise DataError(f"missing {name} id", source=source, column=raw.name, value=raw.iloc[pos], **locate(pos))
    if ids is None:
        try:
            codes, uniques = pd.factorize(raw, sort=True)
        except TypeError:  # unsortable mix of types: order of first appearance
            codes, uniques = pd.factorize(raw, sort=False)
        return codes.astype(np.int64), np.asarray(uniques)
    ids = np.asarray(ids)
    index = pd.Index(ids)
    if not index.is_unique:
        raise DataError(f"the given {name}_ids contain duplicates")
    codes = index.get_indexer(raw)
    missing = np.flatnonzero(codes < 0)
    if len(missing):
        pos = int(missing[0])
        raise DataError(
            f"{name} id not in the given {name}_ids ({len(missing):,} such rows)",
            source=source,
            column=raw.name,
            value=raw.iloc[pos],
            **locate(pos),
        )
    return codes.astype(np.int64), ids


def _numeric(col: pd.Series, what: str, source: str, locate: Locate, *, allow_datetime: bool) -> np.ndarray:
    """(n,) float64 values of a rating/timestamp column; DataError at the first bad value."""
    if allow_datetime and pd.api.types.is_datetime64_any_dtype(col):
        values = col.to_numpy("datetime64[ns]").astype(np.int64) / 1e9
        bad = col.isna().to_numpy()
    else:
        num = pd.to_numeric(col, errors="coerce")
        bad = num.isna().to_numpy().copy()
        if allow_datetime and bad.any() and not col.isna().all() and not pd.api.types.is_numeric_dtype(col):
            dt = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
            if not dt.isna().any():
                return dt.to_numpy("datetime64[ns]").astype(np.int64) / 1e9
        values = num.to_numpy(np.float64)
        bad |= ~np.isfinite(np.where(bad, 0.0, values))
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(f"{what} must be a finite number", source=source, column=col.name, value=col.iloc[pos], **locate(pos))
    return values.astype(np.float64)


def _from_frame(
    df: pd.DataFrame,
    *,
    user_col: str,
    item_col: str,
    rating_col: str | None,
    timestamp_col: str | None,
    user_ids: np.ndarray | None,
    item_ids: np.ndarray | None,
    source: str,
    locate: Locate,
    fmt: str,
    extra_report: dict[str, Any] | None = None,
) -> Interactions:
    from robustrec.data.report import LoadReport

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"from_frame expects a pandas DataFrame, got {type(df).__name__}")
    for col in (user_col, item_col, rating_col, timestamp_col):
        if col is not None and col not in df.columns:
            raise DataError(f"missing column; available columns: {list(df.columns)}", source=source, column=col)
    users, uids = _index_map(df[user_col], user_ids, "user", source, locate)
    items, iids = _index_map(df[item_col], item_ids, "item", source, locate)
    ratings = None if rating_col is None else _numeric(df[rating_col], "rating", source, locate, allow_datetime=False)
    stamps = (
        None if timestamp_col is None else _numeric(df[timestamp_col], "timestamp", source, locate, allow_datetime=True)
    )
    inter, n_dup = _build(users, items, len(uids), len(iids), ratings, stamps, uids, iids)
    report = LoadReport(
        source=str(source), format=fmt, rows_read={"all": len(df)}, duplicates_merged={"all": n_dup},
        **(extra_report or {}),
    )
    object.__setattr__(inter, "report", report)
    return inter
