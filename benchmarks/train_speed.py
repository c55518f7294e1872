"""Training and evaluation speed of robustrec's MF-BPR against peers, in one run.

    python benchmarks/train_speed.py --data ../shared/data/gowalla [--epochs 3] [--repeats 3]

Each system runs in its own subprocess (so its peak resident memory is its own) on the
same split: robustrec (torchrec tables + FBGEMM fused row-wise Adagrad), a plain PyTorch
MF-BPR loop (nn.Embedding + Adam, batch 4096: the common baseline), and implicit's BPR
(Cython, multithreaded) when installed (`pip install -r requirements/bench.txt`).
One epoch = one pass over the training interactions. Printed: the median seconds per
epoch over repeats, million samples per second, the full-ranking evaluation time over all
test users, peak RSS, and each peer's ratio to robustrec.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SYSTEMS = ("robustrec", "torch-loop", "implicit")


def _load(path: str, fmt: str):
    from robustrec import data

    return data.load_split(path, format=fmt)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_robustrec(split, args) -> dict:
    import torch

    from robustrec.evaluate import ranking_metrics
    from robustrec.models import PREFERENCE
    from robustrec.config import TrainConfig
    from robustrec.training import fit

    torch.set_num_threads(args.threads)
    times = []
    for repeat in range(args.repeats):
        config = TrainConfig(epochs=args.epochs, dim=args.dim, batch_size=args.batch_size, lr=args.lr,
                             eval_every=0, seed=repeat)
        result = fit(config, split.train.matrix, progress=False)
        times.append(result.train_seconds / args.epochs)
    users, items = result.model.embedding_matrices(PREFERENCE)
    tic = time.perf_counter()
    metrics = ranking_metrics(users, items, split.train.matrix, split.test.matrix, ks=(20,))
    return {"epoch_seconds": times, "eval_seconds": time.perf_counter() - tic, "recall@20": metrics["recall@20"]}


def run_torch_loop(split, args) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from robustrec.evaluate import ranking_metrics
    from robustrec.samplers import UniformNegativeSampler, positive_batches

    torch.set_num_threads(args.threads)
    train = split.train.matrix
    sampler = UniformNegativeSampler(train)
    times = []
    for repeat in range(args.repeats):
        torch.manual_seed(repeat)
        rng = np.random.default_rng(repeat)
        users_t = torch.nn.Embedding(train.shape[0], args.dim)
        items_t = torch.nn.Embedding(train.shape[1], args.dim)
        for table in (users_t, items_t):
            torch.nn.init.normal_(table.weight, std=0.1)
        optimizer = torch.optim.Adam([*users_t.parameters(), *items_t.parameters()], lr=1e-3)
        tic = time.perf_counter()
        for _ in range(args.epochs):
            for u, i in positive_batches(train, 4096, rng):
                j = sampler.sample(u, 1, rng)[:, 0]
                eu, ei, ej = users_t(torch.from_numpy(u)), items_t(torch.from_numpy(i)), items_t(torch.from_numpy(j))
                loss = F.softplus((eu * ej).sum(1) - (eu * ei).sum(1)).mean() + 1e-4 * (
                    eu.pow(2).sum() + ei.pow(2).sum() + ej.pow(2).sum()) / len(u)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        times.append((time.perf_counter() - tic) / args.epochs)
    tic = time.perf_counter()
    metrics = ranking_metrics(users_t.weight.detach(), items_t.weight.detach(), train, split.test.matrix, ks=(20,))
    return {"epoch_seconds": times, "eval_seconds": time.perf_counter() - tic, "recall@20": metrics["recall@20"]}


def run_implicit(split, args) -> dict:
    import numpy as np
    from implicit.bpr import BayesianPersonalizedRanking
    from implicit.evaluation import ranking_metrics_at_k

    train = split.train.matrix.astype(np.float32)
    times = []
    for repeat in range(args.repeats):
        model = BayesianPersonalizedRanking(factors=args.dim, iterations=args.epochs, random_state=repeat,
                                           num_threads=args.threads)
        tic = time.perf_counter()
        model.fit(train, show_progress=False)
        times.append((time.perf_counter() - tic) / args.epochs)
    tic = time.perf_counter()
    metrics = ranking_metrics_at_k(model, train, split.test.matrix.astype(np.float32), K=20, show_progress=False)
    # implicit reports precision@K as hits / min(K, |test|), i.e. recall when |test| >= K; keep its NDCG
    return {"epoch_seconds": times, "eval_seconds": time.perf_counter() - tic, "ndcg@20": metrics["ndcg"]}


RUNNERS = {"robustrec": run_robustrec, "torch-loop": run_torch_loop, "implicit": run_implicit}


def child(args) -> None:
    split = _load(args.data, args.format)
    result = RUNNERS[args.system](split, args)
    result.update(system=args.system, peak_rss_mb=_peak_rss_mb(), n_train=split.train.n_interactions)
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--format", default="auto")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--out", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--system", choices=SYSTEMS, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.system:
        child(args)
        return
    rows = []
    for system in args.systems:
        if system == "implicit":
            try:
                import implicit  # noqa: F401
            except ImportError:
                print("implicit not installed; skipping (pip install -r requirements/bench.txt)")
                continue
        cmd = [sys.executable, __file__, "--system", system, "--data", args.data, "--format", args.format,
               "--epochs", str(args.epochs), "--repeats", str(args.repeats), "--dim", str(args.dim),
               "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            print(f"{system} failed:\n{done.stderr[-2000:]}")
            continue
        rows.append(json.loads(line[len("RESULT "):]))
    base = next((r for r in rows if r["system"] == "robustrec"), None)
    header = "| system | s/epoch (median) | M samples/s | eval s (all test users) | peak RSS MB | epoch time / robustrec's |"
    lines = [header, "|---|---|---|---|---|---|"]
    for r in rows:
        sec = statistics.median(r["epoch_seconds"])
        ratio = f"{sec / statistics.median(base['epoch_seconds']):.2f}" if base else "-"
        lines.append(f"| {r['system']} | {sec:.3f} | {r['n_train'] / sec / 1e6:.2f} | {r['eval_seconds']:.2f} | "
                     f"{r['peak_rss_mb']:.0f} | {ratio} |")
    table = "\n".join(lines)
    print(f"data={args.data} epochs/repeat={args.epochs} repeats={args.repeats} dim={args.dim} threads={args.threads}")
    print(table)
    for r in rows:
        print(r["system"], "epoch seconds per repeat:", [round(t, 3) for t in r["epoch_seconds"]],
              {k: round(v, 4) for k, v in r.items() if "@" in k})
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
