"""Noisy share of real implicit-feedback logs from a cross-fitted recommender, estimate vs known truth.

    python benchmarks/noise_recommender.py [--data ../shared/data] [--folds 5] [--epochs 20] [--dim 64] \\
        [--l2 3e-4] [--negatives 100] [--gowalla-users 0] [--resamples 100] [--seed 0] [--threads 1] \\
        [--cache DIR] [--only gowalla deca synthetic] [--out benchmarks/results/noise_estimates_rows.md]

Rows: Gowalla with PLD-style injected interactions r ∈ {0.1, 0.3} (truth = the injected mask), ml-100k-deca's
real noise (truth = rating < 4), and the synthetic default with and without injection. Each log gets
cross-fitted out-of-sample p-values (``robustrec.crossfit.cross_fitted_losses`` with kind ``pvalue``:
K folds, MF-BPR trained on the other folds; p = randomised share of sampled unobserved items scored above the
interaction) — the same computation as ``python -m robustrec noise estimate``. Two estimators on the same
p-values: ``storey`` (``robustrec.noise.noisy_share_from_pvalues``, the CLI default) and ``mixture``
(``robustrec.noise.noisy_share`` on the rank loss Φ⁻¹(p), the earlier default). Also reported: the chosen λ,
the share of *truly clean* interactions with p > λ (the estimator's known upward bias is that share / (1 − λ)),
and the AUC of the noise scores against the truth. ``--cache DIR`` keeps the p-values (npz) so the estimators
can be rerun without retraining.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robustrec.atomic import save_text  # noqa: E402
from robustrec.noise import noise_scores, noise_scores_from_pvalues, noisy_share, noisy_share_from_pvalues  # noqa: E402
from robustrec.crossfit import PVALUE, CrossFitSettings, cross_fitted_losses  # noqa: E402
from robustrec.data import DataSpec, prepare_data  # noqa: E402
from robustrec.diagnostics import auc  # noqa: E402


def _cell(e, truth: float) -> str:
    return f"{e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]{'' if e.contains(truth) else ' ✗'}"


def rows_for(label: str, key: str, path, *, fmt="auto", inject=0.0, max_users=None, args, synthetic=(5000, 3000)):
    from scipy.special import ndtri

    tic = time.perf_counter()
    d = prepare_data(DataSpec(path=None if path is None else str(path), format=fmt, inject_noise=inject,
                              seed=args.seed, max_users=max_users, synthetic_users=synthetic[0],
                              synthetic_items=synthetic[1]))
    users, _ = d.split.train.coo()
    truth = d.noise_mask if d.noise_mask is not None else np.zeros(len(users), bool)
    cache = None if args.cache is None else args.cache / (
        f"{key}-f{args.folds}-e{args.epochs}-d{args.dim}-l2{args.l2:g}-n{args.negatives}-s{args.seed}.npz")
    if cache is not None and cache.exists():
        p = np.load(cache)["p"]
        fit_s = float(np.load(cache)["seconds"])
    else:
        settings = CrossFitSettings(n_folds=args.folds, epochs=args.epochs, dim=args.dim, n_negatives=args.negatives,
                                    l2=args.l2, seed=args.seed)
        p = cross_fitted_losses(d.split.train.matrix, settings, kinds=(PVALUE,))[PVALUE]
        fit_s = time.perf_counter() - tic
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, p=p, seconds=fit_s)
    t_true = float(truth.mean())
    has_truth = 0 < truth.sum() < len(truth)
    out = []
    t = time.perf_counter()
    est = noisy_share_from_pvalues(p, users=users, n_resamples=args.resamples, seed=args.seed)
    s_sec = time.perf_counter() - t
    lam = float(re.search(r"lambda=([0-9.]+)", est.method).group(1))
    clean_above = float((p[~truth] > lam).mean())
    a = auc(noise_scores_from_pvalues(p, pi0=est.value), truth) if has_truth else float("nan")
    out.append(f"| {label} | storey (λ = {lam:.2f}) | {len(p):,} | {t_true:.3f} | {_cell(est, t_true)} | "
               f"{clean_above:.4f} | {a:.3f} | {s_sec:.1f} | {fit_s:.0f} |")
    print(out[-1], flush=True)
    if not args.no_mixture:
        losses = ndtri(p)
        t = time.perf_counter()
        mix = noisy_share(losses, users, n_resamples=args.mixture_resamples, seed=args.seed)
        m_sec = time.perf_counter() - t
        a = auc(noise_scores(losses, users), truth) if has_truth else float("nan")
        out.append(f"| {label} | mixture (rank loss) | {len(p):,} | {t_true:.3f} | {_cell(mix, t_true)} | – | "
                   f"{a:.3f} | {m_sec:.1f} | (same) |")
        print(out[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    default_data = Path(os.environ.get("ROBUSTREC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=default_data)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--l2", type=float, default=3e-4)
    ap.add_argument("--negatives", type=int, default=100)
    ap.add_argument("--gowalla-users", type=int, default=0, help="users sampled from Gowalla (0 = all)")
    ap.add_argument("--resamples", type=int, default=100, help="bootstrap resamples of Storey's estimator")
    ap.add_argument("--mixture-resamples", type=int, default=20, help="bootstrap resamples of the mixture (slow)")
    ap.add_argument("--no-mixture", action="store_true", help="skip the mixture comparison rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 when the machine is shared)")
    ap.add_argument("--cache", type=Path, default=None, help="directory to keep/reuse the cross-fitted p-values")
    ap.add_argument("--only", nargs="+", default=["gowalla", "deca", "synthetic"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    rows: list[str] = []
    for part in args.only:
        if part == "synthetic":
            for r in (0.0, 0.2):
                rows += rows_for(f"synthetic default, r = {r}", f"synthetic-r{r}", None, inject=r, args=args)
        elif part == "gowalla":
            users = args.gowalla_users or None
            for r in (0.1, 0.3):
                label = f"Gowalla{' (all users)' if users is None else f' ({users:,} sampled users)'}, injected r = {r}"
                rows += rows_for(label, f"gowalla-u{users or 0}-r{r}", args.data / "gowalla", inject=r,
                                 max_users=users, args=args)
        elif part == "deca":
            rows += rows_for("ml-100k-deca, real noise (rating < 4)", "deca", args.data / "ml-100k-deca", fmt="deca",
                             args=args)
        else:
            raise SystemExit(f"unknown part {part!r}")
    head = (
        "| data | estimator | interactions | true share | estimate [95% CI] | clean with p > λ | noise-score AUC | "
        "estimator s | cross-fit s |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    cmd = "python benchmarks/noise_recommender.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (
        f"`{cmd.strip()}`\n\n"
        f"{args.folds}-fold cross-fitting, MF-BPR (dim {args.dim}, fused row-wise Adagrad lr 0.05, l2 {args.l2:g}, "
        f"{args.epochs} epochs per fold, batch 4096), {args.negatives} sampled unobserved items per interaction, "
        f"{args.resamples} user-bootstrap resamples (mixture: {args.mixture_resamples}), seed {args.seed}; "
        "✗ = truth outside the 95% interval. True share for injected rows = injected / all interactions "
        "(floor(r·|u|) per user, so below r).\n\n" + head + "\n".join(rows) + "\n\n"
        f"(total {time.perf_counter() - t:.0f} s)\n"
    )
    print(text)
    if args.out is not None:
        save_text(text, args.out)


if __name__ == "__main__":
    main()
