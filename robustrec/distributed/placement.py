"""Where the tables go: torchrec's planner with a per-rank memory budget, and the wrap in DistributedModelParallel.

``SHARDING_TYPES`` are the placements a user can force; ``auto`` lets torchrec's planner choose among them
within ``rank_memory`` bytes per rank. torchrec's ``EmbeddingBagCollectionSharder`` offers row-wise placement on
CUDA only; its CPU kernels (FBGEMM's table-batched embedding on CPU) and gloo collectives run it correctly, which
tests/recommender/test_distributed.py checks against the unsharded model, so :class:`TableSharder` offers it on
CPU too. Data-parallel placement is never offered: a replicated table would need its gradients all-reduced
outside the fused in-backward optimizer.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints
from torchrec.distributed.planner.types import KernelConfig, PlannerError, TopologyFactory, TrainerConfig
from torchrec.distributed.types import ShardingPlan
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

from robustrec.optim import check_optimizer, optimizer_class

log = logging.getLogger(__name__)

SHARDING_TYPES = ("table_wise", "row_wise", "column_wise")
AUTO = "auto"
SHARDING_CHOICES = (*SHARDING_TYPES, AUTO)

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """``"2GiB"``, ``"512MB"``, ``"1.5e9"`` -> bytes; a ValueError naming the text otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"rank_memory {text!r} is not a size like 2GiB, 512MB or a number of bytes")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if not value >= 1:
        raise ValueError(f"rank_memory {text!r} must be at least one byte")
    return int(value)


@dataclass
class ShardingConfig:
    """How a sharded run places its tables and talks between ranks (not part of TrainConfig: the same training
    runs on any placement and number of ranks, and ``--resume`` may change them)."""

    sharding: str | None = field(default=None, metadata={
        "help": "shard the tables across the ranks of `torchrun --nproc_per_node N` (gloo on CPU, NCCL on GPU): "
                "table_wise, row_wise, column_wise, or auto (torchrec's planner within --rank-memory)",
        "choices": SHARDING_CHOICES})
    rank_memory: str | None = field(default=None, metadata={
        "help": "memory budget per rank for the tables, their optimizer state and lookup buffers, e.g. 2GiB or "
                "512MB; unset: torchrec's 128 GiB of host memory (CPU) or 32 GiB of GPU memory"})
    collective_timeout: float = field(default=600.0, metadata={
        "help": "seconds a rank waits in a collective before it gives up on its peers"})

    def __post_init__(self) -> None:
        if self.sharding is not None and self.sharding not in SHARDING_CHOICES:
            raise ValueError(f"unknown sharding {self.sharding!r}; expected one of {SHARDING_CHOICES}")
        if self.rank_memory is not None:
            parse_bytes(self.rank_memory)
        if not self.collective_timeout > 0:
            raise ValueError(f"collective_timeout must be > 0 seconds, got {self.collective_timeout}")

    @property
    def rank_memory_bytes(self) -> int | None:
        return None if self.rank_memory is None else parse_bytes(self.rank_memory)


class TableSharder(EmbeddingBagCollectionSharder):
    """torchrec's sharder offering every type of :data:`SHARDING_TYPES` on every device (row-wise included on
    CPU, where torchrec lists it for CUDA only)."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        return list(SHARDING_TYPES)


def table_dims(model: nn.Module) -> dict[str, int]:
    """Table name -> embedding dimension, for every torchrec table of ``model``."""
    return {
        cfg.name: cfg.embedding_dim
        for module in model.modules()
        if isinstance(module, EmbeddingBagCollection)
        for cfg in module.embedding_bag_configs()
    }


def _column_width(dim: int, world: int) -> int:
    """Columns per shard for an explicit column-wise placement: the table cut into up to ``world`` shards whose
    widths are multiples of 4 (FBGEMM's kernels); left to the planner, CPU tables stay one shard wide."""
    return min(dim, 4 * math.ceil(dim / world / 4))


def row_block(num_rows: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [start, stop) of a ``num_rows`` table that ``rank`` holds under row-wise placement: torchrec's split,
    ``ceil(num_rows / world)`` rows per rank, the last ranks fewer (possibly none)."""
    block = math.ceil(num_rows / world)
    return min(rank * block, num_rows), min((rank + 1) * block, num_rows)


def plan_sharding(
    model: nn.Module,
    sharding: str,
    *,
    world_size: int,
    device: torch.device,
    rank_memory: int | None = None,
    batch_rows: int = 512,
    local_world_size: int | None = None,
) -> ShardingPlan:
    """Placement of every table of ``model`` on ``world_size`` ranks (runs locally: no process group needed).

    Args:
        sharding: one of :data:`SHARDING_CHOICES`; ``auto`` lets the planner choose among ``SHARDING_TYPES``.
        rank_memory: bytes each rank may give to tables and their optimizer state (host memory on CPU,
            GPU memory on CUDA); None: torchrec's default.
        batch_rows: ids looked up per table per rank and step (the planner sizes its buffers by it).
        local_world_size: ranks per host (for the planner's bandwidth model).

    Raises ValueError (one line) when no placement fits the budget.
    """
    if sharding not in SHARDING_CHOICES:
        raise ValueError(f"unknown sharding {sharding!r}; expected one of {SHARDING_CHOICES}")
    allowed = list(SHARDING_TYPES) if sharding == AUTO else [sharding]
    memory = {"hbm_cap_bytes" if device.type == "cuda" else "ddr_cap_bytes": rank_memory}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the planner's notes on dry-run storage estimates
        topology = TopologyFactory.create_topology(
            TrainerConfig(world_size=world_size, local_world_size=local_world_size or world_size, **memory),
            kernel_config=KernelConfig(compute_device=device.type),
        )
        planner = EmbeddingShardingPlanner(
            topology=topology, batch_size=max(int(batch_rows), 1),
            constraints={name: ParameterConstraints(sharding_types=allowed, min_partition=(
                _column_width(dim, world_size) if sharding == "column_wise" else None))
                for name, dim in table_dims(model).items()},
        )
        try:
            return planner.plan(model, [TableSharder()])
        except PlannerError as error:
            budget = "torchrec's default" if rank_memory is None else f"{rank_memory:,} bytes"
            first = str(error).strip().splitlines()[0]
            raise ValueError(f"no {sharding} placement of the tables fits {world_size} ranks with {budget} per "
                             f"rank (--rank-memory): {first}") from None


def collective_plan(model: nn.Module, sharding: str, **kwargs) -> ShardingPlan:
    """:func:`plan_sharding` on rank 0, broadcast to every rank; a planning error is raised on every rank."""
    box: list = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = plan_sharding(model, sharding, world_size=dist.get_world_size(), **kwargs)
        except ValueError as error:
            box[0] = error
    dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], ValueError):
        raise box[0]
    return box[0]


def describe_plan(plan: ShardingPlan) -> dict[str, dict]:
    """The plan as JSON: table -> sharding type, compute kernel and its shards (rank, row/column offsets, sizes)."""
    out = {}
    for module_path, module_plan in sorted(plan.plan.items()):
        for table, sharding in sorted(module_plan.items()):
            shards = getattr(sharding.sharding_spec, "shards", None) or []
            out[table] = {
                "module": module_path,
                "sharding_type": sharding.sharding_type,
                "compute_kernel": sharding.compute_kernel,
                "shards": [{"rank": s.placement.rank(), "offsets": list(s.shard_offsets), "sizes": list(s.shard_sizes)}
                           for s in shards],
            }
    return out


def shard(
    model: nn.Module,
    *,
    optimizer: str,
    lr: float,
    device: torch.device | None = None,
    sharding_type: str = "table_wise",
    rank_memory: int | None = None,
    batch_rows: int = 512,
) -> DistributedModelParallel:
    """Shard ``model``'s tables across the ranks of the default process group (collective: call on every rank).

    The model's current weights are kept (every rank must hold the same initial weights). The optimizer is fused
    into the backward pass of each shard (``apply_optimizer_in_backward``), the same sparse update as unsharded
    training (:mod:`robustrec.optim`). The chosen plan is ``result.plan``.
    """
    if not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialised; start with torchrun or init_process_group")
    device = device or torch.device("cpu")
    check_optimizer(optimizer, device)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tables = [p for m in model.modules() if isinstance(m, EmbeddingBagCollection) for p in m.parameters()]
    apply_optimizer_in_backward(optimizer_class(optimizer), tables, {"lr": lr})
    plan = collective_plan(model, sharding_type, device=device, rank_memory=rank_memory, batch_rows=batch_rows,
                           local_world_size=_local_world_size())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sharded = DistributedModelParallel(model, device=device, plan=plan, sharders=[TableSharder()])
    sharded.load_state_dict(state)
    return sharded


def _local_world_size() -> int | None:
    import os

    value = os.environ.get("LOCAL_WORLD_SIZE")
    return int(value) if value else None


def local_table_bytes(sharded: DistributedModelParallel) -> dict[str, int]:
    """Bytes of the table shards this rank holds: ``{"tables": ..., "optimizer_state": ...}``."""
    tables = sum(_local_bytes(v) for v in sharded.state_dict().values())
    state = sharded.fused_optimizer.state_dict()["state"]
    optimizer = sum(_local_bytes(t) for per_param in state.values() for t in per_param.values())
    return {"tables": tables, "optimizer_state": optimizer}


def _local_bytes(value) -> int:
    shards = value.local_shards() if hasattr(value, "local_shards") else None
    if shards is not None:
        return sum(s.tensor.numel() * s.tensor.element_size() for s in shards)
    return value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0
