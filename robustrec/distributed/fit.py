"""The sharded training loop: the same optimisation as :func:`robustrec.training.fit`, split across the ranks.

Every rank runs the same sampler with the same seeded generator, so all ranks see the same global batch of
``config.batch_size`` rows; rank r trains on its contiguous share of the rows and weights its loss by its share,
so the gradient applied to each table row is that of the global batch's mean loss (torchrec sums the ranks'
gradients of a row before the fused update). Sharded training is therefore single-process training with the
same configuration, on any number of ranks and any placement (checked against it by
tests/recommender/test_distributed.py), up to the order of floating-point sums (and T-CE,
which drops the largest losses of each rank's share instead of the global batch's; and a last batch with fewer
rows than ranks, which is skipped). Sampling is repeated on every rank (cheap numpy); PLD's no-gradient scoring
is split across the ranks and all-gathered.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.comm_ops import get_gradient_division
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from tqdm.auto import tqdm

from robustrec import atomic
from robustrec.config import TrainConfig
from robustrec.distributed import checkpoint
from robustrec.distributed.collectives import all_gather_rows, collective_device
from robustrec.distributed.evaluation import evaluate_sharded
from robustrec.distributed.graph import PartitionedLightGCN
from robustrec.distributed.placement import AUTO, ShardingConfig, describe_plan, shard
from robustrec.early_stopping import EarlyStopping
from robustrec.models import PREFERENCE, LightGCN
from robustrec.objectives import objective_loss
from robustrec.optim import fuse
from robustrec.samplers import build_sampler
from robustrec.training import DIVERGED_WEIGHT, TrainingDiverged, check_loss, check_resumable, checked_interactions, \
    new_model

log = logging.getLogger(__name__)

PLAN_FILE = "sharding_plan.json"


@dataclass
class ShardedFit:
    """What :func:`fit_sharded` returns on every rank. ``model`` stays sharded: ``model.module`` is the
    MF/LightGCN whose tables are this rank's shards."""

    model: DistributedModelParallel
    history: list[dict]
    epochs: int
    train_seconds: float
    best_epoch: int | None


def share(n_rows: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous share of a global batch of ``n_rows`` rows (sizes differ by at most one)."""
    return slice(n_rows * rank // world, n_rows * (rank + 1) // world)


def _score_share(model: torch.nn.Module, users: np.ndarray, items: np.ndarray, device: torch.device) -> torch.Tensor:
    """No-gradient scores (b, M) of this rank's rows; an empty share scores one dummy row (lookups are
    collective, so every rank takes part) and returns none."""
    empty = users.size == 0
    if empty:
        users, items = np.zeros(1, dtype=np.int64), np.zeros((1, items.shape[1]), dtype=np.int64)
    u, i = torch.from_numpy(users).to(device), torch.from_numpy(items).to(device)
    with torch.no_grad():
        if isinstance(model, LightGCN):
            scores = model.score(u, i)
        else:  # MF: through the sharded lookups (MatrixFactorization.score reads whole local tables)
            eu = model.user_tables(u)[PREFERENCE]
            ei = model.item_tables(i)[PREFERENCE].view(i.shape[0], i.shape[1], -1)
            scores = torch.bmm(ei, eu.unsqueeze(2)).squeeze(2)
    return scores[:0] if empty else scores


def sharded_score_fn(model: torch.nn.Module, device: torch.device):
    """``score_fn(users (B,), items (B, M)) -> (B, M)`` for the samplers: every rank passes the same global
    batch, scores its share and all-gathers the rest (collective)."""
    rank, world = dist.get_rank(), dist.get_world_size()

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        part = share(len(users), rank, world)
        scores = _score_share(model, users[part], items[part], device)
        return torch.cat(all_gather_rows(scores)).cpu().numpy()

    return score_fn


def check_sharded_weights(sharded: DistributedModelParallel, config: TrainConfig, *, epoch: int) -> None:
    """:func:`robustrec.training.check_weights` for sharded tables (collective: every rank raises together)."""
    state = sharded.state_dict()
    names = sorted(state)
    largest = torch.zeros(len(names), dtype=torch.float64, device=collective_device())
    with torch.no_grad():
        for i, name in enumerate(names):
            for shard_ in state[name].local_shards():
                if shard_.tensor.numel():
                    value = shard_.tensor.abs().max().double().to(largest.device)
                    largest[i] = torch.maximum(largest[i], torch.nan_to_num(value, nan=math.inf))
    dist.all_reduce(largest, op=dist.ReduceOp.MAX)
    for name, value in zip(names, largest.tolist()):
        if not (math.isfinite(value) and value <= DIVERGED_WEIGHT):
            raise TrainingDiverged(f"training diverged in epoch {epoch}: {name} reached {value:.4g}; lower --lr "
                                   f"(now {config.lr:g}) or raise --l2 (now {config.l2:g})")


def _snapshot(sharded: DistributedModelParallel) -> dict[str, list[torch.Tensor]]:
    """Copies of this rank's table shards (best weights kept in memory when no run directory is given)."""
    return {k: [s.tensor.detach().clone() for s in v.local_shards()] for k, v in sharded.state_dict().items()}


def _restore(sharded: DistributedModelParallel, snapshot: dict[str, list[torch.Tensor]]) -> None:
    state = sharded.state_dict()
    for key, saved in snapshot.items():
        for shard_, tensor in zip(state[key].local_shards(), saved):
            shard_.tensor.copy_(tensor)
    sharded.load_state_dict(state)


def initial_tables(config: TrainConfig, train: sp.csr_matrix) -> dict[str, torch.Tensor]:
    """The tables :func:`robustrec.training.fit` starts from: those of its fused model, which FBGEMM initialises
    anew (uniform in ±1/sqrt(rows), whatever ``init_std`` says; the same draws on every rank)."""
    fused = fuse(new_model(config, *train.shape, train), optimizer=config.optimizer, lr=config.lr,
                 device=torch.device(config.device))
    return {k: v.detach().clone() for k, v in fused.state_dict().items()}


def build_sharded_model(config: TrainConfig, train: sp.csr_matrix, sharding: ShardingConfig) -> DistributedModelParallel:
    """The untrained model of ``config`` with the tables single-process training starts from (identical on every
    rank), LightGCN partitioned, its tables placed by ``sharding`` (collective)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    base = new_model(config, *train.shape, train)
    base.load_state_dict(initial_tables(config, train))
    if isinstance(base, LightGCN):
        base = PartitionedLightGCN(base, train, rank=rank, world=world)
    tables = {id(p) for m in base.modules() if isinstance(m, EmbeddingBagCollection) for p in m.parameters()}
    if any(id(p) not in tables for p in base.parameters()):
        raise ValueError("sharded training supports models whose parameters are all embedding tables")
    rows = math.ceil(config.batch_size / world) * (1 + config.sampled_items)
    if isinstance(base, PartitionedLightGCN):
        rows = max(rows, math.ceil(max(train.shape) / world))  # each step looks up the rank's whole block
    return shard(base, optimizer=config.optimizer, lr=config.lr, device=torch.device(config.device),
                 sharding_type=sharding.sharding or AUTO, rank_memory=sharding.rank_memory_bytes, batch_rows=rows)


def fit_sharded(
    config: TrainConfig,
    train: sp.csr_matrix,
    validation: sp.csr_matrix | None = None,
    *,
    sharding: ShardingConfig | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
    checkpoint_required: bool = True,
    progress: bool = True,
) -> ShardedFit:
    """Train like :func:`robustrec.training.fit` with the tables sharded across the ranks (collective).

    With ``validation`` the model is validated (distributed, :func:`evaluate_sharded`) every ``eval_every``
    epochs, training stops after ``patience`` validations without improvement and the best tables are restored.
    With ``run_dir`` (rank 0 writes, a directory every rank can read) the plan goes to ``sharding_plan.json`` and
    a checkpoint is committed after every epoch; ``resume`` continues from the last one, on any number of ranks
    (as in ``fit``, only ``epochs`` may differ, to extend a run); without a checkpoint ``resume`` is an error
    unless ``checkpoint_required`` is False (a restarted job whose first attempt ended before its first epoch).
    """
    if config.engine == "kernel":  # 'auto' means the autograd engine here: the sharded tables are FBGEMM's
        raise ValueError("--engine kernel trains unsharded tables; sharded training uses --engine autograd (or auto)")
    train = checked_interactions(train, "train")
    sharding = sharding or ShardingConfig(sharding="table_wise")
    device = torch.device(config.device)
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build_sharded_model(config, train, sharding)
    net = model.module
    if run_dir is not None and rank == 0:
        log.info("sharding plan (%d ranks):\n%s", world, model.plan)
        atomic.save_json({"world_size": world, "backend": dist.get_backend(), "sharding": sharding.sharding or AUTO,
                          "rank_memory": sharding.rank_memory_bytes, "tables": describe_plan(model.plan)},
                         Path(run_dir) / PLAN_FILE)
    sampler = build_sampler(config, train)
    rng = np.random.default_rng(config.seed)
    score_fn = sharded_score_fn(net, device)
    history: list[dict] = []
    start_epoch, step, elapsed = 0, 0, 0.0
    stopping, best_snapshot = EarlyStopping(config.patience), None
    if resume and run_dir is not None:
        pointer = checkpoint.read_pointer(run_dir)
        folder = Path(run_dir) / checkpoint.CHECKPOINTS_DIR
        if pointer is None and checkpoint_required:
            raise FileNotFoundError(f"--resume: {folder} holds no checkpoint (the run stopped before its first epoch "
                                    "ended); start over with --overwrite")
        if pointer is not None:
            state = pointer["state"]
            check_resumable(state["config"], config, state["epoch"], folder / pointer["latest"])
            checkpoint.load_checkpoint(run_dir, model)
            rng.bit_generator.state = state["rng"]
            start_epoch, step, elapsed, history = state["epoch"], state["step"], state["train_seconds"], state["history"]
            stopping = EarlyStopping.from_state(state["early_stopping"])
            log.info("resumed from epoch %d (saved by %d ranks, now %d)", start_epoch, state["world_size"], world)

    n_batches = sampler.n_batches(config.batch_size)
    # torchrec divides each table's gradient by the number of ranks (DDP's convention for per-rank mean losses)
    gradient_scale = world if get_gradient_division() else 1
    epoch = start_epoch
    for epoch in range(start_epoch + 1, config.epochs + 1):
        if validation is not None and stopping.should_stop:
            epoch -= 1
            break
        tic, total, n_steps = time.perf_counter(), 0.0, 0
        net.train()
        batches = sampler.epoch(config.batch_size, rng, epoch=epoch, score_fn=score_fn)
        bar = tqdm(batches, total=n_batches, desc=f"epoch {epoch}/{config.epochs}", leave=False,
                   disable=not progress or rank != 0)
        for users, items in bar:
            if len(users) < world:  # a tail too short to give every rank a row (same decision on every rank)
                continue
            mine = share(len(users), rank, world)
            output = model(torch.from_numpy(users[mine]).to(device), torch.from_numpy(items[mine]).to(device))
            loss = objective_loss(output, config, step=step) * ((mine.stop - mine.start) / len(users))
            value = loss.detach().clone()
            dist.all_reduce(value)  # the global batch's loss: every rank stops together when it diverges
            check_loss(value.item(), config, epoch=epoch, step=step)
            (loss * gradient_scale).backward()
            total += value.item()
            step, n_steps = step + 1, n_steps + 1
        elapsed += time.perf_counter() - tic
        check_sharded_weights(model, config, epoch=epoch)
        record = {"epoch": epoch, "loss": total / max(n_steps, 1), "train_seconds": elapsed}
        improved = False
        if validation is not None and config.eval_every and epoch % config.eval_every == 0:
            net.eval()
            metrics = evaluate_sharded(net, train, validation, config.ks)
            record.update({f"valid_{k}": v for k, v in metrics.items()})
            improved = stopping.update(metrics[config.early_stop_metric], epoch)
            if improved and run_dir is None:
                best_snapshot = _snapshot(model)
        history.append(record)
        if progress and rank == 0:
            shown = {k: round(v, 4) for k, v in record.items() if k in ("loss", f"valid_{config.early_stop_metric}")}
            tqdm.write(f"epoch {epoch}: {shown} ({world} ranks)")
        if run_dir is not None:
            checkpoint.save_checkpoint(run_dir, model, epoch, {
                "config": _json(config.to_dict()), "epoch": epoch, "step": step, "train_seconds": elapsed,
                "history": history, "rng": rng.bit_generator.state, "early_stopping": stopping.state(),
                "world_size": world,
            }, best=improved)
    if stopping.best_epoch is not None and stopping.best_epoch != epoch:
        if run_dir is not None:
            checkpoint.load_checkpoint(run_dir, model, which="best", with_optimizer=False)
        elif best_snapshot is not None:
            _restore(model, best_snapshot)
    net.eval()
    return ShardedFit(model=model, history=history, epochs=epoch, train_seconds=elapsed,
                      best_epoch=stopping.best_epoch)


def _json(value):
    """``value`` as it reads back from JSON (tuples become lists), for comparisons with saved state."""
    import json

    return json.loads(json.dumps(value))
