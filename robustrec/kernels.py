"""The fused CPU training kernel: MF mini-batches in compiled numba loops, no Python per batch.

:func:`train_batches` trains a run of an epoch's mini-batches on the live arrays of the torchrec tables and
of FBGEMM's optimizer state (:mod:`robustrec.engines` hands them in; nothing is copied). One thread trains
one whole mini-batch:

1. rows: draw each row — ``uniform``: the next interaction of a pseudo-random permutation of the training
   interactions; ``pld``: a uniform user, a pool of k of its observed items, one unobserved item j, the
   pool's no-gradient losses softplus(s_uj − s_uc) and a draw from softmax(−ℓ/τ) — then its unobserved
   items (exactly uniform over the user's unobserved items: the r-th one is found by a branch-free binary
   search in the user's sorted items, so never a positive and no rejection loop). The batch is drawn in
   stages, each requesting the lines it will read a few rows ahead, so the rows' cache misses overlap;
2. scores, and d loss / d score from the objective (:func:`robustrec.objectives.row_gradients`); T-CE first
   scores the whole batch and drops its largest observed-item losses (:func:`robustrec.objectives.tce_dropped`);
3. gradients and updates in one pass: each row's terms of the batch gradient are computed from the tables
   as they were at the start of the batch, and each user and item is stepped by the optimizer (FBGEMM's CPU
   rules, :data:`robustrec.optim.CPU_OPTIMIZERS`) right after its last occurrence in the batch, with the sum of
   its terms.

So a mini-batch is one step of the autograd engine with FBGEMM's fused update — same gradient, same update
— without its per-batch Python, autograd and lookup overhead. Every random number is a hash of (epoch key,
row, draw), so the rows drawn do not depend on threads. With one thread, training is sequential mini-batch
SGD and bit-reproducible (every run trains the cached build: see :func:`robustrec.jit.fill_cache_in_child`). With T
threads, T mini-batches are trained at a time and update the shared tables without locks (Hogwild, Niu et
al. 2011, across mini-batches): a batch may see part of a concurrent batch's update, so reruns differ in the
last bits; there is no barrier inside an epoch, which keeps threads busy on a loaded machine.

The functions that train compile without numba's reference counting (``refcounted=False``, see
:func:`robustrec.jit.cached_njit`), which would count a reference, with an atomic add and subtract on the shared
tables' counters, each time a row's helpers take an array; so they allocate nothing (the workspace holds every
buffer).

Batch size 1 (per-sample SGD, as implicit's and LightFM's BPR train) skips the bookkeeping: each thread draws
runs of rows and trains them one after another (:func:`_train_rows`), requesting each row's table rows a few
rows before it trains. The steps are those of one-row mini-batches, except that PLD scores a run's candidates
when the run is drawn, up to 2·_ROW_RUN rows before they train (a concurrent thread's rows are as stale).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from robustrec import objectives, optim
from robustrec.jit import cached_njit as njit
from robustrec.jit import register_sources
from robustrec.optim import CPU_OPTIMIZERS

register_sources(__file__, objectives.__file__, optim.__file__)  # code and constants compiled into the kernel

for _function in objectives.KERNEL_FUNCTIONS:  # the objectives' scalar math, compiled into the kernel
    register_jitable(_function)

# FBGEMM's CPU optimizers the kernel implements, with their update of one row (w, state, summed gradient g):
#   rowwise_adagrad: state += mean_d(g²); w −= lr·g / (sqrt(state) + eps)      (state: one float per row)
#   adagrad:         state_d += g_d²;     w_d −= lr·g_d / (sqrt(state_d) + eps) (state: one float per weight)
#   sgd:             w −= lr·g                                                  (no state)
_ROWWISE_ADAGRAD, _ADAGRAD = CPU_OPTIMIZERS.index("rowwise_adagrad"), CPU_OPTIMIZERS.index("adagrad")
_TCE, _NBPO = objectives.LOSS_CODES["tce"], objectives.LOSS_CODES["nbpo"]

# Reassociation lets LLVM vectorise the dot products and row sums; no "nnan"/"ninf", so a non-finite loss is
# still seen as one by _finite (the step is then refused).
_FAST_MATH = {"reassoc", "contract", "nsz", "arcp"}

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_FEISTEL_ROUNDS = 4


class Settings(NamedTuple):
    """Scalars of one kernel call (codes index ``objectives.LOSSES`` and ``optim.CPU_OPTIMIZERS``)."""

    loss: int
    l2: float
    phi_l2: float  # NBPO's L2 weight on the φ factors (0 for other losses)
    logit_prior: float
    rce_beta: float
    optimizer: int
    lr: float
    eps: float
    pld: bool  # PLD's resampling (after its warm-up) instead of the shuffled interactions
    n_negatives: int
    pool_size: int
    temperature: float
    n_items: int
    epoch_rows: int  # rows per epoch (= training interactions)
    batch_size: int
    half_bits: int  # the permutation of [0, epoch_rows) works on [0, 4**half_bits)


class Workspace(NamedTuple):
    """Buffers of the mini-batches in flight, one slice per thread (T threads; B = max(batch size, 2·_ROW_RUN):
    one-row batches are drawn in runs, see _train_rows; C = 1 + n_negatives, D / Dφ the table dimensions)."""

    users: np.ndarray  # (T, B) int64
    items: np.ndarray  # (T, B, C) int64, column 0 the observed item
    scores: np.ndarray  # (T, B, C) float32
    phi_scores: np.ndarray  # (T, B, C) float32, NBPO's raw φ scores
    d_scores: np.ndarray  # (T, B, C) float64, d row loss / d score
    d_phi: np.ndarray  # (T, B, C) float64
    parts: np.ndarray  # (T, B, 3) float64 each row's loss: observed-item term, sampled-items term, L2 terms
    dropped: np.ndarray  # (T, B) bool, T-CE
    tce_losses: np.ndarray  # (T, B) float64 T-CE's working copy of the observed-item losses
    pool: np.ndarray  # (T, B, k) int64 PLD's candidates
    pool_scores: np.ndarray  # (T, B, k + 1) float64 their scores, losses, weights (and s_uj)
    grad_users: np.ndarray  # (T, B + 1, D) float32 running gradient of the users seen again later in the batch
    grad_items: np.ndarray  # (T, B·C + 1, D) float32 same for items (the last row of both: zeros, see Slots)
    grad_phi_users: np.ndarray  # (T, B + 1, Dφ) float32
    grad_phi_items: np.ndarray  # (T, B·C + 1, Dφ) float32
    user_slot: np.ndarray  # (T, n_users) int64, -1 between batches: a user's slot among the batch's users
    item_slot: np.ndarray  # (T, n_items) int64, -1 between batches
    user_rows: np.ndarray  # (T, B) int64 the user of each slot
    item_rows: np.ndarray  # (T, B·C) int64
    count: np.ndarray  # (T, 16) int64 slots in use (users, items; padded so threads never share a cache line)
    last_user: np.ndarray  # (T, n_users) int64 a user's last row in the batch
    last_item: np.ndarray  # (T, n_items) int64 an item's last occurrence (row · C + column) in the batch
    codes: np.ndarray  # (T, B, 1 + C) int64 what each occurrence does with its terms (see _occurrence_code)
    term: np.ndarray  # (T, 2 (1 + C), max(D, Dφ)) float32 one row's gradient terms (user, items; φ after)


def new_workspace(n_threads: int, n_users: int, n_items: int, batch_size: int, n_negatives: int, pool_size: int,
                  dim: int, phi_dim: int) -> Workspace:
    t, b, c = n_threads, max(batch_size, 2 * _ROW_RUN), 1 + n_negatives  # batch size 1: two runs of rows
    f32, f64, i64 = np.float32, np.float64, np.int64
    return Workspace(
        users=np.zeros((t, b), i64), items=np.zeros((t, b, c), i64), scores=np.zeros((t, b, c), f32),
        phi_scores=np.zeros((t, b, c), f32), d_scores=np.zeros((t, b, c), f64), d_phi=np.zeros((t, b, c), f64),
        parts=np.zeros((t, b, 3), f64), dropped=np.zeros((t, b), np.bool_), tce_losses=np.zeros((t, b), f64),
        pool=np.zeros((t, b, pool_size), i64), pool_scores=np.zeros((t, b, pool_size + 1), f64),
        grad_users=np.zeros((t, b + 1, dim), f32), grad_items=np.zeros((t, b * c + 1, dim), f32),
        grad_phi_users=np.zeros((t, b + 1, phi_dim), f32), grad_phi_items=np.zeros((t, b * c + 1, phi_dim), f32),
        user_slot=np.full((t, n_users), -1, i64), item_slot=np.full((t, n_items), -1, i64),
        user_rows=np.zeros((t, b), i64), item_rows=np.zeros((t, b * c), i64), count=np.zeros((t, 16), i64),
        last_user=np.zeros((t, n_users), i64), last_item=np.zeros((t, n_items), i64), codes=np.zeros((t, b, 1 + c), i64),
        term=np.zeros((t, 2 * (1 + c), max(dim, phi_dim)), f32),
    )


def reset_workspace(w: Workspace) -> None:
    """Ready ``w`` for a :func:`train_batches` call: slot maps all -1, running sums all 0. A call leaves them so
    unless a batch stopped on a non-finite loss (its unfinished sums stay)."""
    for slot_of in (w.user_slot, w.item_slot):
        slot_of.fill(-1)
    for running in (w.grad_users, w.grad_items, w.grad_phi_users, w.grad_phi_items):
        running.fill(0.0)


def half_bits(n: int) -> int:
    """Smallest h >= 1 with 4**h >= n: the Feistel permutation's half width for a domain of n rows."""
    return max(1, math.ceil(math.log2(max(n, 2)) / 2))


# ---- counter-based random numbers ------------------------------------------------------------------------

@njit(inline="always")
def _finite(x):
    """Whether x is finite. (numba's np.isfinite tests whether x − x is ordered; with the kernel's fastmath flags
    LLVM folds x − x to 0, so it calls inf and NaN finite.)"""
    return abs(x) < np.inf


@njit(inline="always")
def _mix(z):
    """SplitMix64's finaliser: a bijective hash of a uint64."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def uniform(key, row, draw):
    """The ``draw``-th uniform number in [0, 1) of ``row`` under the epoch's ``key`` (uint64)."""
    z = _mix(key + np.uint64(row) * _GOLDEN)
    z = _mix(z + np.uint64(draw + 1) * _GOLDEN)
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(inline="always")
def permuted(index, n, half, key):
    """Image of ``index`` in [0, n) under a keyed pseudo-random permutation of [0, n): a 4-round Feistel
    network on [0, 4**half), cycle-walked back into [0, n) (so a bijection of [0, n))."""
    mask = (np.uint64(1) << np.uint64(half)) - np.uint64(1)
    x = np.uint64(index)
    while True:
        left, right = x >> np.uint64(half), x & mask
        for r in range(_FEISTEL_ROUNDS):
            f = _mix(key ^ (right * _GOLDEN + np.uint64(r + 1))) & mask
            left, right = right, left ^ f
        x = (left << np.uint64(half)) | right
        if x < np.uint64(n):
            return np.int64(x)


@njit(inline="always")
def unobserved_item(indptr, indices, n_items, user, u01):
    """An item drawn uniformly from ``user``'s unobserved items, given a uniform ``u01`` in [0, 1).

    The r-th unobserved item is r + #{j : p_j − j <= r} for the user's sorted items p_0 < p_1 < …
    (p_j − j counts the unobserved items below p_j and grows with j): one binary search, branch-free (the
    comparison selects the half by a conditional move), so a mispredicted branch never stalls the pipeline
    and the searches of consecutive rows overlap.
    """
    start, end = indptr[user], indptr[user + 1]
    n = end - start
    n_free = n_items - n
    r = min(np.int64(u01 * n_free), n_free - 1)
    if n == 0:
        return r
    base = np.int64(0)  # invariant: every j < base has p_j − j <= r
    while n > 1:
        half = n >> 1
        middle = base + half
        base += half * np.int64(indices[start + middle] - middle <= r)  # arithmetic, not a branch
        n -= half
    return r + base + np.int64(indices[start + base] - base <= r)


@njit(inline="always")
def _prefetch_searches(b, size, indptr, indices, users):
    """Prefetch for a stage that searches each row's user's sorted items, at its row b: the CSR offsets of the
    user 2·_AHEAD rows ahead, and the item lines that the search of the user _AHEAD rows ahead reads first —
    eight evenly spaced over its range (every line of a range up to 128 items)."""
    if b + 2 * _AHEAD < size:
        _prefetch_row(indptr, users[b + 2 * _AHEAD])
    if _AHEAD <= b + _AHEAD < size:
        user = users[b + _AHEAD]
        start, n = indptr[user], indptr[user + 1] - indptr[user]
        for q in range(8):
            _prefetch_row(indices, start + (n * q >> 3))


def _prefetch_codegen(for_write: bool):
    """LLVM code of a row prefetch (see :func:`_prefetch_row`); ``for_write`` requests the lines in a state that
    can be written without another round trip — only for rows that will be written: it takes them away from
    the other cores' caches."""
    def codegen(context, builder, signature, args):
        table_type, row_type = signature.args
        array = context.make_array(table_type)(context, builder, args[0])
        row = context.cast(builder, args[1], row_type, types.intp)
        zero = context.get_constant(types.intp, 0)
        index = [row, zero] if table_type.ndim == 2 else [row]
        first = cgutils.get_item_pointer(context, builder, table_type, array, index, wraparound=False)
        first = builder.bitcast(first, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [first.type, i32, i32, i32]), "llvm.prefetch.p0")
        item_bytes = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(table_type.dtype)))
        row_bytes = builder.mul(builder.extract_value(array.shape, 1), item_bytes) if table_type.ndim == 2 else item_bytes
        line = context.get_constant(types.intp, 64)
        with cgutils.for_range_slice(builder, zero, row_bytes, line) as (offset, _):
            # (address, 0 = read / 1 = write, 3 = keep in all cache levels, 1 = data)
            builder.call(prefetch, [builder.gep(first, [offset]), i32(int(for_write)), i32(3), i32(1)])
        return context.get_dummy_value()
    return codegen


def _prefetch_signature(table, row):
    if not (isinstance(table, types.Array) and table.ndim in (1, 2) and table.layout == "C"):
        return None
    return types.void(table, row)


@intrinsic
def _prefetch_row(typingctx, table, row):
    """Ask the CPU to start loading every 64-byte line of table[row, :] (a 2-D C-contiguous array; of a 1-D one,
    the line of table[row]) for reading: no result, no fault on any address. Issued ahead of use, the rows'
    cache misses overlap instead of stalling one at a time (the tables of large catalogues do not fit in cache)."""
    signature = _prefetch_signature(table, row)
    return None if signature is None else (signature, _prefetch_codegen(for_write=False))


@intrinsic
def _prefetch_row_for_write(typingctx, table, row):
    """:func:`_prefetch_row` for a row that will be written."""
    signature = _prefetch_signature(table, row)
    return None if signature is None else (signature, _prefetch_codegen(for_write=True))


@njit(inline="always")
def _prefetch_entity(tables, states, side, entity, nbpo):
    """Prefetch the table and optimizer-state rows of ``entity`` (side 0: a user, 1: an item) for writing."""
    _prefetch_row_for_write(tables[side], entity)
    _prefetch_row_for_write(states[side], entity)
    if nbpo:
        _prefetch_row_for_write(tables[2 + side], entity)
        _prefetch_row_for_write(states[2 + side], entity)


@njit(inline="always")
def _prefetch_rows(first, last, tables, states, users, items, nbpo):
    """Prefetch the table and optimizer-state rows the steps of rows first..last-1 read and write (see
    :func:`_prefetch_row`)."""
    for b in range(first, last):
        _prefetch_entity(tables, states, 0, users[b], nbpo)
        for k in range(items.shape[1]):
            _prefetch_entity(tables, states, 1, items[b, k], nbpo)


@njit(inline="always")
def _prefetch_slots(first, last, codes, slots, nbpo):
    """Prefetch the running-sum rows the steps of batch rows first..last-1 read and write (see :class:`Slots`)."""
    for b in range(first, last):
        _prefetch_row_for_write(slots.grad_users, codes[b, 0] >> 2)
        if nbpo:
            _prefetch_row_for_write(slots.grad_phi_users, codes[b, 0] >> 2)
        for k in range(1, codes.shape[1]):
            _prefetch_row_for_write(slots.grad_items, codes[b, k] >> 2)
            if nbpo:
                _prefetch_row_for_write(slots.grad_phi_items, codes[b, k] >> 2)


@njit(fastmath=_FAST_MATH, inline="always")
def _dot(a, i, b, j):
    """a[i] · b[j] of two (rows, D) tables (indexing, no row views: no reference counting in hot loops)."""
    total = np.float32(0.0)
    for d in range(a.shape[1]):
        total += a[i, d] * b[j, d]
    return total


# ---- pass 1: rows and their per-occurrence gradients --------------------------------------------------------

_AHEAD = 8  # rows a drawing stage requests ahead of the one it works on (enough misses in flight, few enough
# that the requested lines are still cached when their row's turn comes)
_AHEAD_SCORED = 3  # the same for PLD's scoring: a row requests 2 + k table rows (user, j, the pool) of several lines each


@njit(fastmath=_FAST_MATH, inline="always")
def _floyd_pool(b, row, key, n_cols, k, begin, degree, indices, pool):
    """PLD's pool of row b: k of the user's items indices[begin:begin + degree] into pool[b] (Floyd's algorithm:
    distinct when it has >= k, else with replacement)."""
    if degree >= k:
        for step in range(k):  # Floyd: for top = d-k .. d-1 take t in [0, top], or top if t is taken
            top = degree - k + step
            t = min(np.int64(uniform(key, row, n_cols + 1 + step) * (top + 1)), top)
            for q in range(step):
                if pool[b, q] == t:
                    t = top
                    break
            pool[b, step] = t
    else:
        for step in range(k):
            pool[b, step] = min(np.int64(uniform(key, row, n_cols + 1 + step) * degree), degree - 1)
    for step in range(k):
        pool[b, step] = indices[begin + pool[b, step]]


@njit(fastmath=_FAST_MATH, inline="always")
def _pld_choice(b, row, key, n_cols, st, pool, pool_scores):
    """PLD's choice (Zhang et al. 2025, Alg. 1) for row b, from its pool's scores pool_scores[b, :k] and s_uj in
    pool_scores[b, k]: the candidate c with probability softmax(−ℓ_c/τ), ℓ_c = softplus(s_uj − s_uc) without
    gradient, drawn by inverse CDF with one uniform."""
    k = st.pool_size
    inverse = 1.0 / st.temperature
    power = round(inverse)
    s_j = float(pool_scores[b, k])
    if abs(inverse - power) < 1e-9 and 1 <= power <= 64:
        # exp(−ℓ/τ) = σ(s_uc − s_uj)^(1/τ): one exponential per candidate when 1/τ is whole
        top = -np.inf
        for q in range(k):
            pool_scores[b, q] = objectives.sigmoid_scalar(float(pool_scores[b, q]) - s_j)
            top = max(top, float(pool_scores[b, q]))
        for q in range(k):
            pool_scores[b, q] = (float(pool_scores[b, q]) / top) ** power
    else:
        lowest = np.inf
        for q in range(k):  # the losses, kept in pool_scores
            loss = objectives.softplus_scalar(s_j - float(pool_scores[b, q]))
            pool_scores[b, q] = loss
            lowest = min(lowest, loss)
        for q in range(k):
            pool_scores[b, q] = math.exp((lowest - float(pool_scores[b, q])) * inverse)
    total = 0.0
    for q in range(k):
        total += pool_scores[b, q]
    target = uniform(key, row, n_cols + 1 + k) * total
    chosen = k - 1
    for q in range(k):
        target -= float(pool_scores[b, q])
        if target < 0.0:
            chosen = q
            break
    return pool[b, chosen]


@njit(fastmath=_FAST_MATH, refcounted=False)
def _draw_rows(size, start, key, st, user_table, item_table, indptr, indices, row_users, active_users, users, items,
               pool, pool_scores):
    """Draw the batch's rows 0..size-1 (epoch rows start + b): users[b], items[b] (observed item first).

    In stages over the batch, each requesting the random lines it will read (interactions, a user's sorted
    items, table rows) a few rows (:data:`_AHEAD`, :data:`_AHEAD_SCORED`) before it reads them, so their cache
    misses overlap:

    - ``uniform``: the interaction of each row (a keyed permutation of the epoch's interactions), its user and
      item;
    - ``pld``: a uniform active user, a pool of k of its items, one unobserved item j, then the pool's scores
      and the choice (the observed item);
    - then the rows' (other) unobserved items.
    """
    n_cols = items.shape[1]  # draws 1..n_cols-1 are the row's unobserved items (j is draw 1); PLD's come after
    if st.pld:
        n_active = active_users.shape[0]
        for b in range(size):
            users[b] = active_users[min(np.int64(uniform(key, start + b, n_cols) * n_active), n_active - 1)]
        for b in range(size + 2 * _AHEAD):  # stage: pools and j
            _prefetch_searches(b, size, indptr, indices, users)
            if b < size:
                user = users[b]
                begin = indptr[user]
                _floyd_pool(b, start + b, key, n_cols, st.pool_size, begin, indptr[user + 1] - begin, indices, pool)
                items[b, 1] = unobserved_item(indptr, indices, st.n_items, user, uniform(key, start + b, 1))
        k = st.pool_size
        for b in range(size + _AHEAD_SCORED):  # stage: the pool's scores and the choice
            ahead = b + _AHEAD_SCORED
            if ahead < size:
                _prefetch_row(user_table, users[ahead])
                _prefetch_row(item_table, items[ahead, 1])
                for q in range(k):
                    _prefetch_row(item_table, pool[ahead, q])
            if b < size:
                user = users[b]
                pool_scores[b, k] = _dot(user_table, user, item_table, items[b, 1])
                for q in range(k):
                    pool_scores[b, q] = _dot(user_table, user, item_table, pool[b, q])
                items[b, 0] = _pld_choice(b, start + b, key, n_cols, st, pool, pool_scores)
        first_free = 2
    else:
        for b in range(size):
            users[b] = permuted(start + b, st.epoch_rows, st.half_bits, key)  # the interaction's index, for now
        for b in range(size):
            if b + _AHEAD < size:
                _prefetch_row(row_users, users[b + _AHEAD])
                _prefetch_row(indices, users[b + _AHEAD])
            entry = users[b]
            users[b] = row_users[entry]
            items[b, 0] = indices[entry]
        first_free = 1
    if first_free < n_cols:
        for b in range(size + 2 * _AHEAD):  # stage: the unobserved items, each a search in the user's items
            _prefetch_searches(b, size, indptr, indices, users)
            if b < size:
                for c in range(first_free, n_cols):
                    items[b, c] = unobserved_item(indptr, indices, st.n_items, users[b], uniform(key, start + b, c))


@njit(fastmath=_FAST_MATH, inline="always")
def _score_range(first, last, st, user_table, item_table, phi_user_table, phi_item_table, users, items, scores,
                phi_scores, d_scores, d_phi, parts):
    """Scores of rows first..last-1 and d loss / d score from the objective (parts[b, :2]: the row's loss)."""
    n_cols = items.shape[1]
    nbpo = st.loss == _NBPO
    for b in range(first, last):
        user = users[b]
        for k in range(n_cols):
            scores[b, k] = _dot(user_table, user, item_table, items[b, k])
        if nbpo:
            for k in range(n_cols):
                phi_scores[b, k] = _dot(phi_user_table, user, phi_item_table, items[b, k])
    for b in range(first, last):
        observed, sampled = objectives.row_gradients(st.loss, scores, phi_scores, d_scores, d_phi, b,
                                                     st.logit_prior, st.rce_beta)
        parts[b, 0] = observed
        parts[b, 1] = sampled


@njit(fastmath=_FAST_MATH, refcounted=False)
def _score_rows(first, last, st, user_table, item_table, phi_user_table, phi_item_table, users, items, scores,
                phi_scores, d_scores, d_phi, parts):
    """:func:`_score_range` as a function of its own: a mini-batch calls it once per chunk (inlined there, it
    made the batch loop slower); _train_rows inlines _score_range, called once per row."""
    _score_range(first, last, st, user_table, item_table, phi_user_table, phi_item_table, users, items, scores,
                 phi_scores, d_scores, d_phi, parts)


_CHUNK = 32  # rows per stage run: enough to overlap memory latency, small enough for the rows to stay in L1/L2
_ROW_RUN = 256  # one-row batches: rows drawn at a time (the drawing stages' lookahead fills the run)
_ROW_AHEAD = 12  # one-row batches: rows whose table rows are requested before they train


# ---- gradients, and one optimizer step per distinct row at its last occurrence in the batch ---------------------
#
# Row b reads e_u and e_i of its user and items; an entity (a user or an item) is updated right after its last
# occurrence in the batch, so every read still sees the tables as they were at the start of the batch and
# every gradient is the full batch gradient: the exact mini-batch step, in one pass. Entities seen again
# later in the batch sum their terms in a slot meanwhile (in batch order); most users, seen once, never need
# one, and their update happens while their row is still in cache. The bookkeeping is decided before the
# batch trains, without branches (whether an occurrence is an entity's last is a coin flip to the branch
# predictor when items repeat within a batch), and the gradient pass then takes one branch per occurrence.

class Slots(NamedTuple):
    """One thread's running gradients of the entities seen again later in its batch (D / Dφ: dimensions)."""

    user_slot: np.ndarray  # (n_users,) int64: the user's slot in this batch, -1 if none (reset after a batch)
    item_slot: np.ndarray  # (n_items,) int64
    last_user: np.ndarray  # (n_users,) int64: the user's last row in this batch (valid for the batch's users)
    last_item: np.ndarray  # (n_items,) int64: the item's last occurrence b·C + k
    user_rows: np.ndarray  # (B,) int64: the user of each slot
    item_rows: np.ndarray  # (B·C,) int64
    count: np.ndarray  # (16,) int64: slots in use (users, items; the rest pads a cache line)
    # Running sums, zero when not in use; the last row of each stays zero: the "slot" of an entity seen once.
    grad_users: np.ndarray  # (B + 1, D) float32 running gradient of each slot's user
    grad_items: np.ndarray  # (B·C + 1, D) float32
    grad_phi_users: np.ndarray  # (B + 1, Dφ) float32 (NBPO's φ factors)
    grad_phi_items: np.ndarray  # (B·C + 1, Dφ) float32


@njit(fastmath=_FAST_MATH, inline="always")
def _apply(optimizer, lr, eps, table, state, row, grad, g):
    """One optimizer step of table[row] (and its state[row]) with the gradient grad[g] (FBGEMM's CPU rules)."""
    dim = table.shape[1]
    lr32, eps32 = np.float32(lr), np.float32(eps)
    if optimizer == _ROWWISE_ADAGRAD:
        sum_sq = np.float32(0.0)
        for d in range(dim):
            sum_sq += grad[g, d] * grad[g, d]
        momentum = state[row, 0] + sum_sq / np.float32(dim)
        state[row, 0] = momentum
        multiplier = lr32 / (np.sqrt(momentum) + eps32)
        for d in range(dim):
            table[row, d] -= multiplier * grad[g, d]
    elif optimizer == _ADAGRAD:
        for d in range(dim):
            state[row, d] += grad[g, d] * grad[g, d]
            table[row, d] -= lr32 * grad[g, d] / (np.sqrt(state[row, d]) + eps32)
    else:
        for d in range(dim):
            table[row, d] -= lr32 * grad[g, d]


@njit(inline="always")
def _occurrence_code(entity, occurrence, last, slot_of, slot_rows, count, side, zero_slot):
    """What an occurrence of ``entity`` does with its gradient terms, decided before the batch trains (the
    random reads of the entity arrays then overlap in a loop of independent steps instead of stalling the
    gradient pass): 4·s + 2·(last occurrence). Not the last: add the terms to the running sum in slot s (the
    entity's first such occurrence takes the next free slot). The last: add slot s's sum, then step the
    optimizer; s = ``zero_slot`` (a row of zeros) for an entity seen only once. Branch-free: selects only."""
    is_last = np.int64(last[entity] == occurrence)
    slot = slot_of[entity]
    new = np.int64(slot < 0) & (1 - is_last)  # its first occurrence, and it comes again
    free = count[side]
    slot += new * (free - slot)
    slot_of[entity] = slot
    slot_rows[free] = entity  # kept only when taken: the count moves past it
    count[side] = free + new
    slot += np.int64(slot < 0) * (zero_slot - slot)
    return (slot << 2) | (is_last << 1)


@njit(fastmath=_FAST_MATH, inline="always")
def _settle(entity, code, t, st, nbpo, running, term, table, state, phi_running, phi_term, phi_table, phi_state):
    """The gradient terms term[t] (and NBPO's φ terms phi_term[t]) of one occurrence of ``entity``, as its
    :func:`_occurrence_code` says: add them to the running sums (one slot for both heads), or, at its last
    occurrence, step the optimizer with the running sums added (in batch order: earlier terms, then these)
    and clear the slot for the next batch."""
    s = code >> 2
    if code & 2:
        for d in range(table.shape[1]):
            term[t, d] = running[s, d] + term[t, d]
        if nbpo:
            for d in range(phi_table.shape[1]):
                phi_term[t, d] = phi_running[s, d] + phi_term[t, d]
        running[s, :] = 0.0  # (the zero slot stays zero)
        if nbpo:
            phi_running[s, :] = 0.0
        _apply(st.optimizer, st.lr, st.eps, table, state, entity, term, t)
        if nbpo:
            _apply(st.optimizer, st.lr, st.eps, phi_table, phi_state, entity, phi_term, t)
        return
    for d in range(table.shape[1]):
        running[s, d] += term[t, d]
    if nbpo:
        for d in range(phi_table.shape[1]):
            phi_running[s, d] += phi_term[t, d]


@njit(fastmath=_FAST_MATH, inline="always")
def _row_terms(b, scale, reg, user_table, item_table, users, items, d_scores, term):
    """Row b's terms of the batch gradient, from the tables as they are: term[0] for its user (Σ_k c_k e_{i_k} +
    reg·e_u), term[1 + k] for its k-th item (c_k e_u + reg·e_{i_k}); c_k = d_scores[b, k]·scale, reg = 2·L2
    weight / B. Returns the squared norms of the row's embeddings (its L2 terms)."""
    user = users[b]
    dim = user_table.shape[1]
    sq = np.float32(0.0)
    for d in range(dim):
        term[0, d] = reg * user_table[user, d]
        sq += user_table[user, d] * user_table[user, d]
    for k in range(items.shape[1]):
        item = items[b, k]
        c = np.float32(d_scores[b, k] * scale)
        for d in range(dim):
            term[0, d] += c * item_table[item, d]
            term[1 + k, d] = c * user_table[user, d] + reg * item_table[item, d]
            sq += item_table[item, d] * item_table[item, d]
    return float(sq)


@njit(fastmath=_FAST_MATH, inline="always")
def _row_gradient(b, scale, st, tables, users, items, d_scores, d_phi, parts, term, phi_term):
    """Row b's terms of a batch gradient (its d_scores already computed; ``scale`` = 1 / batch size) from the tables
    as they are: term[0] for its user, term[1 + k] for its k-th item (NBPO's φ terms alike in phi_term);
    parts[b, 2]: its L2 terms. Every read of the row comes before any of its steps."""
    user_table, item_table, phi_user_table, phi_item_table = tables
    parts[b, 2] = st.l2 * _row_terms(b, scale, np.float32(2.0 * st.l2 * scale), user_table, item_table, users, items,
                                     d_scores, term)
    if st.loss == _NBPO:
        parts[b, 2] += st.phi_l2 * _row_terms(b, scale, np.float32(2.0 * st.phi_l2 * scale), phi_user_table,
                                              phi_item_table, users, items, d_phi, phi_term)


@njit(fastmath=_FAST_MATH, refcounted=False)
def _learn_rows(first, last, size, st, tables, states, users, items, codes, d_scores, d_phi, parts, slots, term):
    """Gradient terms of rows first..last-1, each entity stepped at its last occurrence (see the comment above)."""
    user_table, item_table, phi_user_table, phi_item_table = tables
    user_state, item_state, phi_user_state, phi_item_state = states
    n_cols = items.shape[1]
    nbpo = st.loss == _NBPO
    phi_term = term[1 + n_cols:]
    scale = 1.0 / size
    for b in range(first, last):
        _row_gradient(b, scale, st, tables, users, items, d_scores, d_phi, parts, term, phi_term)
        _settle(users[b], codes[b, 0], 0, st, nbpo, slots.grad_users, term, user_table, user_state,
                slots.grad_phi_users, phi_term, phi_user_table, phi_user_state)
        for k in range(n_cols):
            _settle(items[b, k], codes[b, 1 + k], 1 + k, st, nbpo, slots.grad_items, term, item_table, item_state,
                    slots.grad_phi_items, phi_term, phi_item_table, phi_item_state)


# ---- one mini-batch, on one thread -------------------------------------------------------------------------

@njit(refcounted=False)
def _train_batch(t, batch, key, drop_rate, st, tables, states, indptr, indices, row_users, active_users, w):
    """Train mini-batch ``batch`` of the epoch with thread ``t``'s buffers; returns its loss. When a loss is not
    finite, the batch stops before the rows it is in are applied (T-CE: before any)."""
    user_table, item_table, phi_user_table, phi_item_table = tables
    users, items, parts, d_scores, d_phi = w.users[t], w.items[t], w.parts[t], w.d_scores[t], w.d_phi[t]
    scores, phi_scores = w.scores[t], w.phi_scores[t]
    slots = Slots(w.user_slot[t], w.item_slot[t], w.last_user[t], w.last_item[t], w.user_rows[t], w.item_rows[t],
                  w.count[t], w.grad_users[t], w.grad_items[t], w.grad_phi_users[t], w.grad_phi_items[t])
    term = w.term[t]
    n_cols = items.shape[1]
    start = batch * st.batch_size
    size = min(st.batch_size, st.epoch_rows - start)
    _draw_rows(size, start, key, st, user_table, item_table, indptr, indices, row_users, active_users, users, items,
               w.pool[t], w.pool_scores[t])
    codes = w.codes[t]
    for b in range(size):  # each entity's last occurrence
        slots.last_user[users[b]] = b
        for k in range(n_cols):
            slots.last_item[items[b, k]] = b * n_cols + k
    slots.count[:] = 0
    zero_user, zero_item = slots.grad_users.shape[0] - 1, slots.grad_items.shape[0] - 1
    for b in range(size):  # and what each occurrence does (slots in batch order)
        codes[b, 0] = _occurrence_code(users[b], b, slots.last_user, slots.user_slot, slots.user_rows, slots.count, 0,
                                       zero_user)
        for k in range(n_cols):
            codes[b, 1 + k] = _occurrence_code(items[b, k], b * n_cols + k, slots.last_item, slots.item_slot,
                                               slots.item_rows, slots.count, 1, zero_item)
    finite = True
    if st.loss == _TCE:  # Wang et al. 2021: drop the batch's largest observed-item losses (loss and gradient)
        for first in range(0, size, _CHUNK):
            _score_rows(first, min(size, first + _CHUNK), st, user_table, item_table, phi_user_table,
                        phi_item_table, users, items, scores, phi_scores, d_scores, d_phi, parts)
        n_drop = int(drop_rate * size)
        dropped = w.dropped[t]
        objectives.tce_dropped(parts[:size, 0], n_drop, dropped[:size], w.tce_losses[t, :size])
        for b in range(size):
            if dropped[b]:
                parts[b, 0] = 0.0
                d_scores[b, 0] = 0.0
            finite = finite and _finite(parts[b, 0] + parts[b, 1])
        for first in range(0, size, _CHUNK):
            if finite:
                _learn_rows(first, min(size, first + _CHUNK), size, st, tables, states, users, items, codes, d_scores,
                            d_phi, parts, slots, term)
    else:
        nbpo = st.loss == _NBPO
        _prefetch_rows(0, min(size, _CHUNK), tables, states, users, items, nbpo)
        _prefetch_slots(0, min(size, _CHUNK), codes, slots, nbpo)
        for first in range(0, size, _CHUNK):
            last = min(size, first + _CHUNK)
            _prefetch_rows(last, min(size, last + _CHUNK), tables, states, users, items, nbpo)  # the next chunk's
            _prefetch_slots(last, min(size, last + _CHUNK), codes, slots, nbpo)
            _score_rows(first, last, st, user_table, item_table, phi_user_table, phi_item_table, users, items,
                        scores, phi_scores, d_scores, d_phi, parts)
            for b in range(first, last):
                finite = finite and _finite(parts[b, 0] + parts[b, 1])
            if not finite:
                break
            _learn_rows(first, last, size, st, tables, states, users, items, codes, d_scores, d_phi, parts, slots, term)
    for s in range(slots.count[0]):
        slots.user_slot[slots.user_rows[s]] = -1
    for s in range(slots.count[1]):
        slots.item_slot[slots.item_rows[s]] = -1
    if not finite:  # (the running sums of entities not reached are left: the caller clears them, see train_batches)
        return np.nan
    total = 0.0
    for b in range(size):
        total += parts[b, 0] + parts[b, 1] + parts[b, 2]
    return total / size


# ---- batch size 1: one row at a time, on one thread ------------------------------------------------------------
#
# A mini-batch of one row needs no bookkeeping: its user and items (distinct, but for repeated unobserved items)
# are stepped right after its gradient. Rows are drawn in runs of _ROW_RUN, the next run before the current one
# trains, and each row's table rows are requested _ROW_AHEAD rows before it trains, so misses overlap.

@njit(inline="always")
def _one_row(st):
    """Whether the batches of ``st`` train as one-row batches by :func:`_train_rows` (every loss: T-CE drops
    int(rate · 1) = 0 rows of a one-row batch, as its rate is below 1)."""
    return st.batch_size == 1


@njit(fastmath=_FAST_MATH, inline="always")
def _step_row(b, st, tables, states, users, items, term, phi_term):
    """One optimizer step of row b's user and of each of its distinct items with :func:`_row_gradient`'s terms (a
    repeated unobserved item: its terms summed in column order, stepped once)."""
    user_table, item_table, phi_user_table, phi_item_table = tables
    user_state, item_state, phi_user_state, phi_item_state = states
    n_cols = items.shape[1]
    nbpo = st.loss == _NBPO
    user = users[b]
    _apply(st.optimizer, st.lr, st.eps, user_table, user_state, user, term, 0)
    if nbpo:
        _apply(st.optimizer, st.lr, st.eps, phi_user_table, phi_user_state, user, phi_term, 0)
    for k in range(n_cols):
        item = items[b, k]
        again = -1
        for q in range(k + 1, n_cols):  # the observed item (k = 0) is never repeated
            if again < 0 and items[b, q] == item:
                again = q
        if again >= 0:  # carry the terms to the item's next column
            for d in range(item_table.shape[1]):
                term[1 + again, d] = term[1 + k, d] + term[1 + again, d]
            if nbpo:
                for d in range(phi_item_table.shape[1]):
                    phi_term[1 + again, d] = phi_term[1 + k, d] + phi_term[1 + again, d]
            continue
        _apply(st.optimizer, st.lr, st.eps, item_table, item_state, item, term, 1 + k)
        if nbpo:
            _apply(st.optimizer, st.lr, st.eps, phi_item_table, phi_item_state, item, phi_term, 1 + k)


@njit(fastmath=_FAST_MATH, refcounted=False)
def _train_rows(t, n_threads, first_row, key, st, tables, states, indptr, indices, row_users, active_users, w,
                losses, stop):
    """Train one-row mini-batches first_row + r for the r in runs t, t + n_threads, … of _ROW_RUN rows of
    [0, len(losses)) with thread ``t``'s buffers (runs in its two halves by turns); losses[r]: row r's loss.
    Stops (and sets stop[0]) at a row whose loss (L2 terms included) is not finite, before its step."""
    user_table, item_table, phi_user_table, phi_item_table = tables
    users, items, parts, d_scores, d_phi = w.users[t], w.items[t], w.parts[t], w.d_scores[t], w.d_phi[t]
    scores, phi_scores, pool, pool_scores, term = w.scores[t], w.phi_scores[t], w.pool[t], w.pool_scores[t], w.term[t]
    phi_term = term[1 + items.shape[1]:]  # (once: a view made per row costs reference counting per row)
    nbpo = st.loss == _NBPO
    n = losses.shape[0]
    first, half = t * _ROW_RUN, 0
    size = max(0, min(_ROW_RUN, n - first))
    _draw_rows(size, first_row + first, key, st, user_table, item_table, indptr, indices, row_users, active_users,
               users, items, pool, pool_scores)
    _prefetch_rows(0, min(size, _ROW_AHEAD), tables, states, users, items, nbpo)
    while size > 0:
        offset, other = half * _ROW_RUN, (1 - half) * _ROW_RUN
        next_first = first + n_threads * _ROW_RUN  # drawn now, trained next
        next_size = max(0, min(_ROW_RUN, n - next_first))
        _draw_rows(next_size, first_row + next_first, key, st, user_table, item_table, indptr, indices, row_users,
                   active_users, users[other:], items[other:], pool[other:], pool_scores[other:])
        end = offset + size
        for b in range(offset, end):
            ahead = b + _ROW_AHEAD  # request its table rows now (in this run, or the next one's first rows)
            if ahead < end:
                _prefetch_rows(ahead, ahead + 1, tables, states, users, items, nbpo)
            elif ahead - end < next_size:
                _prefetch_rows(other + ahead - end, other + ahead - end + 1, tables, states, users, items, nbpo)
            if stop[0]:
                return
            _score_range(b, b + 1, st, user_table, item_table, phi_user_table, phi_item_table, users, items, scores,
                         phi_scores, d_scores, d_phi, parts)
            _row_gradient(b, 1.0, st, tables, users, items, d_scores, d_phi, parts, term, phi_term)
            loss = parts[b, 0] + parts[b, 1] + parts[b, 2]
            losses[first + b - offset] = loss
            if not _finite(loss):
                stop[0] = 1
                return
            _step_row(b, st, tables, states, users, items, term, phi_term)
        first, size, half = next_first, next_size, 1 - half


# ---- the driver ---------------------------------------------------------------------------------------------

@njit(parallel=True)
def train_batches(tables, states, indptr, indices, row_users, active_users, st, w, key, first_batch, drop_rates,
                  losses):
    """Train the epoch's mini-batches first_batch, first_batch + 1, … (as many as ``losses`` has entries).

    Each of the workspace's T threads trains whole mini-batches (thread t: the t-th, (t+T)-th, …), each one
    exactly as one FBGEMM step would; with T = 1 that is sequential mini-batch training, bit-reproducible.
    With T > 1 the threads' batches overlap in time and update the shared rows without locks (Hogwild
    across mini-batches: a batch may see part of a concurrent batch's update), not bit-reproducible.

    Args:
        tables: (user, item, user φ, item φ) float32 (rows, D) weights, updated in place (φ: NBPO's
            factors; (1, 4) placeholders for other losses).
        states: the matching optimizer states (rows, M) float32: M = 1 (rowwise_adagrad), D (adagrad), 0 (sgd).
        indptr, indices: (n_users + 1,) int64 / (nnz,) int32 CSR of the training interactions, sorted items.
        row_users: (nnz,) int32 user of each CSR entry; active_users: users with >= 1 item (PLD).
        st: :class:`Settings`; w: :class:`Workspace` (T slices; slot arrays all -1); key: the epoch's uint64 key.
        drop_rates: (n,) float64 T-CE drop rate of each batch; losses: (n,) float64, filled with batch losses.

    A batch whose loss is not finite stops before the rows it is in are applied, and the threads stop before
    their next batch; the caller finds it in ``losses`` (NaN; batches not run keep their value) and must call
    :func:`reset_workspace` before the next call.
    """
    n_threads = w.users.shape[0]
    n = losses.shape[0]
    stop = np.zeros(1, np.int64)
    one_row = _one_row(st)
    for t in prange(n_threads):
        if one_row:
            _train_rows(t, n_threads, first_batch, key, st, tables, states, indptr, indices, row_users, active_users,
                        w, losses, stop)
            continue
        for i in range(t, n, n_threads):
            if stop[0]:
                break
            loss = _train_batch(t, first_batch + i, key, drop_rates[i], st, tables, states, indptr, indices,
                                row_users, active_users, w)
            losses[i] = loss
            if not _finite(loss):
                stop[0] = 1


@njit
def draw_batches(tables, indptr, indices, row_users, active_users, st, w, key):
    """Only the sampling of the epoch's rows (with PLD: its candidate scoring), on one thread and without training,
    in the runs training draws them (mini-batches; runs of _ROW_RUN rows for one-row batches): the part of an
    epoch spent drawing rows, for profiles (benchmarks/train_speed.py)."""
    users, items, pool = w.users[0], w.items[0], w.pool[0]
    run = _ROW_RUN if _one_row(st) else st.batch_size
    checksum = 0
    for start in range(0, st.epoch_rows, run):
        size = min(run, st.epoch_rows - start)
        _draw_rows(size, start, key, st, tables[0], tables[1], indptr, indices, row_users, active_users, users, items,
                   pool, w.pool_scores[0])
        checksum += items[size - 1, 0]
    return checksum
