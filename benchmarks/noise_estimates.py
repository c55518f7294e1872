"""Noise-rate estimates against known truth, printed as Markdown tables.

    python benchmarks/noise_estimates.py [--data ../shared/data] [--resamples 200] [--seed 0]

1. Synthetic preference flips ε ∈ {0.1, 0.2, 0.3, 0.4} at n = 2,000 and 20,000, for every flip-rate estimator:
   agreement (2 annotators), Dawid–Skene (3 annotators), scorer (an out-of-fold reward model of accuracy 0.8,
   clean set of n/4 pairs), confident learning (calibrated P(label | pair) from a reward model of accuracy 0.95
   and 0.99: CL counts the scorer's confident mistakes as flips, so its bias tracks the scorer's error).
2. PandaLM's three annotators: Dawid–Skene flip rate per annotator and the pairwise agreement it implies,
   against the agreement actually observed.
3. Implicit feedback: simulated per-user losses with a known noisy share (per-user loss mixture), and simulated
   p-values (uniform nulls + Beta clean) for Storey's π0. Real logs (Gowalla with injected
   interactions, ml-100k-deca's ratings < 4) need per-interaction out-of-sample losses from a trained
   recommender: call :func:`implicit_rows` with them (the hook for the recommender side).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robustrec.noise import (  # noqa: E402
    Estimate,
    apply_flips,
    flip_pairs,
    flip_rate_confident_learning,
    flip_rate_dawid_skene,
    flip_rate_from_agreement,
    flip_rate_from_scorer,
    noisy_share,
    noisy_share_from_pvalues,
    pairwise_agreement,
    preference_codes,
)
from robustrec.noise.simulate import simulate_annotations, simulate_scorer, simulate_user_losses  # noqa: E402


def _cell(e: Estimate, truth: float) -> str:
    mark = "" if e.contains(truth) else " ✗"
    refused = "" if e.identifiable else " (not identifiable)"
    return f"{e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]{mark}{refused}"


def synthetic_flip_table(*, n_resamples: int, seed: int) -> str:
    head = (
        "| n | ε (true) | realised | agreement (2 ann.) | Dawid–Skene (3 ann.) | scorer (acc .80) | CL (acc .95) | CL (acc .99) |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for n in (2000, 20000):
        for eps in (0.1, 0.2, 0.3, 0.4):
            sim = simulate_annotations(n, (eps, eps, eps), seed=seed)
            agr = flip_rate_from_agreement(sim.annotations[:, 0], sim.annotations[:, 1])
            ds = flip_rate_dawid_skene(sim.annotations, n_resamples=n_resamples, seed=seed).flip_rate
            mask = flip_pairs(n, eps, seed=seed + 1)
            labels = apply_flips(sim.true, mask)
            rm = simulate_scorer(sim.true, 0.8, seed=seed + 2)
            clean_true = np.random.default_rng(seed + 3).integers(0, 2, n // 4)
            rm_clean = simulate_scorer(clean_true, 0.8, seed=seed + 4)
            sc = flip_rate_from_scorer(rm.margin, labels, rm_clean.margin, clean_true)
            cls = [
                flip_rate_confident_learning(
                    labels, simulate_scorer(sim.true, acc, flip_rate=eps, seed=seed + 5).p_label_first
                )
                for acc in (0.95, 0.99)
            ]
            realised = f"{sim.is_flipped.mean():.3f} / {mask.mean():.3f}"
            rows.append(
                f"| {n:,} | {eps:.1f} | {realised} | {_cell(agr, eps)} | {_cell(ds, eps)} | {_cell(sc, eps)} | "
                f"{_cell(cls[0], eps)} | {_cell(cls[1], eps)} |"
            )
    note = (
        "\nrealised = share of flipped annotations (annotator data) / flipped labels (scorer and CL data); "
        "✗ = truth outside the 95% interval.\n"
    )
    return head + "\n".join(rows) + "\n" + note


def pandalm_table(data: Path, *, n_resamples: int, seed: int) -> str:
    path = data / "pandalm-3annotators" / "testset-v1.json"
    if not path.exists():
        return f"(PandaLM skipped: {path} absent)\n"
    rows = json.loads(path.read_text())
    raw = np.array([[r["annotator1"], r["annotator2"], r["annotator3"]] for r in rows])
    x = preference_codes(raw, first=1, second=2, tie=0)
    out = [f"PandaLM: {len(x)} pairs, {int((x == 2).sum())} tie annotations dropped (treated as missing).\n"]
    for confusion in ("symmetric", "pooled", "full"):
        res = flip_rate_dawid_skene(x, ties="drop", confusion=confusion, n_resamples=n_resamples, seed=seed)
        rates = ", ".join(f"{r:.3f}" for r in res.annotator_flip_rates)
        out.append(f"- Dawid–Skene ({confusion}): flip rate {res.flip_rate} ; per annotator {rates}")
    res = flip_rate_dawid_skene(x, ties="drop", n_resamples=n_resamples, seed=seed)
    obs = pairwise_agreement(x, ties="drop")
    pred = res.predicted_agreement()
    out.append("\n| annotators | observed agreement | DS-implied agreement | two-annotator ε (agreement) |")
    out.append("|---|---|---|---|")
    for i, j in ((0, 1), (0, 2), (1, 2)):
        e = flip_rate_from_agreement(x[:, i], x[:, j], ties="drop")
        out.append(f"| {i + 1}–{j + 1} | {obs[i, j]:.3f} | {pred[i, j]:.3f} | {e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}] (n={e.n}) |")
    return "\n".join(out) + "\n"


def implicit_rows(label: str, losses: np.ndarray, users: np.ndarray, is_noise: np.ndarray, *, n_resamples: int, seed: int) -> str:
    """One Markdown row: noisy share estimated from per-interaction out-of-sample losses vs the known truth.

    The hook for real logs: pass cross-fitted per-interaction losses of a recommender (e.g. BPR losses of
    each training interaction from a model trained on the other folds) on Gowalla with
    ``add_random_interactions`` (``is_noise`` = its mask) or on ml-100k-deca (``is_noise`` = rating < 4).
    """
    t = time.perf_counter()
    est = noisy_share(losses, users, n_resamples=n_resamples, seed=seed)
    truth = float(np.mean(is_noise))
    return f"| {label} | {len(losses):,} | {truth:.3f} | {_cell(est, truth)} | {time.perf_counter() - t:.1f} |"


def implicit_table(*, n_resamples: int, seed: int) -> str:
    head = "| data | interactions | true share | estimate [95% CI] | seconds |\n|---|---|---|---|---|\n"
    rows = []
    for share in (0.0, 0.1, 0.2, 0.3):
        sim = simulate_user_losses(1000, share, seed=seed)
        rows.append(implicit_rows(f"simulated losses, 1,000 users, share {share}", sim.losses, sim.users, sim.is_noise,
                                  n_resamples=n_resamples, seed=seed))
    return head + "\n".join(rows) + "\n\n(Gowalla r ∈ {0.1, 0.3} and ml-100k-deca rows need a trained recommender: benchmarks/noise_recommender.py, with cross-fitted p-values; results in benchmarks/results/noise_estimates.md.)\n"


def pvalue_table(*, n_resamples: int, seed: int) -> str:
    """Storey's π0 (``noisy_share_from_pvalues``) on simulated p-values: Uniform(0, 1) for the noisy share, clean
    ones from Beta(0.3, 8) (a good model: P(p > 0.8) ≈ 1e-6) or Beta(0.7, 2) (a weak one: ≈ 0.03); 30,000
    p-values over 1,000 users, users resampled whole."""
    head = ("| clean p-values | true share | realised | estimate [95% CI] | seconds |\n|---|---|---|---|---|\n")
    rows = []
    rng = np.random.default_rng(seed)
    for name, ab in (("Beta(0.3, 8) (good model)", (0.3, 8.0)), ("Beta(0.7, 2) (weak model)", (0.7, 2.0))):
        for share in (0.0, 0.1, 0.2, 0.3):
            n = 30000
            is_null = rng.random(n) < share
            p = np.where(is_null, rng.random(n), rng.beta(*ab, size=n))
            users = rng.integers(0, 1000, n)
            t = time.perf_counter()
            est = noisy_share_from_pvalues(p, users=users, n_resamples=n_resamples, seed=seed)
            rows.append(f"| {name} | {share} | {is_null.mean():.3f} | {_cell(est, float(is_null.mean()))} "
                        f"({est.method}) | {time.perf_counter() - t:.2f} |")
    return head + "\n".join(rows) + "\n\n(The weak-model rows are biased up by P(p_clean > λ)/(1 − λ), as documented.)\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("ROBUSTREC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")))
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t = time.perf_counter()
    print("## Synthetic preference flips\n")
    print(synthetic_flip_table(n_resamples=args.resamples, seed=args.seed))
    print("## PandaLM (3 human annotators)\n")
    print(pandalm_table(args.data, n_resamples=args.resamples, seed=args.seed))
    print("## Implicit feedback: noisy share of observed positives\n")
    print(implicit_table(n_resamples=min(args.resamples, 50), seed=args.seed))
    print("## Implicit feedback: Storey's π0 on simulated p-values\n")
    print(pvalue_table(n_resamples=args.resamples, seed=args.seed))
    print(f"(total {time.perf_counter() - t:.0f} s, {args.resamples} bootstrap resamples, seed {args.seed})")


if __name__ == "__main__":
    main()
