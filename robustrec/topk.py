"""Masked top-k of full-ranking score blocks on CPU, in one compiled pass per row (numba, cached).

:func:`scored_masked_top_k_hits` is the CPU inner loop of :func:`robustrec.evaluate.per_user_metrics`: for a
chunk of users' scores against every item it drops each user's training items, finds the k best items and marks
which of them are the user's test items. Ties rank the lower item id first, like a stable sort. The maxima of a
row's 32-item strides come first (one vectorised pass); the k-th largest of them is a threshold no higher than
the row's k-th best score (they are k distinct items), so only the items at or above it — typically a few k, in
the few strides whose maximum reaches it — go through a k-heap, instead of every item that beats the heap's
minimum on the way (with a heap update, hard to predict, each).

:func:`masked_top_k_hits_bf16` gives the same items from bfloat16 products, which CPUs with bfloat16 dot-product
instructions compute several times faster than float32 ones: the approximate row only decides which items are
worth an exact look. An item is scored exactly (float64 dot product of the original factors) unless its
approximate score plus the rounding-error bound ``e_u`` is below the k-th best exact score seen so far; that
item cannot be in the top k, so the result is the exact top k, with no tolerance.

The bound: rounding both factors to bfloat16 changes each product u_d i_d by at most (2^-7 + 2^-16)|u_d i_d|;
float32 accumulation of D <= 256 terms adds at most D 2^-24 of sum |u_d i_d|; rounding the sum to bfloat16 adds
2^-8 of its magnitude; sum |u_d i_d| <= |u| |i| (Cauchy-Schwarz). Together < 0.0119 |u| |i|;
:data:`BF16_RELATIVE_ERROR` = 0.0125. Flushed subnormals add at most 2^-126 (8 (|u| + |i|) + D), covered by
``BF16_ABSOLUTE_ERROR`` times (|u| + |i| + D).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from robustrec.jit import cached_njit as njit
from robustrec.jit import register_sources

register_sources(__file__)

_STRIDE = 32  # items per stride (its maximum is one lane of a vectorised pass)
BF16_RELATIVE_ERROR = 0.0125  # |bfloat16 product - exact| <= this x |u| |i| (module docstring)
BF16_ABSOLUTE_ERROR = 1e-36  # x (|u| + |i| + D): subnormals flushed to zero (module docstring)
_BF16_MINUS_INF = np.int16(-128)  # 0xFF80
_ROWS_PER_SCRATCH = 16  # rows of the bfloat16 pass sharing one set of scratch arrays


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


@njit
def _write_best_first(values, ids, k, user, test_indptr, test_indices, out_ids, out_hits, out_row):
    """Heap-sort the k-heap values/ids (worst at the root) best first into out_ids[out_row] and mark in
    out_hits[out_row] which are ``user``'s test items."""
    for size in range(k - 1, 0, -1):  # the worst goes last, leaving the best first
        values[0], values[size] = values[size], values[0]
        ids[0], ids[size] = ids[size], ids[0]
        _sift_down(values, ids, 0, size)
    t_start, t_end = test_indptr[user], test_indptr[user + 1]
    for j in range(k):
        out_ids[out_row, j] = ids[j]
        out_hits[out_row, j] = _is_in(test_indices, t_start, t_end, ids[j])


@njit
def _heap_top_k(row, candidates, n_candidates, k, values, ids):
    """The k best of row[candidates[:n_candidates]] (n_candidates >= k; any order of ids) into the min-heap
    values/ids (worst at the root; ties: the higher id is worse)."""
    for j in range(k):
        values[j], ids[j] = row[candidates[j]], candidates[j]
    for root in range(k // 2 - 1, -1, -1):
        _sift_down(values, ids, root, k)
    for j in range(k, n_candidates):
        q = candidates[j]
        if _worse(values[0], ids[0], row[q], q):
            values[0], ids[0] = row[q], q
            _sift_down(values, ids, 0, k)


@njit(fastmath={"reassoc", "nsz"})
def _stride_threshold(row, k, high, spare, order, values, ids):
    """The k-th largest of the maxima of the row's n_strides = len(high) strides (stride s: items s, s + n_strides,
    ..., s + 31 n_strides, a layout whose maxima vectorise), with the maxima in ``high`` (``spare``, ``order``:
    scratch of at least that size). Those k maxima are k distinct items, so the row's k-th best score is at least
    this threshold."""
    n_strides = high.shape[0]
    for s in range(n_strides):
        spare[s] = max(row[s], row[n_strides + s])
    # the running maxima go back and forth between two arrays: updated in place, LLVM stores them with masked
    # stores (vmaskmovps, several times slower than the loads and maxima on the AMD CPUs here)
    for j in range(2, _STRIDE, 2):
        base = j * n_strides
        for s in range(n_strides):
            high[s] = max(spare[s], row[base + s])
        base += n_strides
        for s in range(n_strides):
            spare[s] = max(high[s], row[base + s])
    for s in range(n_strides):
        high[s] = spare[s]
        order[s] = s
    _heap_top_k(high, order, n_strides, k, values, ids)
    return values[0]


@njit(fastmath={"reassoc", "nsz"})
def _row_top_k(scores, r, user, k, train_indptr, train_indices, test_indptr, test_indices, out_ids, out_hits,
               out_row, high, spare, candidates, values, ids):
    """Row r's top k: a threshold no higher than its k-th best score (:func:`_stride_threshold`), then a k-heap of
    the items at or above it (typically a few k), read only in the strides whose maximum reaches it. Where the
    row has too few strides for that (or fewer than k items pass, e.g. NaN scores), a k-heap of every item.
    high, spare: (n_items // 32,) and candidates: (n_items,) scratch; values, ids: (k,) scratch."""
    row = scores[r]
    n_items = row.shape[0]
    for q in range(train_indptr[user], train_indptr[user + 1]):  # training items never rank
        row[train_indices[q]] = -np.inf
    n_strides = n_items // _STRIDE
    n_candidates = 0
    if n_strides >= k:
        threshold = _stride_threshold(row, k, high, spare, candidates, values, ids)
        for s in range(n_strides):
            if high[s] >= threshold:
                for j in range(_STRIDE):
                    q = s + j * n_strides
                    if row[q] >= threshold:
                        candidates[n_candidates] = q
                        n_candidates += 1
        for q in range(n_strides * _STRIDE, n_items):  # the items past the strides
            if row[q] >= threshold:
                candidates[n_candidates] = q
                n_candidates += 1
    if n_candidates < k:
        for q in range(n_items):
            candidates[q] = q
        n_candidates = n_items
    _heap_top_k(row, candidates, n_candidates, k, values, ids)
    _write_best_first(values, ids, k, user, test_indptr, test_indices, out_ids, out_hits, out_row)


@njit(parallel=True)
def scored_masked_top_k_hits(user_factors, items_t, users, k, train_indptr, train_indices, test_indptr,
                             test_indices, out_ids, out_hits, factors_scratch, scores_scratch):
    """Top ``k`` items of each user in ``users`` by float product score, the user's training items masked: each
    thread scores its own chunks of users (a product through BLAS, which must then run on one thread) and ranks
    them at once, while the chunk is in its cache. One pool of threads for both (numpy's BLAS threads spin after a
    product and take the cores from the ranking threads).

    Args:
        user_factors: (n_users, D), items_t: (D, n_items) of one float dtype; users: (n,) int64.
        train_indptr, train_indices / test_indptr, test_indices: CSR (n_users + 1,) int64 / (nnz,) int32 of
            the training items (masked) and of the test items (hits), sorted within each row.
        out_ids: (n, k) int64 and out_hits: (n, k) bool: the items best first (ties: lower id first) and whether
            each is one of the user's test items.
        factors_scratch: (T, c, D) and scores_scratch: (T, c, n_items) of the factors' dtype: thread t scores
            chunks t, t + T, ... of c users.
    """
    n_threads, chunk, n_items = scores_scratch.shape
    n_chunks = (users.size + chunk - 1) // chunk
    for t in prange(n_threads):
        n_strides = n_items // _STRIDE
        high, spare = np.empty(n_strides, scores_scratch.dtype), np.empty(n_strides, scores_scratch.dtype)
        candidates = np.empty(n_items, np.int64)
        values, ids = np.empty(k, scores_scratch.dtype), np.empty(k, np.int64)
        for c in range(t, n_chunks, n_threads):
            first = c * chunk
            size = min(chunk, users.size - first)
            for r in range(size):
                factors_scratch[t, r] = user_factors[users[first + r]]
            scores = scores_scratch[t, :size]
            np.dot(factors_scratch[t, :size], items_t, scores)
            for r in range(size):
                _row_top_k(scores, r, users[first + r], k, train_indptr, train_indices, test_indptr, test_indices,
                           out_ids, out_hits, first + r, high, spare, candidates, values, ids)


@njit(inline="always")
def _bf16_key(bits):
    """An int16 that orders bfloat16 bit patterns ``bits`` (int16) as their values (sign-magnitude to two's
    complement); -0 orders just below +0."""
    return bits ^ ((bits >> 15) & 0x7FFF)


@njit
def _bf16_floor_key(value, word_f32, word_u32):
    """:func:`_bf16_key` of the largest bfloat16 <= ``value`` (float32); word_f32/word_u32: a 1-element scratch
    float32 array and its uint32 view."""
    word_f32[0] = value
    bits = word_u32[0]
    high = np.int32(bits >> 16)
    if (bits & 0xFFFF) != 0 and (bits >> 31) == 1:  # negative: truncation rounded up, step down one
        high += 1
    return _bf16_key(np.int16(high - 65536 if high >= 32768 else high))


@njit
def _bf16_value(key, word_f32, word_u32):
    """The float32 value of the bfloat16 whose :func:`_bf16_key` is ``key``."""
    bits = _bf16_key(key)  # the key transform is its own inverse
    word_u32[0] = np.uint32(np.uint16(bits)) << 16
    return word_f32[0]


@njit(fastmath={"reassoc", "nsz"})
def _row_top_k_bf16(approx, r, user, k, user_factors, item_factors, max_item_norm, train_indptr, train_indices,
                    test_indptr, test_indices, out_ids, out_hits, out_row, high, low, best_k, positions, values, ids,
                    word_f32):
    n_items, dim = approx.shape[1], item_factors.shape[1]
    row = approx[r]
    for q in range(train_indptr[user], train_indptr[user + 1]):  # training items never rank
        row[train_indices[q]] = _BF16_MINUS_INF
    u_norm = 0.0
    for d in range(dim):
        u_norm += np.float64(user_factors[user, d]) ** 2
    u_norm = np.sqrt(u_norm)
    error = BF16_RELATIVE_ERROR * u_norm * max_item_norm + BF16_ABSOLUTE_ERROR * (u_norm + max_item_norm + dim)
    word_u32 = word_f32.view(np.uint32)
    # Stride s holds items s, s + n_strides, ..., s + 31 n_strides (a layout whose maxima vectorise); the items
    # past 32 n_strides are always looked at. The k best stride maxima are k distinct items whose exact scores
    # are at least their k-th best minus ``error``: so is the k-th best exact score, and an item whose approximate
    # score is below that minus another ``error`` cannot rank. Strides whose best is below are never read again.
    n_strides = n_items // _STRIDE
    for s in range(n_strides):
        high[s], low[s] = row[s], row[s]
    for j in range(1, _STRIDE):
        base = j * n_strides
        for s in range(n_strides):
            high[s], low[s] = max(high[s], row[base + s]), min(low[s], row[base + s])
    # as int16 the bit patterns of positive values order as the values and lie above those of negative ones,
    # whose order they reverse: a stride's best is its largest pattern if positive, else its smallest one
    for s in range(n_strides):
        high[s] = high[s] if high[s] >= 0 else _bf16_key(low[s])
    threshold = np.int16(-32768)  # the key below which an approximate score cannot reach the top k
    if n_strides >= k:
        for j in range(k):
            best_k[j], positions[j] = high[j], j
        for root in range(k // 2 - 1, -1, -1):
            _sift_down(best_k, positions, root, k)
        for s in range(k, n_strides):
            if high[s] > best_k[0]:
                best_k[0], positions[0] = high[s], s
                _sift_down(best_k, positions, 0, k)
        if best_k[0] > _bf16_key(_BF16_MINUS_INF):
            threshold = _bf16_floor_key(np.float32(_bf16_value(best_k[0], word_f32, word_u32) - 2.0 * error),
                                        word_f32, word_u32)
    size = 0
    for s in range(n_strides + n_items - n_strides * _STRIDE):
        if s < n_strides:
            if high[s] < threshold:
                continue
            first_item, step, n_look = s, n_strides, _STRIDE
        else:  # the items past the strides, one at a time
            first_item, step, n_look = n_strides * _STRIDE + s - n_strides, 1, 1
        for j in range(n_look):
            q = first_item + j * step
            if row[q] == _BF16_MINUS_INF or _bf16_key(row[q]) < threshold:
                continue
            score = 0.0
            for d in range(dim):
                score += np.float64(user_factors[user, d]) * np.float64(item_factors[q, d])
            if size < k:
                values[size], ids[size] = score, q
                size += 1
                if size < k:
                    continue
                for root in range(k // 2 - 1, -1, -1):
                    _sift_down(values, ids, root, k)
            elif _worse(values[0], ids[0], score, q):
                values[0], ids[0] = score, q
                _sift_down(values, ids, 0, k)
            else:
                continue
            threshold = max(threshold, _bf16_floor_key(np.float32(max(values[0] - error, -3e38)), word_f32, word_u32))
    _write_best_first(values, ids, k, user, test_indptr, test_indices, out_ids, out_hits, out_row)


@njit(parallel=True)
def masked_top_k_hits_bf16(approx, users, k, user_factors, item_factors, max_item_norm, train_indptr,
                           train_indices, test_indptr, test_indices, out_ids, out_hits, first):
    """The exact top ``k`` of :func:`scored_masked_top_k_hits` from bfloat16 products (module docstring).

    Args:
        approx: (b, n_items) int16, the bit patterns of the bfloat16 products of ``users``' (b,) factors with every
            item's; overwritten (masked entries).
        user_factors: (n_users, D), item_factors: (n_items, D) float32/float64, the factors the products were
            rounded from; max_item_norm: the largest row norm of ``item_factors``.
        k (<= the number of items each user can rank), the CSR arrays: as in :func:`scored_masked_top_k_hits`;
            out_ids, out_hits: as there, written at rows first..first + b - 1.
    """
    n_rows, n_strides = approx.shape[0], approx.shape[1] // _STRIDE
    n_chunks = (n_rows + _ROWS_PER_SCRATCH - 1) // _ROWS_PER_SCRATCH
    for c in prange(n_chunks):  # scratch arrays once per chunk of rows, not per row
        high, low = np.empty(n_strides, np.int16), np.empty(n_strides, np.int16)
        best_k, positions = np.empty(k, np.int16), np.empty(k, np.int64)
        values, ids, word_f32 = np.empty(k, np.float64), np.empty(k, np.int64), np.empty(1, np.float32)
        for r in range(c * _ROWS_PER_SCRATCH, min((c + 1) * _ROWS_PER_SCRATCH, n_rows)):
            _row_top_k_bf16(approx, r, users[r], k, user_factors, item_factors, max_item_norm, train_indptr,
                            train_indices, test_indptr, test_indices, out_ids, out_hits, first + r, high, low, best_k,
                            positions, values, ids, word_f32)
