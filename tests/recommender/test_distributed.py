"""The MF model wraps unchanged in DistributedModelParallel across 2 CPU processes (gloo)."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from robustrec.models import MatrixFactorization
from robustrec.config import TrainConfig
from robustrec.objectives import objective_loss

N_USERS, N_ITEMS, DIM, WORLD = 40, 60, 8, 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(rank: int):
    users = torch.arange(4) + 10 * rank
    items = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]) + 20 * rank
    return users, items


def _worker(rank: int, port: int, out_dir: str) -> None:
    from robustrec.distributed import shard

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    torch.manual_seed(0)
    model = MatrixFactorization(N_USERS, N_ITEMS, DIM)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    reference = MatrixFactorization(N_USERS, N_ITEMS, DIM)
    reference.load_state_dict(initial)
    sharded = shard(model, optimizer="rowwise_adagrad", lr=0.5)
    users, items = _batch(rank)
    before = sharded(users, items).scores["preference"].detach()
    expected = reference(users, items).scores["preference"].detach()
    loss = objective_loss(sharded(users, items), TrainConfig(loss="bpr"))
    loss.backward()
    after = sharded(users, items).scores["preference"].detach()
    plan = str(sharded.plan)
    torch.save({"before": before, "expected": expected, "after": after, "plan": plan}, f"{out_dir}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def _spawn_with_one_retry(out_dir) -> None:
    # Once in ~10 full-suite runs a child died with SIGABRT ("terminate called without an active exception")
    # at its first sharded forward, not reproducible in isolation; a second failure is a real one.
    for attempt in (1, 2):
        try:
            mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True)
            return
        except mp.ProcessExitedException as error:
            if attempt == 2 or error.signal_name is None:
                raise
            print(f"2-process run killed by {error.signal_name}; retrying once")


@pytest.mark.slow
def test_two_process_sharding_matches_unsharded_and_trains(tmp_path):
    _spawn_with_one_retry(tmp_path)
    for rank in range(WORLD):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert "table_wise" in result["plan"]
        torch.testing.assert_close(result["before"], result["expected"])
        assert not torch.allclose(result["after"], result["before"]), "one sharded step did not change the scores"
        # a BPR step raises positives relative to the sampled items
        margin_before = result["before"][:, :1] - result["before"][:, 1:]
        margin_after = result["after"][:, :1] - result["after"][:, 1:]
        assert margin_after.mean() > margin_before.mean()


@pytest.mark.slow
def test_cli_sharded_training_under_torchrun_matches_unsharded_quality(tmp_path):
    """``torchrun --nproc_per_node 2 -m robustrec train --sharded`` trains as well as one process with the
    same total batch (each of the 2 ranks takes half of it per step)."""
    import json
    import os
    import subprocess
    import sys

    common = ["--epochs", "4", "--synthetic-users", "800", "--synthetic-items", "300", "--dim", "16", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt in (1, 2):  # one retry only for a rank killed by a signal (see _spawn_with_one_retry)
        sharded = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
             str(_free_port()), "-m", "robustrec", "-q", "train", "--sharded", "--batch-size", "1024",
             "--out", str(tmp_path / "sharded"), *common[:-1]], capture_output=True, text=True, env=env, timeout=600)
        if sharded.returncode == 0 or "SIGABRT" not in sharded.stderr:
            break
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, "-m", "robustrec", "-q", "train", "--batch-size", "2048", "--out", str(tmp_path / "single"),
         *common[:-1]], capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    got = json.loads((tmp_path / "sharded" / "metrics.json").read_text())
    want = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert got["epochs"] == 4
    assert got["recall@20"] > 0.75 * want["recall@20"], (got["recall@20"], want["recall@20"])
