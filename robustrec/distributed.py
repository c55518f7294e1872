"""Opt-in sharding: wrap an ordinary robustrec model in torchrec's DistributedModelParallel.

Every embedding table is placed table-wise on one rank (gloo on CPU, NCCL on GPU), and
its optimizer update is fused into the backward pass with ``apply_optimizer_in_backward``
— the same sparse update as unsharded training (:mod:`robustrec.optim`). Start one
process per rank (``torchrun --nproc_per_node N ...``) and call :func:`shard` in each.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from torch import nn
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

from robustrec.optim import check_optimizer, optimizer_class

log = logging.getLogger(__name__)

SHARDING_TYPES = ("table_wise",)


def table_names(model: nn.Module) -> list[str]:
    return [
        cfg.name
        for module in model.modules()
        if isinstance(module, EmbeddingBagCollection)
        for cfg in module.embedding_bag_configs()
    ]


def shard(
    model: nn.Module,
    *,
    optimizer: str,
    lr: float,
    device: torch.device | None = None,
    sharding_type: str = "table_wise",
) -> DistributedModelParallel:
    """Shard ``model``'s tables across the ranks of the default process group.

    The model's current weights are kept. Requires ``torch.distributed`` to be initialised.
    """
    if not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialised; start with torchrun or init_process_group")
    if sharding_type not in SHARDING_TYPES:
        raise ValueError(f"unknown sharding type {sharding_type!r}; expected one of {SHARDING_TYPES}")
    device = device or torch.device("cpu")
    check_optimizer(optimizer, device)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tables = [p for m in model.modules() if isinstance(m, EmbeddingBagCollection) for p in m.parameters()]
    apply_optimizer_in_backward(optimizer_class(optimizer), tables, {"lr": lr})
    constraints = {name: ParameterConstraints(sharding_types=[sharding_type]) for name in table_names(model)}
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=dist.get_world_size(), compute_device=device.type), constraints=constraints
    )
    sharders = [EmbeddingBagCollectionSharder()]
    plan = planner.collective_plan(model, sharders, dist.GroupMember.WORLD)
    sharded = DistributedModelParallel(model, device=device, plan=plan, sharders=sharders)
    sharded.load_state_dict(state)
    return sharded


def gather_tables(sharded: DistributedModelParallel) -> dict[str, torch.Tensor]:
    """Full weights of every table of a sharded model, keyed like the unsharded model's state_dict.

    Collective (each table is read by lookup): call on every rank.
    """
    from robustrec.models.tables import SideTables

    state = {}
    for name, module in sharded.module.named_modules():
        if isinstance(module, SideTables):
            for head, feature in zip(module.heads, module.features):
                with torch.no_grad():
                    state[f"{name}.collection.embedding_bags.{feature}.weight"] = module.weights(head).clone()
    return state


def init_from_env(device: torch.device) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment: (rank, world size)."""
    import os

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError("sharded training needs one process per rank: start it with "
                           "`torchrun --nproc_per_node N -m robustrec train --sharded ...`")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def fit_sharded(config, train, validation=None, *, run_dir=None, resume: bool = False, progress: bool = True):
    """Train like :func:`robustrec.training.fit`, with the model's tables sharded across the ranks.

    Every rank draws its own batches (seeded by (seed, rank)) and takes ``n_batches // world``
    steps per epoch, so an epoch still passes over about all training interactions. No
    validation, early stopping or checkpoints: a fixed number of epochs. Returns, on every
    rank, a FitResult whose model is an ordinary unsharded model holding the gathered tables.
    """
    import itertools
    import math
    import time

    import numpy as np
    import scipy.sparse as sp

    from robustrec.objectives import objective_loss
    from robustrec.samplers import build_sampler
    from robustrec.training import FitResult, new_model

    if resume:
        raise ValueError("sharded training writes no checkpoints; --resume is not supported with --sharded")
    if validation is not None:
        log.warning("sharded training trains a fixed number of epochs; the validation part is not used")
    if config.sampler != "uniform":
        raise NotImplementedError(f"sharded training supports the uniform sampler only, not {config.sampler!r}")
    if config.engine == "kernel":  # 'auto' means the autograd engine here: the sharded tables are FBGEMM's
        raise ValueError("engine 'kernel' trains unsharded tables; sharded training uses engine 'autograd'")
    train = sp.csr_matrix(train)
    device = torch.device(config.device)
    rank, world = dist.get_rank(), dist.get_world_size()
    base = new_model(config, *train.shape, train)  # same seed on every rank: same initial tables
    tables = {id(p) for m in base.modules() if isinstance(m, EmbeddingBagCollection) for p in m.parameters()}
    if any(id(p) not in tables for p in base.parameters()):
        raise NotImplementedError("sharded training supports models whose parameters are all embedding tables")
    model = shard(base, optimizer=config.optimizer, lr=config.lr, device=device)
    sampler = build_sampler(config, train)
    rng = np.random.default_rng([config.seed, rank])
    steps = max(sampler.n_batches(config.batch_size) // world, 1)
    history, step, elapsed = [], 0, 0.0
    for epoch in range(1, config.epochs + 1):
        tic, total = time.perf_counter(), 0.0
        batches = itertools.islice(sampler.epoch(config.batch_size, rng, epoch=epoch), steps)
        for users, items in batches:
            loss = objective_loss(model(torch.from_numpy(users).to(device), torch.from_numpy(items).to(device)),
                                  config, step=step)
            value = loss.detach().clone()
            dist.all_reduce(value)  # every rank must stop together, or the others hang in a collective
            if not math.isfinite(value.item()):
                raise FloatingPointError(f"loss became {value.item()} at epoch {epoch}, step {step}")
            loss.backward()
            total += value.item() / world
            step += 1
        elapsed += time.perf_counter() - tic
        history.append({"epoch": epoch, "loss": total / steps, "train_seconds": elapsed})
        if progress and rank == 0:
            print(f"epoch {epoch}: loss {total / steps:.4f} ({world} ranks)", flush=True)
    plain = new_model(config, *train.shape, train)
    missing = set(plain.state_dict()) - set(gathered := gather_tables(model))
    plain.load_state_dict({**plain.state_dict(), **gathered})
    if any("embedding_bags" in key for key in missing):
        raise AssertionError(f"tables not gathered: {sorted(missing)}")
    plain.eval()
    return FitResult(model=plain, history=history, epochs=config.epochs, train_seconds=elapsed, best_epoch=None)
