"""Masked top-k of full-ranking score blocks on CPU, in one compiled pass per row (numba, cached).

:func:`masked_top_k_hits` is the CPU inner loop of :func:`robustrec.evaluate.per_user_metrics`: for a block of
users' scores against every item it drops each user's training items, keeps the k best items in a small heap
(one pass over the row, most items rejected by a single comparison with the heap's minimum) and marks which
of them are the user's test items. Ties rank the lower item id first, like a stable sort.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from robustrec.jit import cached_njit as njit
from robustrec.jit import register_sources

register_sources(__file__)

_STRIDE = 32  # scores compared with the heap's minimum at a time


@njit
def _worse(value_a, id_a, value_b, id_b):
    """Whether (value_a, id_a) ranks below (value_b, id_b): lower score, or equal score and higher id."""
    return value_a < value_b or (value_a == value_b and id_a > id_b)


@njit
def _sift_down(values, ids, root, size):
    """Restore the min-heap (worst entry at the root) of values/ids[:size] below ``root``."""
    while True:
        child = 2 * root + 1
        if child >= size:
            return
        if child + 1 < size and _worse(values[child + 1], ids[child + 1], values[child], ids[child]):
            child += 1
        if not _worse(values[child], ids[child], values[root], ids[root]):
            return
        values[root], values[child] = values[child], values[root]
        ids[root], ids[child] = ids[child], ids[root]
        root = child


@njit
def _is_in(indices, start, end, item):
    """Whether ``item`` is among the sorted indices[start:end] (binary search)."""
    lo, hi = start, end
    while lo < hi:
        mid = (lo + hi) >> 1
        if indices[mid] < item:
            lo = mid + 1
        else:
            hi = mid
    return lo < end and indices[lo] == item


@njit(fastmath={"reassoc", "nsz"})
def _row_top_k(scores, r, user, k, train_indptr, train_indices, test_indptr, test_indices, out_ids, out_hits,
               out_row):
    n_items = scores.shape[1]
    start, end = train_indptr[user], train_indptr[user + 1]
    for q in range(start, end):  # training items never rank
        scores[r, train_indices[q]] = -np.inf
    values = np.empty(k, scores.dtype)
    ids = np.empty(k, np.int64)
    for j in range(k):
        values[j], ids[j] = scores[r, j], j
    for root in range(k // 2 - 1, -1, -1):
        _sift_down(values, ids, root, k)
    floor = values[0]
    j = k
    while j < n_items:  # equal scores with a higher id never enter: ids only grow along the row
        stop = min(j + _STRIDE, n_items)
        best = scores[r, j]
        for q in range(j + 1, stop):  # a vectorised max: most strides hold nothing above the floor
            best = max(best, scores[r, q])
        if best > floor:
            for q in range(j, stop):
                value = scores[r, q]
                if value > floor:
                    values[0], ids[0] = value, q
                    _sift_down(values, ids, 0, k)
                    floor = values[0]
        j = stop
    for size in range(k - 1, 0, -1):  # heap sort: the worst goes last, leaving the best first
        values[0], values[size] = values[size], values[0]
        ids[0], ids[size] = ids[size], ids[0]
        _sift_down(values, ids, 0, size)
    t_start, t_end = test_indptr[user], test_indptr[user + 1]
    for j in range(k):
        out_ids[out_row, j] = ids[j]
        out_hits[out_row, j] = _is_in(test_indices, t_start, t_end, ids[j])


@njit(parallel=True)
def masked_top_k_hits(scores, users, k, train_indptr, train_indices, test_indptr, test_indices, out_ids, out_hits,
                      first):
    """Top ``k`` items of each row of ``scores`` with the row's user's training items masked.

    Args:
        scores: (b, n_items) float32/float64 scores of ``users`` (b,) int64; overwritten (masked entries).
        train_indptr, train_indices / test_indptr, test_indices: CSR (n_users + 1,) int64 / (nnz,) int32 of
            the training items (masked) and of the test items (hits), sorted within each row.
        out_ids: (n, k) int64 and out_hits: (n, k) bool, written at rows first..first + b - 1: the items best
            first (ties: lower id first) and whether each is one of the user's test items.
    """
    for r in prange(scores.shape[0]):
        _row_top_k(scores, r, users[r], k, train_indptr, train_indices, test_indptr, test_indices, out_ids, out_hits,
                   first + r)
