"""Sharded training on Gowalla: row-wise on 2 and 4 CPU processes (gloo) against one process, PLD sharded, and a
rank killed mid-training under ``torchrun --max-restarts 1``.

    python benchmarks/sharding_gowalla.py --data ../shared/data/gowalla --out runs/sharding-gowalla

Every run is a ``robustrec train`` command (printed before it starts); the table goes to
benchmarks/results/sharding-gowalla.md and the numbers to sharding-gowalla.json. One process per rank, one thread
each (OMP_NUM_THREADS=1); on a machine with fewer cores than ranks the ranks share cores, so seconds per epoch
measure contention as much as sharding.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--lr", "0.05", "--l2", "3e-4", "--eval-every", "0", "--engine", "autograd"]  # the engine sharding uses


def _command(out: Path, data: str, epochs: int, ranks: int, extra: list[str], torchrun: list[str]) -> list[str]:
    train = ["-m", "robustrec", "-q", "train", "--data", data, "--epochs", str(epochs), "--out", str(out),
             *COMMON, *extra]
    if ranks == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
            *torchrun, *train, "--sharding", "row_wise"]


def _worker_pids(agent: int) -> dict[int, int]:
    found = {}
    for child in Path(f"/proc/{agent}/task/{agent}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        rank = [e for e in environ if e.startswith(b"RANK=")]
        if rank:
            found[int(rank[0][5:])] = int(child)
    return found


def run(name: str, out: Path, data: str, *, epochs: int, ranks: int, extra: list[str] = (),
        kill_after_epoch: int | None = None) -> dict:
    torchrun = ["--max-restarts", "1"] if kill_after_epoch else []  # the restarted ranks resume by themselves
    command = _command(out, data, epochs, ranks, extra, torchrun)
    print("$", " ".join(command).replace(sys.executable, "python"), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    tic = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.stdout", "w") as stdout, open(out.parent / f"{out.name}.stderr", "w") as stderr:
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, text=True)
    killed, pointer = None, out / "checkpoints" / "latest.json"
    while True:  # os.wait4: this run's own peak RSS (of its largest process) comes with its exit status
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if kill_after_epoch and killed is None and pointer.exists() and \
                json.loads(pointer.read_text())["latest"] == f"epoch-{kill_after_epoch:04d}":
            time.sleep(2.0)  # into the next epoch
            killed = _worker_pids(process.pid)[ranks - 1]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    wall = time.perf_counter() - tic
    code = os.waitstatus_to_exitcode(status)
    stderr = (out.parent / f"{out.name}.stderr").read_text()
    if code:
        raise SystemExit(f"{name} failed ({code}):\n{stderr[-4000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    row = {**epoch_seconds(out), "name": name, "ranks": ranks, "epochs": metrics["epochs"], "recall@20": metrics["recall@20"],
           "ndcg@20": metrics["ndcg@20"], "seconds_per_epoch": metrics["seconds_per_epoch"], "wall_seconds": wall,
           "killed_pid": killed, "rank_memory": metrics.get("rank_memory"),
           "peak_rss_bytes": usage.ru_maxrss * 1024}
    if killed:
        row["error_lines"] = [line for line in stderr.splitlines() if "robustrec train: error:" in line]
    print(json.dumps({k: v for k, v in row.items() if k != "rank_memory"}), flush=True)
    return row


def epoch_seconds(out: Path) -> dict:
    """First epoch and median later epoch, in seconds, from RUN_DIR/history.csv (cumulative train_seconds)."""
    import numpy as np
    import pandas as pd

    per_epoch = np.diff(np.concatenate([[0.0], pd.read_csv(out / "history.csv")["train_seconds"].to_numpy()]))
    return {"first_epoch_seconds": float(per_epoch[0]),
            "median_later_epoch_seconds": float(np.median(per_epoch[1:])) if per_epoch.size > 1 else None}


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def table(rows: list[dict]) -> str:
    lines = ["| run | ranks | epochs | Recall@20 | NDCG@20 | first epoch (s) | later epochs, median (s) | "
             "peak RSS per rank (MiB) | tables + optimizer state per rank (MiB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        memory = r["rank_memory"]
        rss = " / ".join(_mib(m["peak_rss_bytes"]) for m in memory) if memory else _mib(r["peak_rss_bytes"])
        tables = " / ".join(_mib(m["tables_bytes"] + m["optimizer_state_bytes"]) for m in memory) if memory else "-"
        later = r["median_later_epoch_seconds"]
        lines.append(f"| {r['name']} | {r['ranks']} | {r['epochs']} | {r['recall@20']:.5f} | {r['ndcg@20']:.5f} | "
                     f"{r['first_epoch_seconds']:.1f} | {'-' if later is None else f'{later:.1f}'} | {rss} | {tables} |")
    return "\n".join(lines)


def runs(e: int, e4: int, ep: int) -> list[tuple[str, str, dict]]:
    """(folder under --out, name, options of :func:`run`) of every run, in order."""
    return [
        ("single", f"1 process, {e} epochs", dict(epochs=e, ranks=1)),
        ("rw2", f"row-wise, {e} epochs", dict(epochs=e, ranks=2)),
        ("single-short", f"1 process, {e4} epochs", dict(epochs=e4, ranks=1)),
        ("rw4", f"row-wise, {e4} epochs", dict(epochs=e4, ranks=4)),
        ("pld-single", f"PLD, 1 process, {ep} epochs", dict(epochs=ep, ranks=1, extra=["--sampler", "pld"])),
        ("pld-rw2", f"PLD, row-wise, {ep} epochs", dict(epochs=ep, ranks=2, extra=["--sampler", "pld"])),
        ("killed", f"row-wise, rank 1 killed in epoch {e // 2 + 1}, torchrun restarts, resumes",
         dict(epochs=e, ranks=2, kill_after_epoch=e // 2)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "gowalla"))
    parser.add_argument("--out", type=Path, default=Path("runs/sharding-gowalla"))
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the 1- and 2-process runs")
    parser.add_argument("--epochs-4", type=int, default=5, help="epochs of the 4-process run (and its 1-process peer)")
    parser.add_argument("--pld-epochs", type=int, default=10, help="epochs of the PLD runs (5 of warm-up)")
    parser.add_argument("--report", action="store_true", help="only rewrite the table from --out's run directories")
    args = parser.parse_args()
    results = ROOT / "benchmarks" / "results"
    plan = runs(args.epochs, args.epochs_4, args.pld_epochs)
    if args.report:
        rows = json.loads((results / "sharding-gowalla.json").read_text())
        for row, (folder, _, _) in zip(rows, plan):
            row.update(epoch_seconds(args.out / folder))
    else:
        rows = [run(name, args.out / folder, args.data, **options) for folder, name, options in plan]
    write(rows, results)


def write(rows: list[dict], results: Path) -> None:
    (results / "sharding-gowalla.json").write_text(json.dumps(rows, indent=2) + "\n")
    (results / "sharding-gowalla.md").write_text(
        "# Sharded training on Gowalla (CPU, gloo)\n\n`python benchmarks/sharding_gowalla.py` (commands printed by "
        "the script; MF-BPR, dim 64, global batch 4096, lr 0.05, l2 3e-4; PLD: 5 warm-up epochs). Sharded training "
        "is the single-process optimisation split across ranks, so equal epochs should give equal metrics.\n\n"
        + table(rows) + "\n\nOne thread per process (OMP_NUM_THREADS=1), on a 2-core machine shared with other work: "
        "4 ranks share 2 cores, so seconds per epoch measure contention as much as sharding. Peak RSS is mostly "
        "the libraries every process loads; the table shards are the last column. Timings are single runs.\n"
        + "".join(f"\nThe surviving rank of \"{r['name']}\" ended attempt 0 with:\n\n    {line}\n"
                  for r in rows for line in r.get("error_lines") or []))
    print(table(rows))


if __name__ == "__main__":
    main()
