"""Training and evaluation speed of robustrec against peers, measured in one run.

    python benchmarks/train_speed.py --out benchmarks/results/train_speed.md            # Gowalla + ML-1M-sized
    python benchmarks/train_speed.py --data ../shared/data/gowalla --epochs 6 --repeats 3 --threads 2
    python benchmarks/train_speed.py --device cuda ...                                  # a GPU machine

Data: ``--data`` takes paths (``robustrec.data.load_split``) and/or ``synthetic-ml1m`` (a generated split the size
of MovieLens-1M: 6,022 users x 3,043 items, about 800k training interactions). Default: ../shared/data/gowalla when
present, and synthetic-ml1m. One epoch = one pass over the training interactions, dimension 64.

Printed per data set, every number the median over ``--repeats`` repeats, each system in its own subprocess
(peak RSS is its own):

1. systems: robustrec (engine ``auto``: the fused CPU kernel on CPU, torchrec/FBGEMM on CUDA), robustrec-batch1
   (CPU only: one-row mini-batches, per-sample SGD as implicit trains, ``--batch1-lr``/``--batch1-l2``), robustrec
   with the ``autograd`` engine (torchrec + FBGEMM fused row-wise Adagrad per batch), a plain PyTorch MF-BPR loop
   (nn.Embedding + Adam, batch 4096) and implicit 0.7.3's BPR (``pip install -r requirements/bench.txt``):
   first epoch (robustrec: loading or compiling the kernel included) and steady-state seconds per epoch (median
   of epochs 2..E), million samples per second, full-ranking evaluation of all test users, peak RSS, and the
   epoch-time ratio to implicit. implicit's steady state is (T(E epochs) - T(1 epoch)) / (E - 1): its fixed
   set-up per fit is not charged to its epochs. robustrec's cold compile (empty compiled-code cache) is timed
   once, separately.
2. objectives x samplers: robustrec's steady-state epoch time of every loss with each sampler (PLD without
   warm-up, so every timed epoch resamples; one sampled item per observed one for every loss, NBPO included, whose
   default is 4), as a ratio to BPR with uniform sampling, interleaved repeats; at ``--batch-size`` and (CPU) at
   batch size 1.
3. epoch profile: seconds spent drawing rows (negatives; PLD's candidate scoring) vs the rest, for the autograd
   engine (before) and the kernel (after), one thread.
4. LightGCN: robustrec's LightGCN (autograd engine) beside a plain PyTorch LightGCN with sparse propagation,
   per training step (each propagates the whole graph) times steps per epoch.
5. evaluation: seconds for all test users, the bytes it must move, and their ratio to the measured memory
   bandwidth and the measured matrix-product rate (bfloat16 products where the CPU multiplies them in hardware,
   as the evaluation then does; float32 otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYSTEMS = ("robustrec", "robustrec-batch1", "robustrec-autograd", "torch-loop", "implicit")
SYNTHETIC = "synthetic-ml1m"
DIM = 64


# ---- shared helpers (children) ---------------------------------------------------------------------------------

def load(data: str):
    from robustrec import data as rdata

    if data == SYNTHETIC:
        return rdata.generate(n_users=6022, n_items=3043, mean_activity=164, seed=0)
    return rdata.load_split(data)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bf16_note() -> str:
    from robustrec.evaluate import cpu_has_bf16_products

    return "bfloat16 products in hardware" if cpu_has_bf16_products() else "no bfloat16 products: float32 evaluation"


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median(values) -> float:
    return float(statistics.median(values))


def epoch_times(history) -> list[float]:
    cumulative = [0.0] + [h["train_seconds"] for h in history]
    return [b - a for a, b in zip(cumulative, cumulative[1:])]


def timed_eval(user_factors, item_factors, split, repeats: int) -> tuple[float, float]:
    """(median seconds, recall@20) of robustrec's full-ranking evaluation of every test user."""
    from robustrec.evaluate import ranking_metrics

    times, metrics = [], None
    for _ in range(repeats):
        tic = time.perf_counter()
        metrics = ranking_metrics(user_factors, item_factors, split.train.matrix, split.test.matrix, ks=(20,))
        times.append(time.perf_counter() - tic)
    return median(times), metrics["recall@20"]


def train_config(args, **overrides):
    from robustrec.config import TrainConfig

    settings = dict(epochs=args.epochs, dim=DIM, batch_size=args.batch_size, lr=args.lr, l2=args.l2, eval_every=0,
                    device=args.device)
    return TrainConfig(**{**settings, **overrides})


def one_row(args) -> dict:
    """The settings of one-row mini-batches (per-sample SGD, as implicit trains): batch size 1, its own lr and L2."""
    return dict(batch_size=1, lr=args.batch1_lr, l2=args.batch1_l2)


# ---- table 1: one system per child -----------------------------------------------------------------------------

def run_robustrec(split, args, engine: str, **overrides) -> dict:
    from robustrec.models import PREFERENCE
    from robustrec.training import fit

    first, steady = [], []
    for repeat in range(args.repeats):
        result = fit(train_config(args, engine=engine, seed=repeat, **overrides), split.train.matrix, progress=False)
        times = epoch_times(result.history)
        first.append(times[0])
        steady.append(median(times[1:]))
    users, items = result.model.embedding_matrices(PREFERENCE)
    eval_seconds, recall = timed_eval(users, items, split, args.repeats)
    return {"first_epoch": median(first), "epoch_seconds": steady, "eval_seconds": eval_seconds, "recall@20": recall}


def run_torch_loop(split, args) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from robustrec.samplers import UniformNegativeSampler, positive_batches

    device = torch.device(args.device)
    train = split.train.matrix
    sampler = UniformNegativeSampler(train)
    first, steady = [], []
    for repeat in range(args.repeats):
        torch.manual_seed(repeat)
        rng = np.random.default_rng(repeat)
        users_t = torch.nn.Embedding(train.shape[0], DIM, device=device)
        items_t = torch.nn.Embedding(train.shape[1], DIM, device=device)
        for table in (users_t, items_t):
            torch.nn.init.normal_(table.weight, std=0.1)
        optimizer = torch.optim.Adam([*users_t.parameters(), *items_t.parameters()], lr=1e-3)
        times = []
        for _ in range(args.epochs):
            tic = time.perf_counter()
            for u, i in positive_batches(train, 4096, rng):
                j = sampler.sample(u, 1, rng)[:, 0]
                eu, ei, ej = (table(torch.from_numpy(x).to(device)) for table, x in ((users_t, u), (items_t, i), (items_t, j)))
                loss = F.softplus((eu * ej).sum(1) - (eu * ei).sum(1)).mean() + 1e-4 * (
                    eu.pow(2).sum() + ei.pow(2).sum() + ej.pow(2).sum()) / len(u)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - tic)
        first.append(times[0])
        steady.append(median(times[1:]))
    eval_seconds, recall = timed_eval(users_t.weight.detach(), items_t.weight.detach(), split, args.repeats)
    return {"first_epoch": median(first), "epoch_seconds": steady, "eval_seconds": eval_seconds, "recall@20": recall}


def run_implicit(split, args) -> dict:
    import numpy as np
    from implicit.bpr import BayesianPersonalizedRanking
    from implicit.evaluation import ranking_metrics_at_k

    import implicit.gpu

    use_gpu = args.device.startswith("cuda") and implicit.gpu.HAS_CUDA  # else its CPU BPR, as on a CPU machine
    train = split.train.matrix.astype(np.float32)

    def fit_seconds(iterations: int, seed: int) -> tuple[float, object]:
        model = BayesianPersonalizedRanking(factors=DIM, iterations=iterations, random_state=seed,
                                            num_threads=args.threads, use_gpu=use_gpu)
        tic = time.perf_counter()
        model.fit(train, show_progress=False)
        return time.perf_counter() - tic, model

    first, steady = [], []
    for repeat in range(args.repeats):
        one, _ = fit_seconds(1, repeat)
        many, model = fit_seconds(args.epochs, repeat)
        first.append(one)
        steady.append((many - one) / (args.epochs - 1))
    times = []
    for _ in range(args.repeats):
        tic = time.perf_counter()
        metrics = ranking_metrics_at_k(model, train, split.test.matrix.astype(np.float32), K=20, show_progress=False)
        times.append(time.perf_counter() - tic)
    # implicit's precision@K is hits / min(K, |test|); its NDCG is comparable
    return {"first_epoch": median(first), "epoch_seconds": steady, "eval_seconds": median(times),
            "ndcg@20": metrics["ndcg"]}


def run_cold_compile(split, args) -> dict:
    """A one-epoch fit with an empty compiled-code cache: the kernel compiles (in a child process, before the
    epoch: see robustrec.jit.fill_cache_in_child), so the whole fit is timed, and its epoch apart."""
    from robustrec.jit import CACHE_ENV
    from robustrec.training import fit

    assert os.environ.get(CACHE_ENV), "the parent sets an empty cache directory"
    config = train_config(args, epochs=1)
    start = time.perf_counter()
    epoch = fit(config, split.train.matrix, progress=False).train_seconds
    return {"cold_fit": time.perf_counter() - start, "cold_first_epoch": epoch}


# ---- table 2: objectives x samplers ----------------------------------------------------------------------------

def run_objectives(split, args) -> dict:
    from robustrec.objectives import LOSSES
    from robustrec.samplers import SAMPLERS
    from robustrec.training import fit

    batchings = {"batch": {}, "batch 1": one_row(args)} if args.device == "cpu" else {"batch": {}}
    names = [(loss, sampler, batching) for batching in batchings for sampler in SAMPLERS for loss in LOSSES
             if not (loss == "tce" and batching == "batch 1")]  # (T-CE drops nothing of a one-row batch: refused)
    steady = {batching: {} for batching in batchings}
    for loss, sampler, batching in names:
        steady[batching][f"{loss}/{sampler}"] = []
    for repeat in range(args.repeats):  # interleaved: every configuration sees the same machine load
        for loss, sampler, batching in names:
            # one sampled item per observed one for every loss (NBPO's default is 4): the objective's own cost
            config = train_config(args, loss=loss, sampler=sampler, pld_warmup_epochs=0, seed=repeat, n_negatives=1,
                                  **batchings[batching])
            steady[batching][f"{loss}/{sampler}"].append(median(epoch_times(fit(config, split.train.matrix,
                                                                                progress=False).history)[1:]))
    return {"steady": steady}


# ---- table 3: where an epoch goes --------------------------------------------------------------------------------

def run_profile(split, args) -> dict:
    import numpy as np
    import torch

    from robustrec.engines import KernelEngine
    from robustrec.optim import fuse
    from robustrec.samplers import build_sampler
    from robustrec.training import fit, new_model

    train = split.train.matrix
    torch.set_num_threads(1)
    out = {}
    device = torch.device(args.device)
    variants = {"autograd": {"engine": "autograd"}}
    if device.type == "cpu":
        variants.update({"kernel": {"engine": "kernel"}, "kernel, batch 1": {"engine": "kernel", **one_row(args)}})
    for sampler_name in ("uniform", "pld"):
        settings = dict(sampler=sampler_name, pld_warmup_epochs=0, deterministic=True)
        for name, variant in variants.items():
            totals, sampling = [], []
            for repeat in range(args.repeats):
                config = train_config(args, epochs=2, seed=repeat, **settings, **variant)
                totals.append(epoch_times(fit(config, train, progress=False).history)[1])
                model = fuse(new_model(config, *train.shape), optimizer=config.optimizer, lr=config.lr, device=device)
                rng = np.random.default_rng(repeat)
                tic = time.perf_counter()
                if variant["engine"] == "kernel":
                    KernelEngine(model, config, train).sample_epoch(2, rng)
                else:
                    sampler = build_sampler(config, train)

                    def score_fn(users, items):
                        return model.score(torch.from_numpy(users).to(device), torch.from_numpy(items).to(device)).cpu().numpy()

                    for _ in sampler.epoch(config.batch_size, rng, epoch=2, score_fn=score_fn):
                        pass
                sampling.append(time.perf_counter() - tic)
            out[f"{name}/{sampler_name}"] = {"epoch": median(totals), "sampling": median(sampling)}
    return {"split": out}


# ---- table 4: LightGCN -------------------------------------------------------------------------------------------

def run_lightgcn(split, args) -> dict:
    """Seconds per training step (a step propagates the whole graph): median of ``--lightgcn-steps`` steps after
    two warm-up steps, for robustrec's LightGCN (autograd engine) and a plain PyTorch LightGCN."""
    import math

    import numpy as np
    import torch
    import torch.nn.functional as F

    from robustrec.models.lightgcn import _to_torch_sparse, normalized_adjacency
    from robustrec.objectives import objective_loss
    from robustrec.optim import fuse
    from robustrec.samplers import UniformSampler
    from robustrec.training import new_model

    train = split.train.matrix
    device = torch.device(args.device)
    n_users = train.shape[0]
    adjacency = _to_torch_sparse(normalized_adjacency(train), device)
    sampler = UniformSampler(train)
    steps = args.lightgcn_steps + 2

    def timed(step_fn, batches) -> float:
        times = []
        for users, items in batches:
            tic = time.perf_counter()
            step_fn(users, items)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - tic)
        return median(times[2:])

    ours, plain = [], []
    for repeat in range(args.repeats):
        config = train_config(args, model="lightgcn", seed=repeat)
        model = fuse(new_model(config, *train.shape, train), optimizer=config.optimizer, lr=config.lr, device=device)
        rng = np.random.default_rng(repeat)
        batches = [b for _, b in zip(range(steps), sampler.epoch(config.batch_size, rng))]

        def robustrec_step(users, items):
            output = model(torch.from_numpy(users).to(device), torch.from_numpy(items).to(device))
            objective_loss(output, config).backward()

        ours.append(timed(robustrec_step, batches))
        torch.manual_seed(repeat)
        ego = torch.nn.Parameter(torch.randn(n_users + train.shape[1], DIM, device=device) * 0.1)
        optimizer = torch.optim.Adam([ego], lr=1e-3)

        def plain_step(users, items):
            layer, total = ego, ego
            for _ in range(config.n_layers):
                layer = adjacency @ layer
                total = total + layer
            final = total / (config.n_layers + 1)
            u_t, i_t = torch.from_numpy(users).to(device), torch.from_numpy(items + n_users).to(device)
            eu, ei, ej = final[u_t], final[i_t[:, 0]], final[i_t[:, 1]]
            loss = F.softplus((eu * ej).sum(1) - (eu * ei).sum(1)).mean() + args.l2 * (
                ego[u_t].pow(2).sum() + ego[i_t].pow(2).sum()) / len(users)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        plain.append(timed(plain_step, batches))
    return {"robustrec": ours, "plain": plain, "steps_per_epoch": math.ceil(train.nnz / args.batch_size)}


# ---- table 5: evaluation against the machine's limits -------------------------------------------------------------

def run_evaluation(split, args) -> dict:
    import numpy as np
    import torch

    train, test = split.train.matrix, split.test.matrix
    n_users, n_items = train.shape
    rng = np.random.default_rng(0)
    users = torch.from_numpy((rng.standard_normal((n_users, DIM)) * 0.1).astype(np.float32)).to(args.device)
    items = torch.from_numpy((rng.standard_normal((n_items, DIM)) * 0.1).astype(np.float32)).to(args.device)
    seconds, _ = timed_eval(users, items, split, args.repeats)
    evaluated = int((np.diff(test.indptr) > 0).sum())
    device = torch.device(args.device)

    def median_of_three(fn) -> float:
        times = []
        for _ in range(3):
            tic = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - tic)
        return median(times)

    bf16 = False
    if device.type == "cpu":  # the evaluation's own tools: numpy's copy, the bfloat16 or numpy float32 product
        from robustrec.evaluate import cpu_has_bf16_products

        bf16 = cpu_has_bf16_products()
        buffer = np.ones(64 << 20, np.float32)  # 256 MB, touched: copy bandwidth, read + write
        target = np.empty_like(buffer)
        bandwidth = 2 * buffer.nbytes / median_of_three(lambda: np.copyto(target, buffer))
        u_block = rng.standard_normal((256, DIM)).astype(np.float32)
        if bf16:
            u_bf16 = torch.from_numpy(u_block).bfloat16()
            items_bf16_t = items.cpu().bfloat16().T.contiguous()
            out_bf16 = torch.empty((256, n_items), dtype=torch.bfloat16)
            product = lambda: torch.matmul(u_bf16, items_bf16_t, out=out_bf16)  # noqa: E731
        else:
            items_t = np.ascontiguousarray(items.cpu().numpy().T)
            out = np.empty((256, n_items), np.float32)
            product = lambda: np.matmul(u_block, items_t, out=out)  # noqa: E731
        gemm_rate = 2 * 256 * DIM * n_items / median_of_three(product)
    else:  # the device's memory and matrix products
        buffer = torch.ones(64 << 20, device=device)
        target = torch.empty_like(buffer)
        bandwidth = 2 * buffer.numel() * 4 / median_of_three(lambda: target.copy_(buffer))
        u_block = torch.randn(1024, DIM, device=device)
        gemm_rate = 2 * 1024 * DIM * n_items / median_of_three(lambda: u_block @ items.T)
    inputs = 4 * DIM * (n_users + n_items) + 12 * (train.nnz + test.nnz) + 8 * (n_users + 1) * 2
    scores = (2 if bf16 else 4) * evaluated * n_items  # written by the product, read by the top-k pass
    return {"seconds": seconds, "evaluated_users": evaluated, "input_bytes": inputs, "score_bytes": 2 * scores,
            "bandwidth": bandwidth, "flops": 2.0 * evaluated * n_items * DIM, "gemm_rate": gemm_rate,
            "products": "bfloat16, candidates rescored exactly" if bf16 else "float32"}


RUNNERS = {
    "robustrec": lambda split, args: run_robustrec(split, args, "auto"),
    "robustrec-batch1": lambda split, args: run_robustrec(split, args, "auto", **one_row(args)),
    "robustrec-autograd": lambda split, args: run_robustrec(split, args, "autograd"),
    "torch-loop": run_torch_loop,
    "implicit": run_implicit,
    "cold-compile": run_cold_compile,
    "objectives": run_objectives,
    "profile": run_profile,
    "lightgcn": run_lightgcn,
    "evaluation": run_evaluation,
}


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    split = load(args.data[0])
    result = RUNNERS[args.child](split, args)
    result.update(peak_rss_mb=peak_rss_mb(), n_train=split.train.n_interactions, shape=list(split.train.matrix.shape))
    print("RESULT " + json.dumps(result))


# ---- parent: run the children, print the tables ------------------------------------------------------------------

def merge_rounds(merged: dict | None, result: dict) -> dict:
    """One system's results over rounds: lists of per-round values (peak RSS: the largest)."""
    if merged is None:
        return {k: (v if isinstance(v, list) or k in ("n_train", "shape") else [v]) for k, v in result.items()}
    for key, value in result.items():
        if key == "peak_rss_mb":
            merged[key] = [max(merged[key][0], value)]
        elif key not in ("n_train", "shape"):
            merged[key] += value if isinstance(value, list) else [value]
    return merged


def run_child(name: str, data: str, args, env=None, repeats: int | None = None) -> dict | None:
    cmd = [sys.executable, __file__, "--child", name, "--data", data, "--epochs", str(args.epochs),
           "--repeats", str(repeats or args.repeats), "--threads", str(args.threads), "--batch-size", str(args.batch_size),
           "--lr", str(args.lr), "--l2", str(args.l2), "--batch1-lr", str(args.batch1_lr),
           "--batch1-l2", str(args.batch1_l2), "--device", args.device,
           "--lightgcn-steps", str(args.lightgcn_steps)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        print(f"{name} on {data} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(line[len("RESULT "):])


def systems_table(rows: dict, cold: dict | None) -> list[str]:
    base = rows.get("implicit")
    lines = ["| system | first epoch s | s/epoch (steady) | M samples/s | eval s (all test users) | peak RSS MB | "
             "epoch time / implicit's |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        sec = median(r["epoch_seconds"])
        ratio = f"{sec / median(base['epoch_seconds']):.2f}" if base else "-"
        lines.append(f"| {name} | {median(r['first_epoch']):.3f} | {sec:.3f} | {r['n_train'] / sec / 1e6:.2f} | "
                     f"{median(r['eval_seconds']):.3f} | {r['peak_rss_mb'][0]:.0f} | {ratio} |")
    if cold:
        lines.append(f"\nrobustrec's one-epoch fit with an empty compiled-code cache (the kernel compiles first): "
                     f"{cold['cold_fit']:.1f} s, of which the epoch {cold['cold_first_epoch']:.2f} s (once per machine "
                     "and source version; later runs load the cached build).")
    return lines


def objectives_table(result: dict, args) -> list[str]:
    columns = list(result["steady"])
    steady = {batching: {k: median(v) for k, v in runs.items()} for batching, runs in result["steady"].items()}
    names = {"batch": f"batch {args.batch_size}", "batch 1": "batch 1 (per sample)"}
    lines = ["| objective / sampler | " + " | ".join(f"{names[c]} s/epoch | ratio to bpr/uniform" for c in columns)
             + " |", "|---" * (1 + 2 * len(columns)) + "|"]
    for name in steady[columns[0]]:
        cells = [f"{steady[c][name]:.3f} | {steady[c][name] / steady[c]['bpr/uniform']:.2f}" if name in steady[c]
                 else "- | -" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def profile_table(result: dict) -> list[str]:
    lines = ["| engine / sampler (1 thread) | s/epoch | drawing rows (negatives, PLD scoring) s | share | rest s |",
             "|---|---|---|---|---|"]
    for name, r in result["split"].items():
        rest = max(r["epoch"] - r["sampling"], 0.0)
        lines.append(f"| {name} | {r['epoch']:.3f} | {r['sampling']:.3f} | {r['sampling'] / r['epoch']:.0%} | "
                     f"{rest:.3f} |")
    return lines


def lightgcn_table(result: dict, args) -> list[str]:
    ours, plain = median(result["robustrec"]), median(result["plain"])
    steps = result["steps_per_epoch"]
    return [f"Seconds per step (each step propagates the whole graph), median of {args.lightgcn_steps} steps after "
            f"2 warm-up steps, {args.repeats} repeats; s/epoch = s/step x {steps} steps (batch {args.batch_size}).",
            "", "| LightGCN (3 layers, dim 64) | s/step | s/epoch | ratio |", "|---|---|---|---|",
            f"| robustrec (torchrec tables, FBGEMM row-wise Adagrad, autograd engine) | {ours:.3f} | {ours * steps:.1f} "
            "| 1.00 |",
            f"| plain PyTorch (one embedding matrix, CSR sparse propagation, Adam) | {plain:.3f} | {plain * steps:.1f} "
            f"| {plain / ours:.2f} |"]


def evaluation_table(r: dict) -> list[str]:
    moved = r["input_bytes"] + r["score_bytes"]
    return ["| evaluated users | products | s | GB moved (inputs + scores written and read) | GB/s | measured copy GB/s "
            "| ratio | GFLOP | GFLOP/s | measured matmul GFLOP/s (same precision) | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {r['evaluated_users']} | {r.get('products', 'float32')} | {r['seconds']:.3f} | {moved / 1e9:.2f} | {moved / r['seconds'] / 1e9:.1f} | "
            f"{r['bandwidth'] / 1e9:.1f} | {moved / r['seconds'] / r['bandwidth']:.2f} | {r['flops'] / 1e9:.1f} | "
            f"{r['flops'] / r['seconds'] / 1e9:.1f} | {r['gemm_rate'] / 1e9:.1f} | "
            f"{r['flops'] / r['seconds'] / r['gemm_rate']:.2f} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("ROBUSTREC_SHARED_DATA", REPO.parent / "shared" / "data"))
    default_data = [str(p) for p in [shared / "gowalla"] if p.is_dir()] + [SYNTHETIC]
    parser.add_argument("--data", nargs="+", default=default_data, help=f"split paths and/or {SYNTHETIC}")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per timed fit (>= 5: the first is reported apart)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--l2", type=float, default=3e-4)
    parser.add_argument("--batch1-lr", type=float, default=0.04, help="robustrec-batch1's learning rate")
    parser.add_argument("--batch1-l2", type=float, default=1e-4, help="robustrec-batch1's L2 weight")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lightgcn-steps", type=int, default=10, help="timed LightGCN steps per repeat")
    parser.add_argument("--skip", nargs="*", default=[], choices=["systems", "objectives", "profile", "lightgcn",
                                                                   "evaluation", "cold-compile"])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS,
                        help="the systems of the first table (default: all)")
    parser.add_argument("--out", type=Path, help="also write the tables as Markdown here")
    parser.add_argument("--child", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is reported apart)")
    if args.device != "cpu" and "robustrec-batch1" in args.systems:  # one-row batches: the CPU kernel's setting
        args.systems.remove("robustrec-batch1")
    load_before = os.getloadavg()
    report = [f"Command: `python benchmarks/train_speed.py {' '.join(sys.argv[1:])}`", "",
              f"Machine: {cpu_name()}, {os.cpu_count()} CPUs ({bf16_note()}), {args.threads} threads, "
              f"device {args.device}; load average at the start {load_before[0]:.1f}."]
    printed = 0
    for data in args.data:
        name = Path(data).name
        report += ["", f"## {name}", ""]
        if "systems" not in args.skip:
            rows = {}
            for _ in range(args.repeats):  # rounds: every system once per round, so load changes hit them alike
                for system in args.systems:
                    result = run_child(system, data, args, repeats=1)
                    if result is not None:
                        rows[system] = merge_rounds(rows.get(system), result)
            cold = None
            if "cold-compile" not in args.skip and args.device == "cpu" and data == args.data[0]:
                with tempfile.TemporaryDirectory() as cache:
                    cold = run_child("cold-compile", data, args, env={"ROBUSTREC_JIT_CACHE": cache})
            some = next(iter(rows.values()), None)
            if some:
                report.append(f"{some['shape'][0]} users x {some['shape'][1]} items, {some['n_train']} training "
                              f"interactions; medians of {args.repeats} interleaved rounds (each system once per "
                              f"round, in its own process) of {args.epochs} epochs.")
                report += [""] + systems_table(rows, cold)
                report += ["", "Recall@20 (implicit: its NDCG@20) after the timed epochs, a sanity check (not tuned): "
                           + ", ".join(f"{k} {median(v.get('recall@20', v.get('ndcg@20'))):.4f}"
                                       for k, v in rows.items())]
        for section, title, render in (
            ("objectives", "Every objective and sampler (robustrec kernel), steady-state epoch time",
             lambda r: objectives_table(r, args)),
            ("profile", "Where an epoch goes, before (autograd engine) and after (kernel)", profile_table),
            ("lightgcn", "LightGCN", lambda r: lightgcn_table(r, args)),
            ("evaluation", "Full-ranking evaluation of all test users (random factors, training items masked)",
             evaluation_table),
        ):
            if section in args.skip:
                continue
            result = run_child(section, data, args)
            if result is not None:
                report += ["", f"### {title}", ""] + render(result)
        print("\n".join(report[printed:]), flush=True)
        printed = len(report)
    load_after = os.getloadavg()
    report += ["", f"Load average at the end {load_after[0]:.1f} (the machine is shared: seconds are noisy, "
               "ratios measured in the same run less so)."]
    print("\n".join(report[printed:]))
    text = "\n".join(report) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
