"""Sparse optimisation of embedding tables through FBGEMM's fused kernels.

``fuse(model, ...)`` swaps every torchrec ``EmbeddingBagCollection`` of the model for a
``FusedEmbeddingBagCollection``: the optimizer update runs inside the backward pass
and touches only the rows looked up in the batch, never dense gradients over whole
tables. Sharded training gets the same update through ``apply_optimizer_in_backward``
(:mod:`robustrec.distributed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchrec
from torch import nn
from torchrec.modules.fused_embedding_modules import (
    FusedEmbeddingBagCollection,
    fuse_embedding_optimizer,
)

OPTIMIZERS = ("rowwise_adagrad", "adagrad", "sgd", "adam")
# FBGEMM's CPU kernels implement no Adam; it exists on CUDA only.
CPU_OPTIMIZERS = ("rowwise_adagrad", "adagrad", "sgd")


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    classes = {
        "rowwise_adagrad": torchrec.optim.RowWiseAdagrad,
        "adagrad": torch.optim.Adagrad,
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
    }
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
    return classes[name]


def check_optimizer(name: str, device: torch.device) -> None:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
    if device.type == "cpu" and name not in CPU_OPTIMIZERS:
        raise ValueError(
            f"optimizer {name!r} has no fused FBGEMM kernel on CPU; use one of {CPU_OPTIMIZERS}"
        )


def fuse(model: nn.Module, *, optimizer: str, lr: float, device: torch.device) -> nn.Module:
    """Fuse ``optimizer`` (one of ``OPTIMIZERS``) into the model's embedding tables, in place."""
    check_optimizer(optimizer, device)
    return fuse_embedding_optimizer(
        model, optimizer_type=optimizer_class(optimizer), optimizer_kwargs={"lr": lr}, device=device
    )


def fused_collections(model: nn.Module) -> dict[str, FusedEmbeddingBagCollection]:
    return {n: m for n, m in model.named_modules() if isinstance(m, FusedEmbeddingBagCollection)}


def dense_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters not updated by a fused table optimizer (they need an ordinary optimizer)."""
    fused = {id(p) for m in fused_collections(model).values() for p in m.parameters()}
    return [p for p in model.parameters() if p.requires_grad and id(p) not in fused]


def optimizer_state(model: nn.Module) -> dict[str, dict]:
    """State of every fused table optimizer (momentum etc.), for checkpoints."""
    return {n: m.fused_optimizer().state_dict() for n, m in fused_collections(model).items()}


def load_optimizer_state(model: nn.Module, state: dict[str, dict]) -> None:
    for name, module in fused_collections(model).items():
        module.fused_optimizer().load_state_dict(state[name])


@dataclass(frozen=True)
class FusedTable:
    """One table of a fused collection as live tensors (no copies), for code that updates it in place
    the way FBGEMM's fused optimizer does (:mod:`robustrec.engines`).

    weight: (num_rows, D) the table.
    state: (num_rows, M) FBGEMM's optimizer state of the table: M = 1 for rowwise_adagrad (the per-row
        mean squared gradient), D for adagrad, 0 for sgd (none). Checkpoints (``optimizer_state``) save it.
    lr, eps: the fused optimizer's learning rate and epsilon, as FBGEMM holds them.
    """

    weight: torch.Tensor
    state: torch.Tensor
    lr: float
    eps: float


def fused_table(collection: FusedEmbeddingBagCollection, table: str) -> FusedTable:
    """The live weight, optimizer state and settings of ``table`` in an unsharded fused collection."""
    weight = collection.embedding_bags[table].weight.detach()
    optimizer = collection.fused_optimizer()
    param = optimizer.params.get(f"{table}.weight")
    states = list(optimizer.state[param].values()) if param is not None else []
    if len(states) > 1:
        raise ValueError(f"table {table!r}: optimizers with {len(states)} states are not supported here")
    state = states[0].reshape(weight.shape[0], -1) if states else weight.new_empty((weight.shape[0], 0))
    # torchrec passes no eps, so FBGEMM's default applies; it is only reachable on the FBGEMM module.
    eps = collection._emb_modules[0]._emb_module.optimizer_args.eps  # noqa: SLF001
    return FusedTable(weight=weight, state=state, lr=float(optimizer.param_groups[0]["lr"]), eps=float(eps))
