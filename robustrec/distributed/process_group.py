"""Joining the process group that ``torchrun`` describes in the environment."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def init_from_env(device: torch.device, *, timeout_s: float = 600.0) -> tuple[int, int]:
    """Join the default process group (NCCL on CUDA, each rank on GPU ``LOCAL_RANK``; gloo on CPU):
    (rank, world size). ``timeout_s`` bounds how long a collective waits for a silent peer."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ValueError("sharded training needs one process per rank: start it with "
                         "`torchrun --nproc_per_node N -m robustrec train --sharding row_wise ...`")
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        timeout = timedelta(seconds=timeout_s)
        store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
        # Keys of this attempt only: after `torchrun --max-restarts` restarts the workers, the store can still hold
        # the dead workers' gloo addresses, and a new worker that reads one fails to connect.
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout, rank=rank,
                                world_size=world, store=dist.PrefixStore(f"robustrec/attempt-{attempt}/", store))
    return dist.get_rank(), dist.get_world_size()

