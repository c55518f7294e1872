"""The fused CPU training kernel: MF mini-batches in compiled numba loops, no Python per batch.

:func:`train_batches` trains a run of an epoch's mini-batches on the live arrays of the torchrec tables and
of FBGEMM's optimizer state (:mod:`robustrec.engines` hands them in; nothing is copied). One thread trains
one whole mini-batch:

1. rows: draw each row — ``uniform``: the next interaction of a pseudo-random permutation of the training
   interactions; ``pld``: a uniform user, a pool of k of its observed items, one unobserved item j, the
   pool's no-gradient losses softplus(s_uj − s_uc) and a draw from softmax(−ℓ/τ) — then its unobserved
   items (exactly uniform over the user's unobserved items: the r-th one is found by binary search in the
   user's sorted items, so never a positive and no rejection loop), its scores, and d loss / d score from
   the objective (:func:`robustrec.objectives.row_gradients`). T-CE then drops the batch's largest
   observed-item losses (:func:`robustrec.objectives.tce_dropped`).
2. gradients: the batch's distinct rows are grouped, and each row's gradient of the batch loss is summed
   over its occurrences in batch order, from the tables as they were at the start of the batch;
3. updates: the optimizer is applied once per distinct row, with FBGEMM's CPU rules (:data:`OPTIMIZERS`).

So a mini-batch is one step of the autograd engine with FBGEMM's fused update — same gradient, same update
— without its per-batch Python, autograd and lookup overhead. Every random number is a hash of (epoch key,
row, draw), so the rows drawn do not depend on threads. With one thread, training is sequential mini-batch
SGD and bit-reproducible. With T threads, T mini-batches are trained at a time and update the shared tables
without locks (Hogwild, Niu et al. 2011, across mini-batches): a batch may see part of a concurrent batch's
update, so reruns differ in the last bits; there is no barrier inside an epoch, which keeps threads busy on
a loaded machine.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import prange
from numba.extending import register_jitable

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
OPTIMIZERS = CPU_OPTIMIZERS
_ROWWISE_ADAGRAD, _ADAGRAD = OPTIMIZERS.index("rowwise_adagrad"), OPTIMIZERS.index("adagrad")
_TCE, _NBPO = objectives.LOSS_CODES["tce"], objectives.LOSS_CODES["nbpo"]

# Reassociation lets LLVM vectorise the dot products and row sums; no "nnan"/"ninf", so a non-finite loss is
# still seen as one (the step is then refused).
_FAST_MATH = {"reassoc", "contract", "nsz", "arcp"}

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_FEISTEL_ROUNDS = 4


class Settings(NamedTuple):
    """Scalars of one kernel call (codes index ``objectives.LOSSES`` and :data:`OPTIMIZERS`)."""

    loss: int
    l2: float
    phi_l2: float  # NBPO's L2 weight on the flip factors (0 for other losses)
    flip_logit: float
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
    """Buffers of the mini-batches in flight, one slice per thread (T threads; B = batch size, C = 1 +
    n_negatives, D / Dφ the table dimensions)."""

    users: np.ndarray  # (T, B) int64
    items: np.ndarray  # (T, B, C) int64, column 0 the observed item
    scores: np.ndarray  # (T, B, C) float32
    phi_scores: np.ndarray  # (T, B, C) float32, NBPO's raw flip scores
    d_scores: np.ndarray  # (T, B, C) float64, d row loss / d score
    d_phi: np.ndarray  # (T, B, C) float64
    parts: np.ndarray  # (T, B, 3) float64 each row's loss: observed-item term, sampled-items term, L2 terms
    dropped: np.ndarray  # (T, B) bool, T-CE
    pool: np.ndarray  # (T, B, k) int64 positions of PLD's candidates in the user's items
    grad_users: np.ndarray  # (T, B, D) float32 gradient of each distinct user of the batch, by slot
    grad_items: np.ndarray  # (T, B·C, D) float32 gradient of each distinct item, by slot
    grad_phi_users: np.ndarray  # (T, B, Dφ) float32
    grad_phi_items: np.ndarray  # (T, B·C, Dφ) float32
    user_slot: np.ndarray  # (T, n_users) int64, -1 between batches: a user's slot among the batch's users
    item_slot: np.ndarray  # (T, n_items) int64, -1 between batches
    user_rows: np.ndarray  # (T, B) int64 the user of each slot
    item_rows: np.ndarray  # (T, B·C) int64
    count: np.ndarray  # (T, 2) int64 slots in use (users, items)


def new_workspace(n_threads: int, n_users: int, n_items: int, batch_size: int, n_negatives: int, pool_size: int,
                  dim: int, phi_dim: int) -> Workspace:
    t, b, c = n_threads, batch_size, 1 + n_negatives
    f32, f64, i64 = np.float32, np.float64, np.int64
    return Workspace(
        users=np.zeros((t, b), i64), items=np.zeros((t, b, c), i64), scores=np.zeros((t, b, c), f32),
        phi_scores=np.zeros((t, b, c), f32), d_scores=np.zeros((t, b, c), f64), d_phi=np.zeros((t, b, c), f64),
        parts=np.zeros((t, b, 3), f64), dropped=np.zeros((t, b), np.bool_), pool=np.zeros((t, b, pool_size), i64),
        grad_users=np.zeros((t, b, dim), f32), grad_items=np.zeros((t, b * c, dim), f32),
        grad_phi_users=np.zeros((t, b, phi_dim), f32), grad_phi_items=np.zeros((t, b * c, phi_dim), f32),
        user_slot=np.full((t, n_users), -1, i64), item_slot=np.full((t, n_items), -1, i64),
        user_rows=np.zeros((t, b), i64), item_rows=np.zeros((t, b * c), i64), count=np.zeros((t, 2), i64),
    )


def half_bits(n: int) -> int:
    """Smallest h >= 1 with 4**h >= n: the Feistel permutation's half width for a domain of n rows."""
    return max(1, math.ceil(math.log2(max(n, 2)) / 2))


# ---- counter-based random numbers ------------------------------------------------------------------------

@njit
def _mix(z):
    """SplitMix64's finaliser: a bijective hash of a uint64."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit
def uniform(key, row, draw):
    """The ``draw``-th uniform number in [0, 1) of ``row`` under the epoch's ``key`` (uint64)."""
    z = _mix(key + np.uint64(row) * _GOLDEN)
    z = _mix(z + np.uint64(draw + 1) * _GOLDEN)
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit
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


@njit
def unobserved_item(indptr, indices, n_items, user, u01):
    """An item drawn uniformly from ``user``'s unobserved items, given a uniform ``u01`` in [0, 1).

    The r-th unobserved item is r + #{j : p_j − j <= r} for the user's sorted items p_0 < p_1 < …
    (p_j − j counts the unobserved items below p_j and grows with j): one binary search.
    """
    start, end = indptr[user], indptr[user + 1]
    n_free = n_items - (end - start)
    r = min(np.int64(u01 * n_free), n_free - 1)
    lo, hi = np.int64(0), end - start
    while lo < hi:
        mid = (lo + hi) >> 1
        if indices[start + mid] - mid <= r:
            lo = mid + 1
        else:
            hi = mid
    return r + lo


@njit(fastmath=_FAST_MATH)
def _dot(a, i, b, j):
    """a[i] · b[j] of two (rows, D) tables (indexing, no row views: no reference counting in hot loops)."""
    total = np.float32(0.0)
    for d in range(a.shape[1]):
        total += a[i, d] * b[j, d]
    return total


# ---- pass 1: rows and their per-occurrence gradients --------------------------------------------------------

@njit(fastmath=_FAST_MATH)
def _pld_row(user_table, item_table, indptr, indices, active_users, n_items, n_cols, pool_size, temperature,
             pool, b, key, row):
    """PLD's draw of one row (Zhang et al. 2025, Alg. 1): returns (user, chosen observed item, unobserved j).

    Same distribution as :class:`robustrec.samplers.PLDSampler`: a uniform active user, k of its items
    (Floyd's algorithm, distinct when it has >= k), j uniform unobserved, and the candidate c drawn with
    probability softmax(−softplus(s_uj − s_uc)/τ) by the Gumbel-max trick. ``pool`` (B, k) is scratch.
    """
    # draws 1..n_cols-1 are the row's unobserved items (j is draw 1); PLD's own draws come after
    n_active = active_users.shape[0]
    user = active_users[min(np.int64(uniform(key, row, n_cols) * n_active), n_active - 1)]
    start = indptr[user]
    degree = indptr[user + 1] - start
    k = pool_size
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
    j = unobserved_item(indptr, indices, n_items, user, uniform(key, row, 1))
    s_j = float(_dot(user_table, user, item_table, j))
    best, chosen = -np.inf, np.int64(indices[start + pool[b, 0]])
    for q in range(k):
        candidate = np.int64(indices[start + pool[b, q]])
        loss = objectives.softplus_scalar(s_j - float(_dot(user_table, user, item_table, candidate)))
        gumbel = -math.log(-math.log(uniform(key, row, n_cols + 1 + k + q) + 1e-12))
        value = -loss / temperature + gumbel
        if value > best:
            best, chosen = value, candidate
    return user, chosen, j


@njit(fastmath=_FAST_MATH)
def _draw_rows(first, last, start, key, st, user_table, item_table, indptr, indices, row_users, active_users, users,
               items, pool):
    """Draw batch rows first..last-1 (epoch rows start + b): users[b], items[b] (observed item first). PLD's
    draw scores its candidate pool here. One stage at a time over the rows: the stages' random reads
    (interactions, the users' items, table rows) are independent across rows, so the CPU overlaps their misses."""
    n_cols = items.shape[1]
    first_free = 2 if st.pld else 1
    if st.pld:
        for b in range(first, last):
            user, chosen, j = _pld_row(user_table, item_table, indptr, indices, active_users, st.n_items, n_cols,
                                       st.pool_size, st.temperature, pool, b, key, start + b)
            users[b] = user
            items[b, 0] = chosen
            items[b, 1] = j
    else:
        for b in range(first, last):
            users[b] = permuted(start + b, st.epoch_rows, st.half_bits, key)  # the interaction's index, for now
        for b in range(first, last):
            entry = users[b]
            users[b] = row_users[entry]
            items[b, 0] = indices[entry]
    for b in range(first, last):
        for k in range(first_free, n_cols):
            items[b, k] = unobserved_item(indptr, indices, st.n_items, users[b], uniform(key, start + b, k))


@njit(fastmath=_FAST_MATH)
def _rows(first, last, start, key, size, st, user_table, item_table, phi_user_table, phi_item_table, indptr,
          indices, row_users, active_users, users, items, scores, phi_scores, d_scores, d_phi, parts, pool, slots):
    """Draw, score and differentiate batch rows first..last-1 (epoch rows start + b), and add their terms to
    the gradients of the batch's distinct rows. T-CE's observed-item terms wait for its drop (:func:`_add_observed`)."""
    _draw_rows(first, last, start, key, st, user_table, item_table, indptr, indices, row_users, active_users, users,
               items, pool)
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
                                                     st.flip_logit, st.rce_beta)
        parts[b, 0] = observed
        parts[b, 1] = sampled
    _add_terms(first, last, 1 if st.loss == _TCE else 0, size, st, user_table, item_table, phi_user_table,
               phi_item_table, users, items, d_scores, d_phi, parts, slots)


_CHUNK = 32  # rows per stage run: enough to overlap memory latency, small enough for the rows to stay in L1/L2


# ---- gradients of the batch's distinct rows, then one optimizer step per row --------------------------------

class Slots(NamedTuple):
    """One thread's gradients of its batch's distinct rows (S: slots in use; D / Dφ the table dimensions)."""

    user_slot: np.ndarray  # (n_users,) int64: the user's slot in this batch, -1 if absent (reset after a batch)
    item_slot: np.ndarray  # (n_items,) int64
    user_rows: np.ndarray  # (B,) int64: the user of each slot
    item_rows: np.ndarray  # (B·C,) int64
    count: np.ndarray  # (2,) int64: slots in use (users, items)
    grad_users: np.ndarray  # (B, D) float32 gradient of the batch loss for each slot's row
    grad_items: np.ndarray  # (B·C, D) float32
    grad_phi_users: np.ndarray  # (B, Dφ) float32 (NBPO's flip factors)
    grad_phi_items: np.ndarray  # (B·C, Dφ) float32


@njit
def _slot(row, slot_of, rows, count, side, grads, phi_grads, nbpo):
    """The slot of ``row`` (a new one, with zero gradients, at its first occurrence in the batch)."""
    s = slot_of[row]
    if s < 0:
        s = count[side]
        count[side] = s + 1
        slot_of[row] = s
        rows[s] = row
        grads[s, :] = 0.0
        if nbpo:
            phi_grads[s, :] = 0.0
    return s


@njit(fastmath=_FAST_MATH)
def _add_row(b, first_column, own, scale, reg, user_table, item_table, users, items, d_scores, user_grad,
             item_grad, user_slot, item_slot, scratch):
    """Add row b's terms to the gradients: c_k·e_{i_k} (+ own·reg·e_u) to its user's slot, c_k·e_u + reg·e_{i_k}
    to each item's slot (k >= first_column), c_k = d_scores[b, k]·scale, reg = 2·L2 weight / B. Returns the
    squared norms of the rows whose L2 terms were added (own: the user's too). ``scratch`` (D,)."""
    user = users[b]
    dim = user_table.shape[1]
    user_reg = own * reg
    sq = np.float32(0.0)
    for d in range(dim):
        scratch[d] = user_reg * user_table[user, d]
        sq += own * user_table[user, d] * user_table[user, d]
    for k in range(first_column, items.shape[1]):
        item = items[b, k]
        si = item_slot[item]
        c = np.float32(d_scores[b, k] * scale)
        for d in range(dim):
            scratch[d] += c * item_table[item, d]
            item_grad[si, d] += c * user_table[user, d] + reg * item_table[item, d]
            sq += item_table[item, d] * item_table[item, d]
    su = user_slot[user]
    for d in range(dim):
        user_grad[su, d] += scratch[d]
    return float(sq)


@njit(fastmath=_FAST_MATH)
def _add_terms(first, last, first_column, size, st, user_table, item_table, phi_user_table, phi_item_table, users,
               items, d_scores, d_phi, parts, slots):
    """Add rows first..last-1's terms of the batch loss (score columns first_column.., the L2 terms) to the
    gradients of their rows; every gradient comes from the tables as they were at the start of the batch.
    With first_column = 1 (T-CE, before its drop) the observed item and the user's L2 term wait."""
    nbpo = st.loss == _NBPO
    scale = 1.0 / size
    reg, phi_reg = np.float32(2.0 * st.l2 * scale), np.float32(2.0 * st.phi_l2 * scale)
    user_slot, item_slot, user_rows, item_rows, count = (slots.user_slot, slots.item_slot, slots.user_rows,
                                                         slots.item_rows, slots.count)
    grad_users, grad_items, grad_phi_users, grad_phi_items = (slots.grad_users, slots.grad_items,
                                                              slots.grad_phi_users, slots.grad_phi_items)
    for b in range(first, last):
        _slot(users[b], user_slot, user_rows, count, 0, grad_users, grad_phi_users, nbpo)
        for k in range(first_column, items.shape[1]):
            _slot(items[b, k], item_slot, item_rows, count, 1, grad_items, grad_phi_items, nbpo)
    own = np.float32(1.0 if first_column == 0 else 0.0)  # the user's L2 term, once per occurrence
    scratch = np.empty(max(user_table.shape[1], phi_user_table.shape[1]), np.float32)
    for b in range(first, last):
        sq = _add_row(b, first_column, own, scale, reg, user_table, item_table, users, items, d_scores, grad_users,
                      grad_items, user_slot, item_slot, scratch)
        parts[b, 2] = st.l2 * sq
    if nbpo:
        for b in range(first, last):
            sq = _add_row(b, first_column, own, scale, phi_reg, phi_user_table, phi_item_table, users, items, d_phi,
                          grad_phi_users, grad_phi_items, user_slot, item_slot, scratch)
            parts[b, 2] += st.phi_l2 * sq


@njit(fastmath=_FAST_MATH)
def _add_observed(size, st, user_table, item_table, users, items, d_scores, parts, slots):
    """T-CE, after its drop: add every row's observed-item term (0 for dropped rows: only the item's L2 term
    remains) and the user's L2 term."""
    scale = 1.0 / size
    reg = np.float32(2.0 * st.l2 * scale)
    observed = items[:, :1]
    scratch = np.empty(user_table.shape[1], np.float32)
    for b in range(size):
        parts[b, 2] += st.l2 * _add_row(b, 0, np.float32(1.0), scale, reg, user_table, item_table, users, observed,
                                        d_scores, slots.grad_users, slots.grad_items, slots.user_slot,
                                        slots.item_slot, scratch)


@njit(fastmath=_FAST_MATH)
def _apply(optimizer, lr, eps, table, state, first, last, rows, grads):
    """One optimizer step of table[rows[s]] (and its state row) with the gradient grads[s], slots first..last-1."""
    dim = table.shape[1]
    lr32, eps32 = np.float32(lr), np.float32(eps)
    for s in range(first, last):
        row = rows[s]
        if optimizer == _ROWWISE_ADAGRAD:
            sum_sq = np.float32(0.0)
            for d in range(dim):
                sum_sq += grads[s, d] * grads[s, d]
            momentum = state[row, 0] + sum_sq / np.float32(dim)
            state[row, 0] = momentum
            multiplier = lr32 / (np.sqrt(momentum) + eps32)
            for d in range(dim):
                table[row, d] -= multiplier * grads[s, d]
        elif optimizer == _ADAGRAD:
            for d in range(dim):
                state[row, d] += grads[s, d] * grads[s, d]
                table[row, d] -= lr32 * grads[s, d] / (np.sqrt(state[row, d]) + eps32)
        else:
            for d in range(dim):
                table[row, d] -= lr32 * grads[s, d]


# ---- one mini-batch, on one thread -------------------------------------------------------------------------

@njit
def _train_batch(t, batch, key, drop_rate, st, tables, states, indptr, indices, row_users, active_users, w):
    """Train mini-batch ``batch`` of the epoch with thread ``t``'s buffers; returns its loss. The update is
    skipped when the loss is not finite."""
    user_table, item_table, phi_user_table, phi_item_table = tables
    user_state, item_state, phi_user_state, phi_item_state = states
    users, items, parts, d_scores = w.users[t], w.items[t], w.parts[t], w.d_scores[t]
    slots = Slots(w.user_slot[t], w.item_slot[t], w.user_rows[t], w.item_rows[t], w.count[t], w.grad_users[t],
                  w.grad_items[t], w.grad_phi_users[t], w.grad_phi_items[t])
    slots.count[:] = 0
    start = batch * st.batch_size
    size = min(st.batch_size, st.epoch_rows - start)
    for first in range(0, size, _CHUNK):
        _rows(first, min(size, first + _CHUNK), start, key, size, st, user_table, item_table, phi_user_table,
              phi_item_table, indptr, indices, row_users, active_users, users, items, w.scores[t], w.phi_scores[t],
              d_scores, w.d_phi[t], parts, w.pool[t], slots)
    if st.loss == _TCE:  # Wang et al. 2021: drop the batch's largest observed-item losses (loss and gradient)
        n_drop = int(drop_rate * size)
        dropped = w.dropped[t]
        objectives.tce_dropped(parts[:size, 0].copy(), n_drop, dropped[:size])
        for b in range(size):
            if dropped[b]:
                parts[b, 0] = 0.0
                d_scores[b, 0] = 0.0
        _add_observed(size, st, user_table, item_table, users, items, d_scores, parts, slots)
    total = 0.0
    for b in range(size):
        total += parts[b, 0] + parts[b, 1] + parts[b, 2]
    loss = total / size
    n_users, n_items = slots.count[0], slots.count[1]
    if np.isfinite(loss):
        _apply(st.optimizer, st.lr, st.eps, user_table, user_state, 0, n_users, slots.user_rows, slots.grad_users)
        _apply(st.optimizer, st.lr, st.eps, item_table, item_state, 0, n_items, slots.item_rows, slots.grad_items)
        if st.loss == _NBPO:
            _apply(st.optimizer, st.lr, st.eps, phi_user_table, phi_user_state, 0, n_users, slots.user_rows,
                   slots.grad_phi_users)
            _apply(st.optimizer, st.lr, st.eps, phi_item_table, phi_item_state, 0, n_items, slots.item_rows,
                   slots.grad_phi_items)
    for s in range(n_users):
        slots.user_slot[slots.user_rows[s]] = -1
    for s in range(n_items):
        slots.item_slot[slots.item_rows[s]] = -1
    return loss


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
        tables: (user, item, user φ, item φ) float32 (rows, D) weights, updated in place (φ: NBPO's flip
            factors; (1, 4) placeholders for other losses).
        states: the matching optimizer states (rows, M) float32: M = 1 (rowwise_adagrad), D (adagrad), 0 (sgd).
        indptr, indices: (n_users + 1,) int64 / (nnz,) int32 CSR of the training interactions, sorted items.
        row_users: (nnz,) int32 user of each CSR entry; active_users: users with >= 1 item (PLD).
        st: :class:`Settings`; w: :class:`Workspace` (T slices; slot arrays all -1); key: the epoch's uint64 key.
        drop_rates: (n,) float64 T-CE drop rate of each batch; losses: (n,) float64, filled with batch losses.

    A batch whose loss is not finite is not applied, and the threads stop before their next batch; the
    caller finds it in ``losses`` (batches not run keep their value).
    """
    n_threads = w.users.shape[0]
    n = losses.shape[0]
    stop = np.zeros(1, np.int64)
    for t in prange(n_threads):
        for i in range(t, n, n_threads):
            if stop[0]:
                break
            loss = _train_batch(t, first_batch + i, key, drop_rates[i], st, tables, states, indptr, indices,
                                row_users, active_users, w)
            losses[i] = loss
            if not np.isfinite(loss):
                stop[0] = 1


@njit
def draw_batches(tables, indptr, indices, row_users, active_users, st, w, key, n_batches):
    """Only the sampling of n_batches mini-batches (with PLD: its candidate scoring), on one thread and without
    training: the part of an epoch spent drawing rows, for profiles (benchmarks/train_speed.py)."""
    users, items, pool = w.users[0], w.items[0], w.pool[0]
    checksum = 0
    for batch in range(n_batches):
        start = batch * st.batch_size
        size = min(st.batch_size, st.epoch_rows - start)
        for first in range(0, size, _CHUNK):
            _draw_rows(first, min(size, first + _CHUNK), start, key, st, tables[0], tables[1], indptr, indices,
                       row_users, active_users, users, items, pool)
        checksum += items[size - 1, 0]
    return checksum
