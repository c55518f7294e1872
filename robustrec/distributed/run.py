"""A sharded training run on disk: every rank prepares the data and trains, rank 0 writes RUN_DIR.

RUN_DIR holds what a single-process run writes (config.json, history.csv, metrics.json last), with the model as
sharded tables (``model/``, torch.distributed.checkpoint; ``robustrec evaluate RUN_DIR`` reads it in one
process), the placement (``sharding_plan.json``) and the per-epoch checkpoints (``checkpoints/``). The directory
is the same transaction as a single-process run's (:class:`robustrec.rundir.RunDirectory`), held by rank 0: its
lock, its resume/overwrite rules and, with ``overwrite``, a staging directory every rank writes into. The
interaction log is replicated on every rank (the samplers and the evaluation masks need it); only the tables are
sharded.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
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
from robustrec.rundir import FINISHED, RunDirectory
from robustrec.runs import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, SHARDED_MODEL_DIR, check_same_data, finished_metrics

log = logging.getLogger(__name__)


@contextlib.contextmanager
def shared_run_directory(run_dir: Path, *, resume: bool, overwrite: bool) -> Iterator[tuple[Path, str, object]]:
    """Rank 0 enters :class:`RunDirectory` and every rank learns the outcome (collective): yields (where to
    write, the directory's state on entry, ``publish()``). An error of rank 0's entry is raised on every rank."""
    run, box = None, [None]
    if dist.get_rank() == 0:
        run = RunDirectory(run_dir, finished=METRICS_FILE, resume=resume, overwrite=overwrite,
                           resumable=f"{checkpoint.CHECKPOINTS_DIR}/{checkpoint.POINTER_FILE}")
        try:
            run.__enter__()
            box[0] = (str(run.path), run.state)
        except ValueError as error:
            box[0] = error
    dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], ValueError):
        raise box[0]
    path, state = Path(box[0][0]), box[0][1]

    def publish() -> None:
        dist.barrier()  # every rank has written its part
        if run is not None:
            run.publish()
        dist.barrier()

    try:
        yield path, state, publish
    except BaseException as error:
        if run is not None:
            run.__exit__(type(error), error, error.__traceback__)
        raise
    if run is not None:
        run.__exit__(None, None, None)


def train_run_sharded(config: TrainConfig, spec: DataSpec, run_dir: Path, *, sharding: ShardingConfig,
                      resume: bool = False, overwrite: bool = False, checkpoint_required: bool = True,
                      progress: bool = True) -> dict:
    """Train sharded, evaluate on the clean test part without gathering, write RUN_DIR (collective).

    ``resume``/``overwrite`` as :func:`robustrec.runs.train_run`; ``checkpoint_required=False`` lets ``resume``
    start anew when no epoch had finished (what a job restarted by torchrun needs). Returns metrics.json's content
    on every rank: the ranking metrics, timings, ``ranks`` and ``rank_memory`` (per rank: peak RSS, bytes of its
    table shards and of their optimizer state).
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    if rank == 0:
        config.warn_schedule()
    with shared_run_directory(Path(run_dir), resume=resume, overwrite=overwrite) as (out, state, publish):
        prepared = prepare_data(spec)
        split = prepared.split
        if split.test.n_interactions == 0:
            raise ValueError(f"{prepared.source}: the test part is empty; nothing to evaluate (raise "
                             "--test-fraction, or give data with test interactions)")
        resolved = json.loads(json.dumps({"train": config.to_dict(), "data": asdict(spec)}))
        if resume:
            check_same_data(out / CONFIG_FILE, resolved["data"])
        dist.barrier()  # every rank has read config.json before rank 0 rewrites it
        if rank == 0:
            log.info("data: %r", split)
            if state != FINISHED:  # an extended finished run keeps its config.json until it is republished
                atomic.save_json(resolved, out / CONFIG_FILE)
            if prepared.noise_mask is not None:
                log.info("noise diagnostics need the whole tables in one process: run a single-process "
                         "`robustrec train` for them")
        validation = split.validation.matrix if split.validation is not None else None
        result = fit_sharded(config, split.train.matrix, validation, sharding=sharding, run_dir=out, resume=resume,
                             checkpoint_required=checkpoint_required, progress=progress)
        metrics = finished_metrics(evaluate_sharded(result.model.module, split.train.matrix, split.test.matrix,
                                                    config.ks), result, split)
        checkpoint.save_model(result.model, out / SHARDED_MODEL_DIR)
        metrics.update(ranks=world, rank_memory=rank_memory(result.model))
        if rank == 0:
            atomic.save_text(pd.DataFrame(result.history).to_csv(index=False), out / HISTORY_FILE)
            atomic.save_json(resolved, out / CONFIG_FILE)
            atomic.save_json(metrics, out / METRICS_FILE)  # last: the run is finished
        publish()
    return metrics
