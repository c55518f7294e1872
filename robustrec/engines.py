"""Training engines: the code that runs an epoch (``ENGINES``, chosen by ``TrainConfig.engine``).

- ``autograd``: per batch, the batch sampler (:mod:`robustrec.samplers`), the model's forward through
  torchrec's lookups, :func:`~robustrec.objectives.objective_loss` and autograd's backward, which runs
  FBGEMM's fused optimizer. Every model, CPU and CUDA, and the sharded path.
- ``kernel``: :class:`KernelEngine`, the fused CPU kernel (:mod:`robustrec.kernels`) on the very same
  torchrec tables and FBGEMM optimizer state, updated in place: matrix factorisation on CPU with the
  optimizers FBGEMM implements on CPU. One mini-batch is the same gradient step as ``autograd``'s; the
  sampling is drawn inside the kernel, so the random stream (and so the exact result) differs from
  ``autograd``'s for the same seed. By default every thread trains whole mini-batches (batch size 1: runs of
  one-row batches, per-sample SGD) that update the tables without locks (reruns differ in the last bits);
  ``deterministic`` uses one thread: bit-identical reruns.
- ``auto``: ``kernel`` where it applies, else ``autograd``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from robustrec.jit import cache_is_cold, fill_cache_in_child, numba_thread_count, numba_threads
from robustrec.models.mf import PREFERENCE, MatrixFactorization
from robustrec.models.tables import table_name
from robustrec.objectives import LOSS_CODES, PHI, phi_logit, tce_drop_rate
from robustrec.optim import CPU_OPTIMIZERS, fused_table

if TYPE_CHECKING:
    from robustrec.config import TrainConfig

ENGINES = ("auto", "kernel", "autograd")
KERNEL_MODELS = ("mf",)
PROGRESS_UPDATES = 20  # progress bar updates per epoch (kernel calls per epoch when the bar is shown)


def kernel_unsupported(config: TrainConfig) -> str | None:
    """Why the ``kernel`` engine cannot train ``config``, or None when it can."""
    if config.model not in KERNEL_MODELS:
        return f"model {config.model!r} (the kernel trains {KERNEL_MODELS}; use engine 'autograd')"
    if torch.device(config.device).type != "cpu":
        return f"device {config.device!r} (the kernel runs on CPU; use engine 'autograd')"
    if config.optimizer not in CPU_OPTIMIZERS:
        return f"optimizer {config.optimizer!r} (the kernel implements FBGEMM's CPU optimizers {CPU_OPTIMIZERS})"
    return None


def resolve_engine(config: TrainConfig) -> str:
    """The engine that trains ``config``: ``kernel`` or ``autograd`` (``auto`` picks the kernel where it applies)."""
    if config.engine not in ENGINES:
        raise ValueError(f"unknown engine {config.engine!r}; expected one of {ENGINES}")
    if config.engine == "auto":
        return "autograd" if kernel_unsupported(config) else "kernel"
    if config.engine == "kernel" and (reason := kernel_unsupported(config)):
        raise ValueError(f"engine 'kernel' cannot train {reason}")
    return config.engine


# Row-wise Adagrad's state of a table with at most this many rows trains in a copy with one cache line per row.
_OWN_LINE_MAX_ROWS = 16_384


def _on_own_lines(state: np.ndarray) -> np.ndarray:
    """A working copy of row-wise Adagrad's state (rows, 1) with each row on a 64-byte line of its own (rows, 16;
    column 0 the state) for a small table, else ``state`` itself.

    FBGEMM's layout puts 16 rows on a cache line, so threads stepping different rows of one line take it from each
    other (false sharing); that costs most on small, hot tables. On large ones the 16x larger copy misses the cache
    more than sharing costs, hence the row bound. (One thread takes the same path, so that seeded deterministic
    runs check the copy.)"""
    if state.ndim != 2 or state.shape[1] != 1 or state.shape[0] > _OWN_LINE_MAX_ROWS:
        return state
    padded = np.zeros((state.shape[0], 16), np.float32)
    padded[:, 0] = state[:, 0]
    return padded


def _batches_to_check(losses: np.ndarray) -> list[int]:
    """Indices, in order, of the first loss in ``losses`` that is not finite and of the largest finite one: a check
    that fails on non-finite losses and on losses above a bound fails on one of these when it fails on any (a
    batch size of 1 has one loss per training interaction: too many to check one by one in Python)."""
    finite = np.isfinite(losses)
    picked = set()
    if not finite.all():
        picked.add(int(np.argmin(finite)))
    if finite.any():
        picked.add(int(np.argmax(np.where(finite, np.abs(losses), -1.0))))
    return sorted(picked)


class KernelEngine:
    """Epochs of ``config`` on ``model``'s live tables through the fused CPU kernel.

    Args:
        model: a :class:`~robustrec.models.MatrixFactorization` whose tables are fused (:func:`robustrec.optim.fuse`);
            its weights and FBGEMM's optimizer state are read and written in place, so checkpoints
            (``model.state_dict()``, ``optimizer_state(model)``) and the ``autograd`` engine see the updates.
        config: the run's configuration (``resolve_engine(config) == "kernel"``).
        train: (n_users, n_items) CSR of the training interactions.
    """

    def __init__(self, model: MatrixFactorization, config: TrainConfig, train: sp.csr_matrix) -> None:
        from robustrec import kernels  # numba compiles on first use: import it only when this engine runs

        if cache_is_cold(kernels.train_batches):  # compile in a child, load the cached build here (see fill_cache_in_child)
            fill_cache_in_child("from robustrec.training import compile_kernel; compile_kernel()")
        self.kernels, self.config = kernels, config
        train = sp.csr_matrix(train, dtype=np.float32)
        train.sum_duplicates()
        train.sort_indices()
        n_users, n_items = train.shape
        degree = np.diff(train.indptr)
        if np.any(degree >= n_items):
            raise ValueError(f"user index {int(np.flatnonzero(degree >= n_items)[0])} has interacted with every "
                             "item; no negative exists")
        self.indptr = train.indptr.astype(np.int64)
        self.indices = train.indices.astype(np.int32)
        self.row_users = np.repeat(np.arange(n_users, dtype=np.int32), degree)
        self.active_users = np.flatnonzero(degree > 0).astype(np.int64)
        self.n_batches = math.ceil(train.nnz / config.batch_size)

        def live(side: str, head: str):
            table = fused_table(getattr(model, f"{side}_tables").collection, table_name(side, head))
            return table.weight.numpy(), table.state.numpy(), table.lr, table.eps

        (user_w, user_s, lr, eps), (item_w, item_s, _, _) = live("user", PREFERENCE), live("item", PREFERENCE)
        nbpo = PHI in model.heads
        if nbpo:
            (phi_user_w, phi_user_s, _, _), (phi_item_w, phi_item_s, _, _) = live("user", PHI), live("item", PHI)
        else:  # placeholders of the same types (the kernel never reads them)
            phi_user_w = phi_item_w = np.zeros((1, 4), np.float32)
            phi_user_s = phi_item_s = np.zeros((1, user_s.shape[1]), np.float32)
        self.tables = (user_w, item_w, phi_user_w, phi_item_w)
        self.states = (user_s, item_s, phi_user_s, phi_item_s)
        self.settings = kernels.Settings(
            loss=LOSS_CODES[config.loss], l2=float(config.l2), phi_l2=float(config.phi_l2) if nbpo else 0.0,
            logit_prior=phi_logit(config), rce_beta=float(config.rce_beta),
            optimizer=CPU_OPTIMIZERS.index(config.optimizer), lr=lr, eps=eps, pld=False,
            n_negatives=config.sampled_items, pool_size=config.pld_pool_size,
            temperature=float(config.pld_temperature), n_items=n_items, epoch_rows=train.nnz,
            batch_size=config.batch_size, half_bits=kernels.half_bits(train.nnz),
        )
        self.n_threads = 1 if config.deterministic else numba_thread_count(torch.get_num_threads())
        self.workspace = kernels.new_workspace(self.n_threads, n_users, n_items, config.batch_size,
                                               config.sampled_items, config.pld_pool_size, user_w.shape[1],
                                               phi_user_w.shape[1])

    def run_epoch(self, epoch: int, rng: np.random.Generator, step: int, *, progress: bool = False,
                  check_loss: Callable[[float, int], None] | None = None) -> float:
        """Train epoch ``epoch`` (from 1) starting at global step ``step``; returns the sum of its batch losses.

        One draw from ``rng`` keys every random number of the epoch, so a checkpointed ``rng`` resumes exactly.
        After each kernel call (at most :data:`PROGRESS_UPDATES` calls per epoch with a progress bar, else one),
        ``check_loss(loss, step)`` sees the call's first batch loss that is not finite and its largest finite one,
        in step order, and may raise to stop training; without it a batch loss that is not finite raises
        FloatingPointError.
        """
        config, kernels = self.config, self.kernels
        key = np.uint64(rng.integers(0, 2**64, dtype=np.uint64))
        settings = self.settings._replace(pld=config.sampler == "pld" and epoch > config.pld_warmup_epochs)
        n = self.n_batches
        drop_rates = np.zeros(n)
        if config.loss == "tce" and config.batch_size > 1:  # (a one-row batch drops nothing)
            drop_rates[:] = [tce_drop_rate(config, step + t, n) for t in range(n)]
        losses = np.zeros(n)
        chunk = math.ceil(n / PROGRESS_UPDATES) if progress else n
        kernels.reset_workspace(self.workspace)
        states = tuple(_on_own_lines(state) for state in self.states)  # written back below
        bar = tqdm(total=n, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
        try:
            with numba_threads(self.n_threads):
                for first in range(0, n, chunk):
                    part = slice(first, min(first + chunk, n))
                    kernels.train_batches(self.tables, states, self.indptr, self.indices, self.row_users,
                                          self.active_users, settings, self.workspace, key, first, drop_rates[part],
                                          losses[part])
                    for t in _batches_to_check(losses[part]):
                        if check_loss is not None:
                            check_loss(float(losses[first + t]), step + first + t)
                        elif not math.isfinite(losses[first + t]):
                            raise FloatingPointError(f"loss became {losses[first + t]} at epoch {epoch}, "
                                                     f"step {step + first + t}")
                    bar.update(part.stop - first)
        finally:
            bar.close()
            for live, working in zip(self.states, states):
                if working is not live:
                    live[:, 0] = working[:, 0]
        return float(losses.sum())

    def sample_epoch(self, epoch: int, rng: np.random.Generator) -> None:
        """Only draw epoch ``epoch``'s rows (negatives; PLD's candidate scoring), on one thread, without training:
        the sampling part of an epoch, for profiles."""
        key = np.uint64(rng.integers(0, 2**64, dtype=np.uint64))
        settings = self.settings._replace(pld=self.config.sampler == "pld" and epoch > self.config.pld_warmup_epochs)
        self.kernels.draw_batches(self.tables, self.indptr, self.indices, self.row_users, self.active_users, settings,
                                  self.workspace, key)
