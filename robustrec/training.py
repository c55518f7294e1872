"""The training loop: epochs of sampled batches, periodic validation with early
stopping, atomic resumable checkpoints, a tqdm progress bar, fixed seeds."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from robustrec import atomic
from robustrec.config import TrainConfig, config_differences
from robustrec.engines import KernelEngine, resolve_engine
from robustrec.evaluate import ranking_metrics
from robustrec.models import GRAPH_MODELS, PREFERENCE, build_model
from robustrec.objectives import PHI, heads_for, objective_loss
from robustrec.optim import dense_parameters, fuse, load_optimizer_state, optimizer_state
from robustrec.samplers import build_sampler

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


#: A batch loss above this means training diverged: the objectives start near log 2 and only decrease when
#: training works, so a loss a million times that is an explosion, not progress.
DIVERGED_LOSS = 1e6
#: An embedding entry above this in magnitude means the weights exploded (they start at N(0, init_std²)).
DIVERGED_WEIGHT = 1e4


class TrainingDiverged(FloatingPointError):
    """The loss or the weights stopped being finite (or exploded); the message names where and what to change."""


def check_loss(value: float, config: TrainConfig, *, epoch: int, step: int) -> None:
    """TrainingDiverged when a batch loss is not finite or above :data:`DIVERGED_LOSS`."""
    if not (math.isfinite(value) and abs(value) <= DIVERGED_LOSS):
        raise TrainingDiverged(f"training diverged at epoch {epoch}, step {step}: loss {value:.4g}; lower --lr "
                               f"(now {config.lr:g}) or raise --l2 (now {config.l2:g})")


def check_weights(model: torch.nn.Module, config: TrainConfig, *, epoch: int) -> None:
    """TrainingDiverged when a weight of ``model`` is not finite or above :data:`DIVERGED_WEIGHT` in magnitude."""
    with torch.no_grad():
        for name, weight in model.state_dict().items():
            if weight.is_floating_point() and weight.numel():
                largest = weight.abs().max().item()
                if not (math.isfinite(largest) and largest <= DIVERGED_WEIGHT):
                    raise TrainingDiverged(f"training diverged in epoch {epoch}: {name} reached {largest:.4g}; "
                                           f"lower --lr (now {config.lr:g}) or raise --l2 (now {config.l2:g})")


def check_resumable(saved: dict, config: TrainConfig, saved_epoch: int, path: Path) -> None:
    """ValueError naming each setting of ``config`` that differs from the checkpoint's ``saved`` config; only
    ``epochs`` may change (to extend a run), and not below the checkpoint's epoch."""
    differences = config_differences(saved, config.to_dict(), allowed=("epochs",))
    if differences:
        raise ValueError(f"--resume: {path} was written by a different configuration: {'; '.join(differences)}")
    if config.epochs < saved_epoch:
        raise ValueError(f"--resume: --epochs {config.epochs} is below the checkpoint's epoch {saved_epoch}")


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list[dict]
    epochs: int
    train_seconds: float
    best_epoch: int | None


def checked_interactions(matrix, name: str) -> sp.csr_matrix:
    """``matrix`` (n_users, n_items) as a binary CSR of its positive entries; a ValueError naming ``name`` when it
    is empty or holds NaN, infinite or negative values (implicit feedback: an entry > 0 is an interaction)."""
    try:
        matrix = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a (n_users, n_items) sparse matrix or array of numbers: {error}") from None
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(f"{name} has shape {matrix.shape}: it needs at least one user and one item")
    if not np.isfinite(matrix.data).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    if (matrix.data < 0).any():
        raise ValueError(f"{name} holds negative values; implicit feedback is an interaction (> 0) or nothing")
    matrix.eliminate_zeros()
    if matrix.nnz == 0:
        raise ValueError(f"{name} holds no interactions (shape {matrix.shape}, no entry > 0)")
    matrix.data[:] = 1.0
    return matrix


def new_model(config: TrainConfig, n_users: int, n_items: int, train: sp.spmatrix | None = None) -> torch.nn.Module:
    """The untrained model of ``config``; graph models (LightGCN) need the training matrix ``train``."""
    torch.manual_seed(config.seed)
    extra = {"train": train, "n_layers": config.n_layers} if config.model in GRAPH_MODELS else {}
    if config.phi_dim:
        extra["head_dims"] = {PHI: config.phi_dim}
    return build_model(
        config.model, n_users, n_items, config.dim,
        heads=heads_for(config.loss), init_std=config.init_std, device=torch.device(config.device), **extra,
    )


def evaluate_model(model, train: sp.csr_matrix, test: sp.csr_matrix, ks) -> dict[str, float]:
    users, items = model.embedding_matrices(PREFERENCE)
    return ranking_metrics(users, items, train, test, ks=ks)


def compile_kernel() -> None:
    """Compile the fused CPU training kernel into numba's on-disk cache: one epoch of a tiny matrix factorisation
    (the kernel's argument types do not depend on the data or the objective). Run in a child process by
    :class:`~robustrec.engines.KernelEngine` when the cache is cold."""
    from robustrec.data import generate

    config = TrainConfig(epochs=1, dim=4, batch_size=64, eval_every=0, deterministic=True)
    train = generate(n_users=20, n_items=30, mean_activity=5, seed=0).train.matrix
    model = fuse(new_model(config, *train.shape), optimizer=config.optimizer, lr=config.lr, device=torch.device("cpu"))
    KernelEngine(model, config, train).run_epoch(1, np.random.default_rng(0), step=0)


def fit(
    config: TrainConfig,
    train: sp.csr_matrix,
    validation: sp.csr_matrix | None = None,
    *,
    run_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> FitResult:
    """Train ``config.model`` with ``config.loss`` on ``train`` (n_users, n_items) CSR.

    With ``validation`` (same shape) the model is validated every ``eval_every`` epochs,
    training stops after ``patience`` validations without improvement of
    ``early_stop_metric``, and the best weights are returned. With ``run_dir`` a
    checkpoint is written atomically after every epoch; ``resume`` continues from it.
    """
    train = checked_interactions(train, "train")
    n_users, n_items = train.shape
    device = torch.device(config.device)
    model = fuse(new_model(config, n_users, n_items, train), optimizer=config.optimizer, lr=config.lr, device=device)
    dense = dense_parameters(model)
    dense_optimizer = torch.optim.Adam(dense, lr=config.lr) if dense else None
    sampler = build_sampler(config, train)
    rng = np.random.default_rng(config.seed)

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:  # no-gradient scores for the sampler
        return model.score(torch.from_numpy(users).to(device), torch.from_numpy(items).to(device)).cpu().numpy()

    history: list[dict] = []
    start_epoch, step, elapsed = 0, 0, 0.0
    best_value, best_epoch, best_state, stale = -math.inf, None, None, 0
    ckpt_path = Path(run_dir) / CHECKPOINT_FILE if run_dir is not None else None
    if resume and ckpt_path is not None:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: {ckpt_path} does not exist (the run stopped before its first epoch "
                                    "ended); start over with --overwrite")
        state = atomic.load_torch(ckpt_path, hint="start over with --overwrite")
        check_resumable(state["config"], config, state["epoch"], ckpt_path)
        model.load_state_dict(state["model"])
        load_optimizer_state(model, state["optimizer"])
        rng.bit_generator.state = state["rng"]
        start_epoch, step, elapsed = state["epoch"], state["step"], state["train_seconds"]
        history, best_value, best_epoch, best_state, stale = (
            state["history"], state["best_value"], state["best_epoch"], state["best_state"], state["stale"],
        )
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)

    n_batches = sampler.n_batches(config.batch_size)
    kernel = KernelEngine(model, config, train) if resolve_engine(config) == "kernel" else None
    epoch = start_epoch
    for epoch in range(start_epoch + 1, config.epochs + 1):
        if stale >= config.patience and validation is not None:
            epoch -= 1
            break
        tic = time.perf_counter()
        model.train()
        total = 0.0
        if kernel is not None:  # the fused CPU kernel (robustrec.engines): the whole epoch in compiled code
            total = kernel.run_epoch(epoch, rng, step, progress=progress,
                                     check_loss=lambda value, at: check_loss(value, config, epoch=epoch, step=at))
            step += n_batches
        else:
            batches = sampler.epoch(config.batch_size, rng, epoch=epoch, score_fn=score_fn)
            bar = tqdm(batches, total=n_batches, desc=f"epoch {epoch}/{config.epochs}", disable=not progress,
                       leave=False)
            for users, items in bar:
                output = model(torch.from_numpy(users).to(device), torch.from_numpy(items).to(device))
                loss = objective_loss(output, config, step=step, steps_per_epoch=n_batches)
                value = loss.item()
                check_loss(value, config, epoch=epoch, step=step)
                if dense_optimizer is not None:
                    dense_optimizer.zero_grad()
                loss.backward()
                if dense_optimizer is not None:
                    dense_optimizer.step()
                total += value
                step += 1
        elapsed += time.perf_counter() - tic
        check_weights(model, config, epoch=epoch)
        record = {"epoch": epoch, "loss": total / n_batches, "train_seconds": elapsed}
        if validation is not None and config.eval_every and epoch % config.eval_every == 0:
            model.eval()
            metrics = evaluate_model(model, train, validation, config.ks)
            record.update({f"valid_{k}": v for k, v in metrics.items()})
            current = metrics[config.early_stop_metric]
            if current > best_value:
                best_value, best_epoch, stale = current, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        history.append(record)
        if progress:
            shown = {k: round(v, 4) for k, v in record.items() if k in ("loss", f"valid_{config.early_stop_metric}")}
            tqdm.write(f"epoch {epoch}: {shown}")
        if ckpt_path is not None:
            atomic.save_torch(
                {
                    "config": config.to_dict(), "model": model.state_dict(), "optimizer": optimizer_state(model),
                    "rng": rng.bit_generator.state, "epoch": epoch, "step": step, "train_seconds": elapsed,
                    "history": history, "best_value": best_value, "best_epoch": best_epoch,
                    "best_state": best_state, "stale": stale,
                },
                ckpt_path,
            )
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(model=model, history=history, epochs=epoch, train_seconds=elapsed, best_epoch=best_epoch)
