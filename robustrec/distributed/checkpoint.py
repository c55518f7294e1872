"""Sharded checkpoints: every rank writes its table shards and their fused optimizer state with
torch.distributed.checkpoint (DCP); a checkpoint counts only once ``checkpoints/latest.json`` names it.

Layout of RUN_DIR (``--out``, on a filesystem every host sees)::

    checkpoints/epoch-0003/     DCP: one .distcp file per rank + .metadata (tables and optimizer state)
    checkpoints/latest.json     the commit point: {"latest": "epoch-0003", "best": "epoch-0002", "state": {...}}
    model/                      DCP: the final tables (:func:`save_model`; ``robustrec evaluate`` reads them)

A save writes into a temporary directory, which rank 0 renames once every rank has finished, then rewrites
``latest.json`` atomically: a rank killed at any moment leaves the previous checkpoint named and complete, and
the next save or resume removes what it left. DCP reshards on load, so ``--resume`` may use another number of
ranks or another placement (tables and optimizer state are re-cut by their global offsets).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torchrec.distributed import DistributedModelParallel

from robustrec import atomic

log = logging.getLogger(__name__)

CHECKPOINTS_DIR, POINTER_FILE = "checkpoints", "latest.json"
_MODEL, _OPTIM = "model/", "optim/"


def _flat_state(sharded: DistributedModelParallel, *, with_optimizer: bool) -> tuple[dict, dict]:
    """DCP's flat dict of this rank's tensors (model under ``model/``, optimizer state under ``optim/``), and the
    optimizer state in torchrec's nested form sharing the same tensors (for ``load_state_dict``)."""
    flat = {_MODEL + k: v for k, v in sharded.state_dict().items()}
    nested = sharded.fused_optimizer.state_dict() if with_optimizer else {"state": {}}
    for param, states in nested["state"].items():
        for key, value in states.items():
            flat[f"{_OPTIM}{param}/{key}"] = value
    return flat, nested


def _write(state: dict, target: Path) -> None:
    """DCP save of ``state`` into ``target`` (a directory), all or nothing: collective."""
    rank = dist.get_rank()
    token = [uuid.uuid4().hex if rank == 0 else None]
    dist.broadcast_object_list(token, src=0)
    tmp = target.with_name(f".{target.name}.{token[0]}.tmp")
    dcp.save(state, checkpoint_id=str(tmp))
    dist.barrier()  # every rank's shard file is complete
    if rank == 0:
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    dist.barrier()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_pointer(run_dir: Path) -> dict | None:
    """``checkpoints/latest.json`` of ``run_dir``, or None when no checkpoint was completed."""
    path = Path(run_dir) / CHECKPOINTS_DIR / POINTER_FILE
    return json.loads(path.read_text()) if path.exists() else None


def save_checkpoint(run_dir: Path, sharded: DistributedModelParallel, epoch: int, state: dict, *,
                    best: bool) -> None:
    """Save tables + optimizer state as ``checkpoints/epoch-NNNN`` and commit it (collective).

    ``state`` (JSON: epoch counters, history, sampler RNG, early-stopping bookkeeping) goes into the pointer;
    ``best`` marks this epoch as the best so far (kept until a better one replaces it).
    """
    folder = Path(run_dir) / CHECKPOINTS_DIR
    name = f"epoch-{epoch:04d}"
    flat, _ = _flat_state(sharded, with_optimizer=True)
    _write(flat, folder / name)
    if dist.get_rank() == 0:
        previous = read_pointer(run_dir) or {}
        best_name = name if best else previous.get("best")
        atomic.save_json({"latest": name, "best": best_name, "state": state}, folder / POINTER_FILE)
        for entry in folder.iterdir():
            if entry.name not in (name, best_name, POINTER_FILE):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    dist.barrier()


def load_checkpoint(run_dir: Path, sharded: DistributedModelParallel, *, which: str = "latest",
                    with_optimizer: bool = True) -> dict | None:
    """Restore the ``which`` ("latest" or "best") checkpoint into ``sharded`` (collective); returns the pointer's
    ``state``, or None when there is no checkpoint. Works on another number of ranks than the one that saved."""
    pointer = read_pointer(run_dir)
    if pointer is None or pointer.get(which) is None:
        return None
    path = Path(run_dir) / CHECKPOINTS_DIR / pointer[which]
    flat, nested = _flat_state(sharded, with_optimizer=with_optimizer)
    dcp.load(flat, checkpoint_id=str(path))
    sharded.load_state_dict({k[len(_MODEL):]: v for k, v in flat.items() if k.startswith(_MODEL)})
    if with_optimizer:
        sharded.fused_optimizer.load_state_dict(nested)
    return pointer["state"]


def describe(run_dir: Path | None) -> str:
    """Where a failed run can continue from, in words."""
    pointer = read_pointer(run_dir) if run_dir is not None else None
    if pointer is None:
        return "no checkpoint was completed"
    return (f"the last complete checkpoint is {Path(run_dir) / CHECKPOINTS_DIR / pointer['latest']}: "
            f"run the same command with --resume")


def save_model(sharded: DistributedModelParallel, target: Path) -> None:
    """Write the tables (no optimizer state) to the directory ``target`` with DCP, all or nothing (collective)."""
    _write(dict(sharded.state_dict()), Path(target))


def load_unsharded(model: torch.nn.Module, path: Path) -> None:
    """Load tables saved by :func:`save_model` (any number of ranks) into an ordinary ``model``, in one process."""
    state = model.state_dict()
    dcp.load(state, checkpoint_id=str(path), no_dist=True)
    model.load_state_dict(state)
