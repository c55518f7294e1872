"""Noisy share of real implicit-feedback logs from a trained recommender, estimate vs known truth.

    python benchmarks/noise_recommender.py [--data ../shared/data] [--epochs 10] [--folds 2] \\
        [--gowalla-users 10000] [--resamples 50] [--seed 0] [--out benchmarks/results/noise_estimates.md]

Rows: Gowalla with PLD-style injected interactions r ∈ {0.1, 0.3} (truth = the injected mask), ml-100k-deca's
real noise (truth = rating < 4), and the synthetic default with and without injection. Each log gets
cross-fitted out-of-sample per-interaction losses (``robustrec.noise_cli.cross_fitted_loss_kinds``: K folds,
MF-BPR trained on the other folds) of both kinds, scored against the same sampled unobserved items:
``bpr`` (mean BPR loss, the "before") and ``rank`` (probit of the randomised share of sampled unobserved items
scored above the interaction, the CLI's default, the "after"). The rows come from
``benchmarks/noise_estimates.implicit_rows`` (``robustrec.noise.noisy_share`` with its cluster-bootstrap
interval), plus the AUC of ``noise_scores`` against the truth. Writes the Markdown table to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from noise_estimates import implicit_rows  # noqa: E402

from robustrec.checkpoint import save_text  # noqa: E402
from robustrec.noise import noise_scores  # noqa: E402
from robustrec.noise_cli import auc, cross_fitted_loss_kinds, load_noise_log  # noqa: E402

KINDS = ("bpr", "rank")


def rows_for(label: str, path, *, fmt="auto", inject=0.0, max_users=None, args, synthetic=(5000, 3000)) -> list[str]:
    tic = time.perf_counter()
    d = load_noise_log(path, format=fmt, inject_noise=inject, seed=args.seed, max_users=max_users,
                       synthetic_users=synthetic[0], synthetic_items=synthetic[1])
    truth = d.truth if d.truth is not None else np.zeros(len(d.users), bool)
    losses = cross_fitted_loss_kinds(
        d.log.matrix, n_folds=args.folds, epochs=args.epochs, dim=args.dim, n_negatives=args.negatives,
        kinds=KINDS, seed=args.seed, progress=False,
    )
    fit_s = time.perf_counter() - tic
    out = []
    for kind in KINDS:
        row = implicit_rows(f"{label}, {kind} loss", losses[kind], d.users, truth, n_resamples=args.resamples,
                            seed=args.seed)
        a = auc(noise_scores(losses[kind], d.users), truth) if 0 < truth.sum() < len(truth) else float("nan")
        out.append(f"{row} {a:.3f} | {fit_s:.0f} |")
        print(out[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    default_data = Path(os.environ.get("ROBUSTREC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=default_data)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--negatives", type=int, default=100)
    ap.add_argument("--gowalla-users", type=int, default=10000, help="users sampled from Gowalla (0 = all)")
    ap.add_argument("--resamples", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", default=["synthetic", "gowalla", "deca"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    t = time.perf_counter()
    rows: list[str] = []
    for part in args.only:
        if part == "synthetic":
            for r in (0.0, 0.2):
                rows += rows_for(f"synthetic default, r = {r}", None, inject=r, args=args)
        elif part == "gowalla":
            users = args.gowalla_users or None
            for r in (0.1, 0.3):
                label = f"Gowalla{'' if users is None else f' ({users:,} sampled users)'}, injected r = {r}"
                rows += rows_for(label, args.data / "gowalla", inject=r, max_users=users, args=args)
        elif part == "deca":
            rows += rows_for("ml-100k-deca, real noise (rating < 4)", args.data / "ml-100k-deca", fmt="deca", args=args)
        else:
            raise SystemExit(f"unknown part {part!r}")
    head = (
        "| data, per-interaction loss | interactions | true share | estimate [95% CI] | estimator seconds | "
        "noise-score AUC | cross-fit seconds |\n|---|---|---|---|---|---|---|\n"
    )
    cmd = "python benchmarks/noise_recommender.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (
        "## Implicit feedback on real logs: noisy share from a cross-fitted recommender\n\n"
        f"`{cmd.strip()}`\n\n"
        f"{args.folds}-fold cross-fitting, MF-BPR (dim {args.dim}, {args.epochs} epochs per fold), {args.negatives} "
        f"sampled unobserved items per interaction, {args.resamples} cluster-bootstrap resamples, seed {args.seed}; "
        "✗ = truth outside the 95% interval. True share for injected rows = injected / all interactions "
        "(floor(r·|u|) per user, so below r).\n\n" + head + "\n".join(rows) + "\n\n"
        f"(total {time.perf_counter() - t:.0f} s)\n"
    )
    print(text)
    if args.out is not None:
        save_text(text, args.out)


if __name__ == "__main__":
    main()
