"""Flip-rate estimates that must not mislead: coverage on simulations, scorers on real dialogues, annotators.

    python benchmarks/flip_rate_estimates.py --data ../shared/data [--trials 400] [--ds-trials 200] \
        [--seeds 3] [--clean 500] [--threads 1] [--out benchmarks/results/flip_rate_estimates.md]

Sections of the Markdown it writes:

1. Coverage of every flip-rate interval on simulated data (benchmarks/flip_rate_coverage.py): cells,
   trials, coverage, identifiable and accepted shares.
2. Cross-fitting: the scorer method with a logistic regression actually cross-fitted on the clean pairs
   (Gaussian pair features, the scorer's error set by the feature signal), ``--crossfit-trials`` data sets per
   cell: does the interval still cover when e and d come from fold models?
3. HH-RLHF harmless-base (real dialogues): a clean slice of ``--clean`` pairs held out, flips injected into
   the rest at 0.1, 0.2, 0.3 (``--seeds`` seeds); per scorer (``bow``, ``embeddings`` with the shipped default
   model) its clean error e, the estimate with its interval, and whether ``flip_rate="auto"`` would train or
   refuse (:func:`alignment.flip_rate.resolve_flip_rate`); also without the clean slice (confident learning).
4. PandaLM's three annotators: Dawid–Skene ε (the documented 0.027) and the per-pair flip rates of the
   majority labels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import flip_rate_coverage  # noqa: E402

from robustrec.noise import (  # noqa: E402
    DEFAULT_MAX_CI_WIDTH,
    preference_codes,
    scorer_flip_rate_bounds,
)

RATES = (0.1, 0.2, 0.3)


# ----------------------------------------------------------------------------------------------- cross-fitting


def crossfit_cells(trials: int, *, seed: int, dim: int = 20, n: int = 1000, n_clean: int = 200) -> list:
    """The scorer method with a cross-fitted logistic regression (alignment.scorers.cross_fit).

    Each pair's feature difference is ``x = μ·u + N(0, I)`` oriented so that the label says "first better"
    (``u`` a fixed unit vector; a flipped pair's x is negated); ``μ`` sets the scorer's error. The scorer is
    cross-fitted on the clean pairs, every noisy pair is scored by one fold model, and the interval comes from
    the resulting d and e (:func:`robustrec.noise.scorer_flip_rate_bounds`)."""
    from alignment.scorers import cross_fit

    rng = np.random.default_rng(seed)
    u = np.zeros(dim)
    u[0] = 1.0
    cells = []
    for mu in (1.0, 0.5, 0.25):
        for eps in (0.1, 0.3):
            d, e = np.empty(trials), np.empty(trials)
            for t in range(trials):
                clean = mu * u + rng.standard_normal((n_clean, dim))
                flipped = rng.random(n) < eps
                noisy = (mu * u + rng.standard_normal((n, dim))) * np.where(flipped, -1.0, 1.0)[:, None]
                fitted = cross_fit(clean, seed=t)
                e[t] = np.mean(fitted.margins < 0)
                d[t] = np.mean(fitted.fold_margins(noisy, seed=t + 1) < 0)
            b = scorer_flip_rate_bounds(d, n, e, n_clean)
            cells.append(flip_rate_coverage.summarise("scorer, cross-fitted", f"μ={mu}, mean e={e.mean():.3f}, clean={n_clean}",
                                                      n, eps, b))
    return cells


# ----------------------------------------------------------------------------------------------- HH-RLHF


class CachedFeatures:
    """A feature scorer whose features are computed once per text (flips only swap the two responses)."""

    def __init__(self, inner):
        self.inner, self.cache = inner, {}
        self.name, self.l2, self.standardize = inner.name, getattr(inner, "l2", 1e-3), getattr(inner, "standardize", False)

    def prepare(self, texts):
        if hasattr(self.inner, "prepare") and not self.cache:
            self.inner.prepare(texts)

    def features(self, prompts, responses):
        keys = list(zip(prompts, responses))
        todo = [k for k in dict.fromkeys(keys) if k not in self.cache]
        if todo:
            rows = self.inner.features([p for p, _ in todo], [r for _, r in todo])
            self.cache.update(zip(todo, rows))
        return np.stack([self.cache[k] for k in keys])


def hh_rows(path: Path, *, n_clean: int, seeds: int, threads: int) -> tuple[list[dict], str]:
    import torch

    from alignment.data import load_preference_pairs
    from alignment.experiment import inject_flips
    from alignment.flip_rate import estimate_flip_rate, flip_rate_refusal
    from alignment.scorers import BagOfWordsFeatures, EmbeddingFeatures

    torch.set_num_threads(threads)
    pairs = load_preference_pairs(path, on_invalid="drop")
    frame = pairs.pairs.reset_index(drop=True)
    order = np.random.default_rng(0).permutation(len(frame))
    clean, train = frame.iloc[order[:n_clean]], frame.iloc[order[n_clean:]].reset_index(drop=True)
    embedding = EmbeddingFeatures(max_length=256, batch_size=32)
    scorers = {"bow": CachedFeatures(BagOfWordsFeatures()), "embeddings": CachedFeatures(embedding)}
    rows = []
    for name, scorer in scorers.items():
        for rate in RATES:
            for seed in range(seeds):
                noisy, mask = inject_flips(train, rate, seed=1000 + seed)
                for with_clean in (True, False):
                    start = time.perf_counter()
                    est = estimate_flip_rate(noisy, clean_pairs=clean if with_clean else None, scorer=scorer, seed=seed)
                    refusal = flip_rate_refusal(est)
                    rows.append({"scorer": name, "clean": with_clean, "rate": rate, "realised": float(mask.mean()),
                                 "seed": seed, "estimate": est.to_dict(), "covers": est.contains(float(mask.mean())),
                                 "auto": "train" if refusal is None else "refuse", "refusal": refusal,
                                 "seconds": time.perf_counter() - start})
    note = (f"{pairs.summary()}; clean slice {len(clean)} pairs, flips injected into the other {len(train)}; "
            f"embeddings: shipped default model, max_length 256, truncated sequences {embedding.n_truncated}")
    return rows, note


def _interval(d: dict) -> str:
    value = "–" if d["value"] is None else f"{d['value']:.3f}"
    return f"{value} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"


def hh_table(rows: list[dict]) -> str:
    out = ["| scorer | clean slice | ε injected | seed | clean error e [95% CI] | disagreement d | estimate [95% CI] | "
           "identifiable | covers | auto |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["estimate"]
        e = (f"{d['clean_error']:.3f} [{d['clean_error_ci_low']:.3f}, {d['clean_error_ci_high']:.3f}]"
             if "clean_error" in d else "– (no clean pairs)")
        out.append(f"| {r['scorer']} | {'yes' if r['clean'] else 'no'} | {r['rate']:.1f} | {r['seed']} | {e} | "
                   f"{d['disagreement']:.3f} | {_interval(d)} | {'yes' if d['identifiable'] else 'no'} | "
                   f"{'yes' if r['covers'] else '**no**'} | {r['auto']} |")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------- PandaLM


def pandalm_section(path: Path) -> str:
    from alignment.flip_rate import pair_flip_rates_from_annotations

    if not path.exists():
        return f"(PandaLM skipped: {path} absent)\n"
    rows = json.loads(path.read_text())
    raw = np.array([[r["annotator1"], r["annotator2"], r["annotator3"]] for r in rows])
    codes = preference_codes(raw, first=1, second=2, tie=0)
    out = pair_flip_rates_from_annotations(codes)
    est = out.estimate
    rates = out.rates[out.labels >= 0]
    return (
        f"Dawid–Skene on {est.n} pairs ({est.n_excluded} without a usable label; ties dropped): flip rate of one "
        f"annotation **{est.value:.4f} [{est.ci_low:.4f}, {est.ci_high:.4f}]**, identifiable: {est.identifiable}.\n\n"
        f"Per-pair flip rates of the majority labels (`pair_flip_rates_from_annotations`): mean {out.label_flip_rate:.4f} "
        f"(the expected share of flipped training labels), median {np.median(rates):.5f}, max {rates.max():.3f}; "
        f"pairs with ε_i > 0.1: {int((rates > 0.1).sum())}, > 0.4 (left out by `usable()`): {int((rates > 0.4).sum())}.\n"
    )


# ----------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--ds-trials", type=int, default=200)
    parser.add_argument("--crossfit-trials", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--clean", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-hh", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the HH rows as JSON")
    args = parser.parse_args(argv)
    command = "python benchmarks/flip_rate_estimates.py " + " ".join(argv if argv is not None else sys.argv[1:])
    parts = [f"# Flip-rate estimates: coverage, scorers on real dialogues, annotators\n\n`{command}`\n"]

    start = time.perf_counter()
    cells = flip_rate_coverage.run(trials=args.trials, ds_trials=args.ds_trials, seed=args.seed)
    parts.append(f"## 1. Coverage on simulated data ({time.perf_counter() - start:.0f} s)\n\n"
                 f"`flip_rate=\"auto\"` accepts an estimate when it is identifiable and its interval is at most "
                 f"{DEFAULT_MAX_CI_WIDTH} wide. Per method, over its cells:\n\n" + flip_rate_coverage.summary(cells))

    start = time.perf_counter()
    cf = crossfit_cells(args.crossfit_trials, seed=args.seed)
    parts.append(f"## 2. Cross-fitted scorer ({time.perf_counter() - start:.0f} s)\n\n" + flip_rate_coverage.markdown(cf))

    if not args.skip_hh:
        start = time.perf_counter()
        rows, note = hh_rows(args.data / "hh-rlhf-harmless-base" / "test.jsonl.gz", n_clean=args.clean,
                             seeds=args.seeds, threads=args.threads)
        parts.append(f"## 3. HH-RLHF harmless-base ({time.perf_counter() - start:.0f} s)\n\n{note}.\n\n" + hh_table(rows))
        refusals = [r["refusal"] for r in rows if r["refusal"]]
        if refusals:
            parts.append("One refusal message in full:\n\n> " + refusals[0] + "\n")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))

    parts.append("## 4. PandaLM, three annotators\n\n" + pandalm_section(args.data / "pandalm-3annotators" / "testset-v1.json"))
    parts.append("## Coverage, every cell\n\n" + flip_rate_coverage.markdown(cells))
    text = "\n".join(parts)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
