"""Joining the process group that ``torchrun`` describes in the environment."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

# Imported before any process group exists, on purpose: torch.distributed.optim.zero_redundancy_optimizer binds
# ``dist.group.WORLD`` as a default argument when first imported, and torchrec imports it lazily while sharding.
# Imported after init_process_group it would hold the default group past destroy_process_group; the group's gloo
# threads would then be joined during interpreter shutdown, where releasing their last work's tensors needs the
# GIL and aborts the process ("terminate called without an active exception", SIGABRT).
import torch.distributed.optim  # noqa: F401, E402


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


def gloo_threads_alive() -> int:
    """Threads of gloo process groups still running in this process (Linux; 0 elsewhere): after
    ``destroy_process_group`` a non-zero count means something still holds a group."""
    import pathlib

    count = 0
    for task in pathlib.Path("/proc/self/task").glob("*/comm"):
        try:
            count += task.read_text().startswith(("pt_gloo", "gloo_"))
        except OSError:
            pass
    return count
