"""A sharded training run on disk: every rank prepares the data and trains, rank 0 writes RUN_DIR.

RUN_DIR holds what a single-process run writes (config.json, metrics.json, history.csv), with the model as
sharded tables (``model/``, torch.distributed.checkpoint; ``robustrec evaluate RUN_DIR`` reads it in one
process), the placement (``sharding_plan.json``) and the per-epoch checkpoints (``checkpoints/``). The interaction
log is replicated on every rank (the samplers and the evaluation masks need it); only the tables are sharded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch.distributed as dist

from robustrec import atomic
from robustrec.config import TrainConfig
from robustrec.data import DataSpec, prepare_data
from robustrec.distributed import checkpoint
from robustrec.distributed.evaluation import evaluate_sharded
from robustrec.distributed.fit import fit_sharded
from robustrec.distributed.memory import rank_memory
from robustrec.distributed.placement import ShardingConfig
from robustrec.runs import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, SHARDED_MODEL_DIR

log = logging.getLogger(__name__)


def train_run_sharded(config: TrainConfig, spec: DataSpec, run_dir: Path, *, sharding: ShardingConfig,
                      resume: bool = False, progress: bool = True) -> dict:
    """Train sharded, evaluate on the clean test part without gathering, write RUN_DIR (collective).

    Returns metrics.json's content on every rank: the ranking metrics, timings, ``ranks`` and ``rank_memory``
    (per rank: peak RSS, bytes of its table shards and of their optimizer state).
    """
    run_dir = Path(run_dir)
    rank, world = dist.get_rank(), dist.get_world_size()
    prepared = prepare_data(spec)
    split = prepared.split
    resolved = json.loads(json.dumps({"train": config.to_dict(), "data": asdict(spec)}))
    config_path = run_dir / CONFIG_FILE
    if resume and config_path.exists() and json.loads(config_path.read_text()) != resolved:
        raise ValueError(f"{config_path} differs from the requested configuration; refusing to resume")
    dist.barrier()  # every rank has read config.json before rank 0 rewrites it
    if rank == 0:
        log.info("data: %r", split)
        atomic.save_json(resolved, config_path)
        if prepared.noise_mask is not None:
            log.info("noise diagnostics need the whole tables in one process: run `robustrec evaluate %s` "
                     "or a single-process run for them", run_dir)
    validation = split.validation.matrix if split.validation is not None else None
    result = fit_sharded(config, split.train.matrix, validation, sharding=sharding, run_dir=run_dir, resume=resume,
                         progress=progress)
    checkpoint.save_model(result.model, run_dir / SHARDED_MODEL_DIR)
    metrics = evaluate_sharded(result.model.module, split.train.matrix, split.test.matrix, config.ks)
    metrics.update(
        train_seconds=result.train_seconds,
        epochs=result.epochs,
        seconds_per_epoch=result.train_seconds / max(result.epochs, 1),
        best_epoch=result.best_epoch,
        n_users=split.n_users,
        n_items=split.n_items,
        n_train=split.train.n_interactions,
        n_test=split.test.n_interactions,
        ranks=world,
        rank_memory=rank_memory(result.model),
    )
    if rank == 0:
        atomic.save_json(metrics, run_dir / METRICS_FILE)
        atomic.save_text(pd.DataFrame(result.history).to_csv(index=False), run_dir / HISTORY_FILE)
    dist.barrier()
    return metrics
