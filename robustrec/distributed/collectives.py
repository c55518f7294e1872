"""The few collectives the sharded path needs beyond torchrec's own, over the default process group.

Every function is collective: each rank must call it, in the same order, with tensors of the same dtype.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class _GatherBlocks(torch.autograd.Function):
    """Forward: concatenate equal-sized row blocks of every rank. Backward: the gradient of the SUM of every
    rank's loss with respect to this rank's block (each rank's gradient of the whole, all-reduced, sliced)."""

    @staticmethod
    def forward(ctx, block: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), block.shape[0]
        out = torch.empty((dist.get_world_size() * block.shape[0], *block.shape[1:]),
                          dtype=block.dtype, device=block.device)
        dist.all_gather_into_tensor(out, block.contiguous())
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_blocks(block: torch.Tensor) -> torch.Tensor:
    """(rows, ...) on every rank, the same ``rows`` everywhere -> (world * rows, ...), rank-major; differentiable
    (the backward sums the ranks' gradients)."""
    return _GatherBlocks.apply(block)


def all_gather_rows(rows: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``rows`` (n_r, ...), n_r may differ between ranks, as a list indexed by rank. No gradient."""
    world = dist.get_world_size()
    counts = torch.zeros(world, dtype=torch.int64, device=rows.device)
    dist.all_gather_into_tensor(counts, torch.tensor([rows.shape[0]], dtype=torch.int64, device=rows.device))
    counts = counts.cpu()
    width = int(counts.max())
    padded = torch.zeros((width, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    padded[: rows.shape[0]] = rows
    out = torch.empty((world * width, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    dist.all_gather_into_tensor(out, padded)
    return [out[r * width : r * width + int(counts[r])] for r in range(world)]


def exchange(blocks: torch.Tensor) -> torch.Tensor:
    """All-to-all of (world, n, ...) blocks: block r goes to rank r; returns (world, n, ...) where block s came
    from rank s. No gradient."""
    out = torch.empty_like(blocks)
    dist.all_to_all_single(out, blocks.contiguous())
    return out


def collective_device() -> torch.device:
    """Where small bookkeeping tensors must live for the default group's backend (NCCL: the current GPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def max_over_ranks(value: int) -> int:
    t = torch.tensor([value], dtype=torch.int64, device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())
