"""Sparse optimisation of embedding tables through FBGEMM's fused kernels.

``fuse(model, ...)`` swaps every torchrec ``EmbeddingBagCollection`` of the model for a
``FusedEmbeddingBagCollection``: the optimizer update runs inside the backward pass
and touches only the rows looked up in the batch, never dense gradients over whole
tables. Sharded training gets the same update through ``apply_optimizer_in_backward``
(:mod:`robustrec.distributed`).
"""

from __future__ import annotations

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
