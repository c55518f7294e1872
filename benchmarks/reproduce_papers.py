"""Reproduce the robust-recommendation papers' comparisons on ../shared/data; tables into benchmarks/results/.

    python benchmarks/reproduce_papers.py nbpo-amazon      # NBPO vs BPR (Yu & Qin, SIGIR 2020, Table 2)
    python benchmarks/reproduce_papers.py nbpo-protocol    # the same, trained as the authors' code trains
    python benchmarks/reproduce_papers.py nbpo-defaults    # NBPO with its defaults vs BPR/BPO: clean, hidden positives
    python benchmarks/reproduce_papers.py pld-gowalla      # PLD vs BPR/T-CE/R-CE/NBPO, injected noise r in {.1,.3,.5}
    python benchmarks/reproduce_papers.py deca             # every method on ml-100k-deca (real noise), clean test
    python benchmarks/reproduce_papers.py speed            # s/epoch of each method as a ratio to BPR's (Gowalla)
    python benchmarks/reproduce_papers.py tuned deca       # every method with validation-selected settings,
    python benchmarks/reproduce_papers.py tuned gowalla    #   r in {0, .1, .3, .5}, 3 seeds (compare --tune)

Each writes ``benchmarks/results/<name>.md`` (the table, the settings, the exact command) and ``<name>.csv``
(one row per run). Run directories go to ``--work`` (default ``runs/benchmarks``). The data folder comes from
``--data`` or ``ROBUSTREC_SHARED_DATA`` (default ``../shared/data``). Settings deviating from the papers are
written next to the table, with the reason (2 shared CPU cores, FBGEMM's fused CPU optimizers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from robustrec import Recommender
from robustrec.compare import compare_runs, method_name, summarize, to_markdown
from robustrec.config import TrainConfig
from robustrec.data import DataSpec, prepare_data
from robustrec.runs import load_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from nbpo_protocol import f1_and_ndcg  # noqa: E402  (beside this script)
RESULTS = ROOT / "benchmarks" / "results"


def _data_dir(args) -> Path:
    return Path(args.data or os.environ.get("ROBUSTREC_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


def _write(name: str, table: pd.DataFrame, runs: pd.DataFrame, notes: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/reproduce_papers.py " + " ".join(sys.argv[1:])
    text = [f"# {name}", "", f"Command: `{command}`", "", to_markdown(table), "", *notes, ""]
    (RESULTS / f"{name}.md").write_text("\n".join(text))
    runs.to_csv(RESULTS / f"{name}.csv", index=False)
    print("\n".join(text))


def _f1_and_ndcg(run_dir: Path, ks=(5, 10, 20)) -> dict[str, float]:
    """The NBPO paper's metrics: per-user F1@K = 2PR/(P+R) and NDCG@K, averaged over test users."""
    _, spec = load_run(run_dir)
    split = prepare_data(spec).split
    model = Recommender.from_run(run_dir)
    return f1_and_ndcg(model.user_factors, model.item_factors, split.train.matrix, split.test.matrix, ks=ks)


def nbpo_amazon(args) -> None:
    """NBPO vs BPR on the NBPO authors' Amazon Electronics split; l2 (and NBPO's phi prior) picked on the
    validation part by early stopping on NDCG@20, then the test part reported."""
    spec = DataSpec(path=str(_data_dir(args) / "amazon-electronics-nbpo"), format="nbpo-json")
    base = TrainConfig(dim=52, n_negatives=4, batch_size=5000, epochs=args.epochs, lr=0.1, eval_every=5,
                       patience=4, early_stop_metric="ndcg@20", ks=(5, 10, 20))
    grid = [("bpr", dict(l2=l2)) for l2 in (0.01, 0.03, 0.05)]
    grid += [("nbpo", dict(l2=l2, phi_l2=5 * l2, phi_prior=prior)) for l2 in (0.01, 0.03, 0.05) for prior in (0.1, 0.3)]
    rows = []
    for seed in args.seeds:
        for loss, extra in grid:
            config = replace(base, loss=loss, seed=seed, **extra)
            name = f"{loss} l2={extra['l2']}" + (f" prior={extra['phi_prior']}" if loss == "nbpo" else "")
            out = Path(args.work) / "nbpo-amazon" / f"seed{seed}" / name.replace(" ", "_")
            frame = compare_runs([(name, config)], spec, out, seeds=(seed,), metric="ndcg@20", overwrite=True)
            history = pd.read_csv(out / "r0" / f"seed{seed}" / name.replace("/", "-") / "history.csv")
            row = frame.iloc[0].to_dict()
            row.update(loss=loss, setting=name, valid_ndcg20=history["valid_ndcg@20"].max(),
                       **_f1_and_ndcg(out / "r0" / f"seed{seed}" / name.replace("/", "-")))
            rows.append(row)
            print(f"{name} seed {seed}: valid {row['valid_ndcg20']:.4f} test NDCG@20 {row['NDCG@20']:.4f}", flush=True)
    runs = pd.DataFrame(rows)
    best = runs.groupby(["loss", "setting"])["valid_ndcg20"].mean().reset_index()
    best = best.loc[best.groupby("loss")["valid_ndcg20"].idxmax()]
    table_rows = []
    paper = {"bpr": (".0444/.0551/.0680", ".0326/.0317/.0275"), "nbpo": (".0555/.0655/.0810", ".0401/.0357/.0313")}
    for _, b in best.iterrows():
        sel = runs[runs["setting"] == b["setting"]]
        row = {"method": b["setting"], "seeds": len(sel)}
        for m in ("NDCG@5", "NDCG@10", "NDCG@20", "F1@5", "F1@10", "F1@20"):
            row[m] = f"{sel[m].mean():.4f}" + (f" ± {sel[m].std():.4f}" if len(sel) > 1 else "")
        row["paper NDCG@5/10/20"], row["paper F1@5/10/20"] = paper[b["loss"]]
        row["s/epoch"] = f"{sel['seconds_per_epoch'].mean():.3f}"
        table_rows.append(row)
    notes = [
        "Settings: the authors' dim 50 is not possible with FBGEMM's fused kernels (dim must be a multiple of 4): "
        "dim 52; 4 negatives per positive; batch 5000; fused row-wise Adagrad lr 0.1 (their plain GD, eta 0.05 "
        "on summed gradients with weight decay on all rows, has no fused equivalent); L2 on the batch's rows. "
        "Their lambda_r 1 / lambda_phi 5 act on whole matrices per batch; our per-row weights are not on the "
        "same scale, so l2 in {0.01, 0.03, 0.05} (a first grid {0.003, 0.01, 0.03} peaked at its edge) (phi_l2 = 5 l2, keeping their 1:5 ratio) and phi_prior in "
        "{0.1, 0.3} were selected on the validation part (early stopping on validation NDCG@20, every 5 epochs, "
        f"patience 4, at most {args.epochs} epochs). Test metrics over all items, training items masked; F1 per user.",
        "", "All grid points (test metrics at the best validation epoch):", "",
        to_markdown(runs.groupby("setting")[["valid_ndcg20", "NDCG@20", "F1@20", "best_epoch"]].mean().round(4).reset_index()),
    ]
    _write("nbpo-amazon", pd.DataFrame(table_rows), runs, notes)


def nbpo_protocol(args) -> None:
    """BPR and NBPO trained with the NBPO authors' protocol (benchmarks/nbpo_protocol.py) on their Amazon split:
    BPR with their lambda_r = 1 and with lambda_r selected on the validation part, NBPO with their settings and
    both updates (the likelihood's gradient, the authors' code's update). Test metrics at the epoch of best
    validation NDCG@20; and the best test NDCG@20 over epochs, what choosing epochs on the test part gives."""
    from nbpo_protocol import Protocol, train

    split = prepare_data(DataSpec(path=str(_data_dir(args) / "amazon-electronics-nbpo"), format="nbpo-json")).split
    runs = [("bpr", f"bpr lambda_r={l2:g}", Protocol(loss="bpr", l2=l2, epochs=args.epochs)) for l2 in args.bpr_l2]
    runs += [("nbpo", f"nbpo ({update})", Protocol(loss="nbpo", update=update, epochs=args.epochs))
             for update in ("likelihood", "authors")]
    rows = []
    for seed in args.seeds:
        for loss, name, protocol in runs:
            tic = time.perf_counter()
            result = train(replace(protocol, seed=seed), split.train.matrix, split.validation.matrix,
                           split.test.matrix)
            sel = result["selected"]
            rows.append({"loss": loss, "setting": name, "seed": seed, "epoch": sel["epoch"],
                         "valid_NDCG@20": sel["valid_NDCG@20"], "best_test_NDCG@20": result["best_test_ndcg20"],
                         **{k.removeprefix("test_"): v for k, v in sel.items() if k.startswith("test_")},
                         "seconds": time.perf_counter() - tic})
            print(f"{name} seed {seed}: epoch {sel['epoch']} valid {sel['valid_NDCG@20']:.4f} test NDCG@20 "
                  f"{sel['test_NDCG@20']:.4f} (best over epochs {result['best_test_ndcg20']:.4f})", flush=True)
    frame = pd.DataFrame(rows)
    shown = ["valid_NDCG@20", "NDCG@5", "NDCG@10", "NDCG@20", "F1@5", "F1@10", "F1@20", "best_test_NDCG@20", "epoch"]
    table = frame.groupby("setting", sort=False)[shown].agg(
        lambda v: f"{v.mean():.4f} ± {v.std():.4f}" if len(v) > 1 else f"{v.mean():.4f}").reset_index()
    bpr = frame[frame["loss"] == "bpr"].groupby("setting")["valid_NDCG@20"].mean()
    notes = [
        f"The authors' protocol (benchmarks/nbpo_protocol.py): MF dim 50, U[0,1)/sqrt(50) initialisation, batches of "
        f"5,000 training pairs in file order with 4 uniform unvoted items each, gradients summed over the batch, "
        f"weight decay lr*lambda on every row at every batch, plain gradient ascent lr 0.05 x 0.99 per epoch, "
        f"{args.epochs} epochs; NBPO lambda_r 1, lambda_phi 5, phi factors started at +-5 U[0,1)/sqrt(50) "
        "(phi ~ 0.002). Test metrics at the epoch of best validation NDCG@20; best_test_NDCG@20 picks the epoch "
        "on the test part instead. Paper (Table 2): NDCG@5/10/20 BPR .0444/.0551/.0680, NBPO .0555/.0655/.0810; "
        "F1@5/10/20 BPR .0326/.0317/.0275, NBPO .0401/.0357/.0313.",
        f"BPR setting selected on validation (mean validation NDCG@20 over seeds): {bpr.idxmax()}.",
    ]
    _write("nbpo-protocol", table, frame, notes)


#: The logs of ``nbpo-defaults``: name -> what it is.
NBPO_LOGS = {
    "amazon": "the NBPO paper's Amazon Electronics split (its own validation part)",
    "deca": "ml-100k-deca (MovieLens-100K, density 5.2%; its own clean validation part)",
    "ml-synthetic": "synthetic log of MovieLens density: 1,500 users x 1,000 items, mean activity 60 "
                    "(robustrec.data.generate), 20% test, 10% of train for validation",
    "ml-synthetic-hidden": "the same with half of each user's training positives hidden "
                           "(robustrec.data.hide_positives 0.5: moved to the test part)",
}


def _nbpo_log(args, name: str, seed: int):
    from robustrec.data import generate, hide_positives, random_holdout
    from robustrec.data.split import Split

    if name == "amazon":
        return prepare_data(DataSpec(path=str(_data_dir(args) / "amazon-electronics-nbpo"), format="nbpo-json")).split
    if name == "deca":
        return prepare_data(DataSpec(path=str(_data_dir(args) / "ml-100k-deca"), format="deca")).split
    split = generate(n_users=1500, n_items=1000, mean_activity=60, seed=seed)
    if name.endswith("hidden"):
        split = hide_positives(split, 0.5, seed=seed)
    inner = random_holdout(split.train, test_fraction=0.1, seed=seed + 1)
    return Split(train=inner.train, test=split.test, validation=inner.test)


def _parse_variant(text: str) -> tuple[str, dict]:
    """``"name:phi_prior=0.01,phi_dim=4"`` -> ("nbpo name", {"phi_prior": 0.01, "phi_dim": 4})."""
    name, _, settings = text.partition(":")
    values = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        values[key] = int(value) if value.lstrip("-").isdigit() else float(value)
    return f"nbpo {name}", values


def nbpo_defaults(args) -> None:
    """BPR, BPO and NBPO (its defaults, and --variants) with TrainConfig's defaults otherwise, trained to
    convergence (early stopping on the validation part), on clean logs and on a log with hidden positives."""
    from robustrec.objectives import PHI
    from robustrec.training import evaluate_model, fit

    methods = [("bpr", {}), ("bpo", {}), ("nbpo (defaults)", {})] + [_parse_variant(v) for v in args.variants]
    rows = []
    for log_name in args.logs:
        for seed in args.seeds:
            split = _nbpo_log(args, log_name, seed)
            for name, extra in methods:
                loss = name.split()[0]
                config = TrainConfig(loss=loss, seed=seed, epochs=args.epochs, eval_every=5, patience=3, **extra)
                result = fit(config, split.train.matrix, split.validation.matrix, progress=False)
                metrics = evaluate_model(result.model, split.train.matrix, split.test.matrix, (20,))
                row = {"log": log_name, "method": name, "seed": seed, "recall@20": metrics["recall@20"],
                       "ndcg@20": metrics["ndcg@20"], "best_epoch": result.best_epoch,
                       "seconds_per_epoch": result.train_seconds / max(result.epochs, 1)}
                if loss == "nbpo":  # how far the phi factors moved: phi = sigma(p.q + logit(phi_prior))
                    p, q = result.model.embedding_matrices(PHI)
                    row["phi_factor_norm"] = float((p.norm(dim=1).mean() * q.norm(dim=1).mean()).item())
                rows.append(row)
                print(f"{log_name} seed {seed} {name}: recall@20 {row['recall@20']:.4f} ndcg@20 {row['ndcg@20']:.4f}"
                      f" (best epoch {result.best_epoch})", flush=True)
    runs = pd.DataFrame(rows)
    bpr = runs[runs["method"] == "bpr"].set_index(["log", "seed"])["recall@20"]
    runs["ratio_to_bpr"] = [r["recall@20"] / bpr[(r["log"], r["seed"])] for _, r in runs.iterrows()]
    table = runs.groupby(["log", "method"], sort=False).agg(
        **{c: (c, lambda v: f"{v.mean():.4f} ± {v.std():.4f}") for c in ("recall@20", "ndcg@20", "ratio_to_bpr")},
        best_epoch=("best_epoch", "mean"), seconds_per_epoch=("seconds_per_epoch", "median"),
    ).round(2).reset_index()
    notes = [
        "Logs: " + "; ".join(f"{n}: {NBPO_LOGS[n]}" for n in args.logs) + ".",
        f"TrainConfig's defaults (MF dim 64, batch 4096, 1 sampled item per observed one — NBPO 4, fused row-wise Adagrad lr "
        f"0.05, l2 1e-4) for every method, at most {args.epochs} epochs with early stopping on validation "
        f"recall@20 (every 5 epochs, patience 3); seeds {', '.join(map(str, args.seeds))} (model, and split of the "
        "synthetic logs). ratio_to_bpr: recall@20 / BPR's on the same log and seed, mean ± std over seeds. "
        "phi_factor_norm in the csv: mean |p_u| x mean |q_i| of the phi factors after training (0: phi is its prior "
        "everywhere). Variants: " + ", ".join(args.variants) + ".",
    ]
    _write(f"nbpo-defaults{args.tag}", table, runs, notes)


def pld_gowalla(args) -> None:
    """PLD vs BPR, T-CE, R-CE and NBPO (MF) on Gowalla with PLD's injected noise, several seeds."""
    spec = DataSpec(path=str(_data_dir(args) / "gowalla"), format="lightgcn")
    steps_per_epoch = int(np.ceil(810_128 * 1.3 / args.batch_size))
    base = TrainConfig(dim=64, batch_size=args.batch_size, epochs=args.epochs, lr=0.05, l2=1e-4, eval_every=0,
                       pld_warmup_epochs=args.pld_warmup, tce_warmup_epochs=args.pld_warmup)
    configs = [
        replace(base, loss="bpr"),
        replace(base, loss="bpr", sampler="pld"),
        replace(base, loss="tce"),
        replace(base, loss="rce"),
        replace(base, loss="nbpo"),
    ]
    if args.lightgcn:
        configs += [replace(base, model="lightgcn", loss="bpr"), replace(base, model="lightgcn", loss="bpr", sampler="pld")]
    named = [(method_name(c), c) for c in configs]
    work = Path(args.work) / "pld-gowalla"
    for seed in ([] if args.summarize_only else args.seeds):  # one seed over every ratio first
        compare_runs(named, spec, work / f"seed{seed}{args.tag}", ratios=args.ratios, seeds=(seed,), overwrite=True)
        _gowalla_table(args, work, steps_per_epoch)
    if args.summarize_only:
        _gowalla_table(args, work, steps_per_epoch)


def _gowalla_table(args, work: Path, steps_per_epoch: int) -> None:
    """Summarise every finished Gowalla run under ``work`` (seed folders may come from separate processes)."""
    runs = pd.concat([pd.read_csv(f) for f in sorted(work.glob("seed*/runs.csv"))], ignore_index=True)
    bpr = runs[runs["method"] == "mf/bpr/uniform"].set_index(["inject_noise", "seed"])["seconds_per_epoch"]
    runs["time_ratio"] = [row.seconds_per_epoch / bpr.get((row.inject_noise, row.seed), np.nan)
                          for row in runs.itertuples()]
    table = summarize(runs)
    notes = [
        f"MF, dim 64, batch {args.batch_size}, fused row-wise Adagrad lr 0.05 (FBGEMM has no CPU AdamW), "
        f"L2 1e-4 on the batch's embeddings, {args.epochs} epochs (the paper: 100 epochs, batch 2048, AdamW "
        f"1e-3, 5 seeds; 2 shared CPU cores here). PLD: k=5, tau=0.1, {args.pld_warmup} warm-up epochs of BPR "
        f"(paper: 5). T-CE: max drop 0.2 reached after {args.pld_warmup} epochs "
        f"({args.pld_warmup * steps_per_epoch} steps; paper 30,000 steps at batch 1024). R-CE beta 0.25. "
        "NBPO: phi_l2 0.1, phi_prior 0.1. Noise: per user floor(r |train_u|) random unobserved items, "
        "training part only; test = the original clean LightGCN test split.",
        "noisy_in_top20 / clean_in_top20: share of the injected / original training interactions ranked in "
        "their user's top-20 (training items not masked). time_ratio: seconds per epoch / BPR's in the same "
        f"run set (medians below). Seeds done: {sorted(set(runs['seed']))}. Seconds here are confounded by "
        "the load of the shared machine, which changed while these runs went on (other jobs, and up to three "
        "benchmark processes): quote the interleaved ratios of speed-gowalla.md instead. Rows with noise 0 "
        "(no injection) come from `pld-gowalla --seeds 0 --ratios 0 --tag=-clean`. Measured here with "
        "`--threads 1 pld-gowalla --seeds 0` and `--threads 1 pld-gowalla --seeds 1` as two processes, then "
        "`pld-gowalla --summarize-only` (the default `--seeds 0 1` does the same in one process).",
        "", "Median seconds per epoch and ratio to mf/bpr/uniform over all runs:", "",
        to_markdown(runs.groupby("method", sort=False).agg(
            seconds_per_epoch=("seconds_per_epoch", "median"), time_ratio=("time_ratio", "median")
        ).round(3).reset_index()),
    ]
    _write("pld-gowalla", table, runs, notes)


def deca(args) -> None:
    """Every method on ml-100k-deca: trained on all ratings (rating < 4 = real noise), clean test (rating 5)."""
    spec = DataSpec(path=str(_data_dir(args) / "ml-100k-deca"), format="deca")
    steps_per_epoch = int(np.ceil(79_619 / args.batch_size))
    base = TrainConfig(dim=64, batch_size=args.batch_size, epochs=args.epochs, lr=0.05, l2=1e-4, eval_every=5,
                       patience=3, pld_warmup_epochs=5, tce_warmup_epochs=10)
    configs = []
    for model in args.models:
        configs += [replace(base, model=model, loss=loss) for loss in ("bpr", "bpo", "nbpo", "tce", "rce")]
        configs.append(replace(base, model=model, loss="bpr", sampler="pld"))
    named = [(method_name(c), c) for c in configs]
    runs = compare_runs(named, spec, Path(args.work) / "deca", seeds=args.seeds, overwrite=True)
    table = summarize(runs)
    notes = [
        f"dim 64, batch {args.batch_size}, fused row-wise Adagrad lr 0.05, L2 1e-4, at most {args.epochs} epochs "
        "with early stopping on the clean validation part (recall@20, every 5 epochs, patience 3). PLD: k=5, "
        f"tau=0.1, 5 warm-up epochs. T-CE: max drop 0.2 after 10 epochs ({10 * steps_per_epoch} steps). R-CE beta 0.25.",
        "noisy_in_top20 / clean_in_top20: share of the training interactions rated < 4 (real noise) / >= 4 "
        "ranked in their user's top-20, training items not masked.",
    ]
    _write("deca", table, runs, notes)


#: The data sets of the ``tuned`` table: spec and the settings of the runs that differ from TrainConfig's defaults.
TUNED_DATA = {
    "deca": dict(path="ml-100k-deca", format="deca", validation_fraction=0.0),  # its own clean validation part
    "gowalla": dict(path="gowalla", format="lightgcn", validation_fraction=0.1),  # carved from train
}
TUNED_METHODS = ("mf/bpr/uniform", "mf/bce/uniform", "mf/bpo/uniform", "mf/nbpo/uniform", "mf/tce/uniform",
                 "mf/rce/uniform", "mf/bpr/pld")


def tuned(args) -> None:
    """Every method with its settings selected on the validation part (``compare --tune``: the same trial and epoch
    budget each, per noise ratio, on the first seed's data), then trained with every seed; clean-test metrics."""
    from robustrec.compare import parse_method
    from robustrec.tune import TuneSettings

    where = dict(TUNED_DATA[args.dataset])
    spec = DataSpec(path=str(_data_dir(args) / where.pop("path")), max_users=args.max_users, **where)
    base = TrainConfig(dim=64, batch_size=args.batch_size, epochs=args.epochs, eval_every=args.eval_every,
                       patience=args.patience, pld_warmup_epochs=args.pld_warmup)
    configs = []
    for text in args.methods:
        model, loss, sampler = parse_method(text)
        configs.append((text, replace(base, model=model, loss=loss, sampler=sampler)))
    settings = TuneSettings(trials=args.trials, startup_trials=args.startup_trials)
    out = Path(args.work) / f"tuned-{args.dataset}{args.tag}"
    runs = compare_runs(configs, spec, out, ratios=args.ratios, seeds=args.seeds, tuning=settings,
                        overwrite=True)
    table = summarize(runs)
    table = table.drop(columns=[c for c in ("seconds_per_epoch", "time_ratio") if c in table])
    notes = [
        f"Data: {spec.path} ({spec.format}); validation: " + (f"{spec.validation_fraction:g} of each user's training "
        "interactions" if spec.validation_fraction else "the data's own validation part") +
        (f"; {args.max_users} sampled users" if args.max_users else "") + ". Noise: per user floor(r |train_u|) "
        "random unobserved items added to the training part only; the test part stays clean.",
        f"Selection (python -m robustrec compare --tune): per noise ratio, on seed {args.seeds[0]}'s data, each method "
        f"gets {args.trials} Optuna trials (seeded TPE, {args.startup_trials} random start-up trials, the defaults "
        f"as first trial, median pruning between validations) over its search space (robustrec.config.search_space),"
        f" each trial at most {args.epochs} epochs with early stopping on validation recall@20 (every "
        f"{args.eval_every} epochs, patience {args.patience}); the selected settings are in the `selected` column. "
        f"Then every seed ({', '.join(map(str, args.seeds))}) trains the selected settings the same way; test "
        "metrics of the best validation epoch, mean ± std over seeds.",
        f"Fixed: MF dim 64, batch {args.batch_size}, 1 sampled item per observed one (NBPO: 4, its default), fused row-wise Adagrad; PLD "
        f"warm-up {args.pld_warmup} epochs. Studies: {out}/tune/.",
        "noisy_in_top20 / clean_in_top20: share of the injected (or, on deca, rating < 4) / other training "
        "interactions ranked in their user's top-20, training items not masked.",
    ]
    _write(f"tuned-{args.dataset}{args.tag}", table, runs, notes)


def speed(args) -> None:
    """Seconds per epoch of each robust method as a ratio to BPR's on Gowalla: methods interleaved one epoch
    at a time (so machine load hits all alike), ratio to the BPR epoch of the same round, median over rounds."""
    from robustrec.training import fit

    split = prepare_data(DataSpec(path=str(_data_dir(args) / "gowalla"), format="lightgcn")).split
    base = TrainConfig(dim=64, batch_size=4096, epochs=1, eval_every=0, pld_warmup_epochs=0)
    methods = {"mf/bpr/uniform": base, "mf/bpr/pld": replace(base, sampler="pld"),
               "mf/nbpo/uniform": replace(base, loss="nbpo"), "mf/tce/uniform": replace(base, loss="tce"),
               "mf/rce/uniform": replace(base, loss="rce")}
    rows = []
    for rnd in range(args.rounds):
        for name, config in methods.items():
            seconds = fit(replace(config, seed=rnd), split.train.matrix, progress=False).train_seconds
            rows.append({"round": rnd, "method": name, "seconds_per_epoch": seconds})
            print(rnd, name, f"{seconds:.2f}s", flush=True)
    runs = pd.DataFrame(rows)
    bpr = runs[runs["method"] == "mf/bpr/uniform"].set_index("round")["seconds_per_epoch"]
    runs["ratio_to_bpr"] = runs["seconds_per_epoch"] / runs["round"].map(bpr)
    table = runs.groupby("method", sort=False).agg(
        median_seconds_per_epoch=("seconds_per_epoch", "median"), median_ratio_to_bpr=("ratio_to_bpr", "median"),
        min_ratio=("ratio_to_bpr", "min"), max_ratio=("ratio_to_bpr", "max"),
    ).round(3).reset_index()
    notes = [f"Gowalla train (810,128 interactions), MF dim 64, batch 4096, 1 negative, fused row-wise Adagrad, "
             f"torch threads {torch.get_num_threads()}; PLD with no warm-up (every epoch resamples, one extra "
             f"no-grad scoring pass of B x 6 pairs). {args.rounds} interleaved rounds on a 2-core machine shared "
             "with other jobs: absolute seconds are noisy, the same-round ratios less so."]
    _write("speed-gowalla", table, runs, notes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="shared data folder (default $ROBUSTREC_SHARED_DATA or ../shared/data)")
    parser.add_argument("--work", default=str(ROOT / "runs" / "benchmarks"), help="run directories")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    sub = parser.add_subparsers(dest="what", required=True)
    a = sub.add_parser("nbpo-amazon")
    a.add_argument("--epochs", type=int, default=200)
    a.add_argument("--seeds", type=int, nargs="+", default=[0])
    p = sub.add_parser("nbpo-protocol")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--bpr-l2", type=float, nargs="+", default=[1.0, 0.3, 0.1, 0.03])
    n = sub.add_parser("nbpo-defaults")
    n.add_argument("--logs", nargs="+", default=list(NBPO_LOGS), choices=list(NBPO_LOGS))
    n.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    n.add_argument("--epochs", type=int, default=100)
    n.add_argument("--variants", nargs="*", default=["paper prior:phi_prior=0.1,phi_dim=0"],
                   help="NBPO rows besides its defaults, NAME:FIELD=VALUE,... (TrainConfig fields)")
    n.add_argument("--tag", default="", help="suffix of the result name")
    g = sub.add_parser("pld-gowalla")
    g.add_argument("--epochs", type=int, default=10)
    g.add_argument("--batch-size", type=int, default=4096)
    g.add_argument("--pld-warmup", type=int, default=3)
    g.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    g.add_argument("--lightgcn", action="store_true", help="also LightGCN (slow on 2 cores)")
    g.add_argument("--summarize-only", action="store_true", help="only rebuild the table from finished runs")
    g.add_argument("--tag", default="", help="suffix of the seed folders (e.g. --tag=-clean for a --ratios 0 reference); "
                                            "the table merges every seed* folder")
    d = sub.add_parser("deca")
    d.add_argument("--epochs", type=int, default=40)
    d.add_argument("--batch-size", type=int, default=2048)
    d.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    d.add_argument("--models", nargs="+", default=["mf", "lightgcn"])
    t = sub.add_parser("tuned")
    t.add_argument("dataset", choices=sorted(TUNED_DATA))
    t.add_argument("--methods", nargs="+", default=list(TUNED_METHODS), metavar="MODEL/LOSS/SAMPLER")
    t.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5])
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    t.add_argument("--trials", type=int, default=10)
    t.add_argument("--startup-trials", type=int, default=4)
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument("--eval-every", type=int, default=5)
    t.add_argument("--patience", type=int, default=2)
    t.add_argument("--batch-size", type=int, default=4096)
    t.add_argument("--pld-warmup", type=int, default=5)
    t.add_argument("--max-users", type=int, default=None, help="a seeded sample of users (reduced budget)")
    t.add_argument("--tag", default="", help="suffix of the result and work names")
    sp_ = sub.add_parser("speed")
    sp_.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    {"nbpo-amazon": nbpo_amazon, "nbpo-protocol": nbpo_protocol, "nbpo-defaults": nbpo_defaults, "pld-gowalla": pld_gowalla, "deca": deca, "speed": speed,
     "tuned": tuned}[args.what](args)
    print(f"done in {time.perf_counter() - tic:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
