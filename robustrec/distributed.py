"""Opt-in sharding: wrap an ordinary robustrec model in torchrec's DistributedModelParallel.

Every embedding table is placed table-wise on one rank (gloo on CPU, NCCL on GPU), and
its optimizer update is fused into the backward pass with ``apply_optimizer_in_backward``
— the same sparse update as unsharded training (:mod:`robustrec.optim`). Start one
process per rank (``torchrun --nproc_per_node N ...``) and call :func:`shard` in each.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

from robustrec.optim import check_optimizer, optimizer_class

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
