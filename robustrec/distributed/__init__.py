"""Opt-in sharding of the embedding tables across processes and hosts (torchrec, gloo on CPU, NCCL on GPU).

Start one process per rank (``torchrun --nproc_per_node N -m robustrec train --sharding row_wise ...``). The
modules, one job each:

- :mod:`.placement`: where the tables go (``--sharding``, torchrec's planner within ``--rank-memory``) and the
  wrap in ``DistributedModelParallel`` with the optimizer fused into the backward pass;
- :mod:`.fit`: the training loop (every loss and sampler; LightGCN through :mod:`.graph`);
- :mod:`.graph`: LightGCN's propagation partitioned by rows;
- :mod:`.evaluation`: full-ranking metrics where the shards are, with a top-k merge;
- :mod:`.checkpoint`: sharded checkpoints (torch.distributed.checkpoint), resume, the final model;
- :mod:`.faults`: one line when a rank loses its peers; :mod:`.memory`: per-rank memory;
- :mod:`.run`: a run directory; :mod:`.process_group`, :mod:`.collectives`: plumbing.
"""

from robustrec.distributed.placement import SHARDING_CHOICES, SHARDING_TYPES, ShardingConfig, shard
from robustrec.distributed.process_group import init_from_env

__all__ = ["SHARDING_CHOICES", "SHARDING_TYPES", "ShardingConfig", "init_from_env", "shard"]
