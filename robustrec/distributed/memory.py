"""What each rank holds: peak resident memory and the bytes of its table shards and their optimizer state."""

from __future__ import annotations

import resource
import sys

import torch
import torch.distributed as dist
from torchrec.distributed import DistributedModelParallel

from robustrec.distributed.placement import local_table_bytes


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def rank_memory(sharded: DistributedModelParallel) -> list[dict]:
    """Per rank (collective; the same list on every rank): peak RSS, table and optimizer-state bytes, and the
    peak of GPU memory allocated on CUDA."""
    mine = {"rank": dist.get_rank(), "peak_rss_bytes": peak_rss_bytes(), **{
        f"{k}_bytes": v for k, v in local_table_bytes(sharded).items()}}
    if torch.cuda.is_available() and dist.get_backend() == "nccl":
        mine["cuda_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, mine)
    return out
