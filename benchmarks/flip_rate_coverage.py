"""Coverage of every flip-rate interval on simulated data with a known flip rate, vectorised over trials.

    python benchmarks/flip_rate_coverage.py [--trials 400] [--ds-trials 200] [--seed 0] [--out FILE.md]

Each cell draws ``trials`` independent data sets at once and runs the estimator's vectorised form (the same
code as the per-data-set function, see robustrec.noise.flip_rate):

- scorer: a fixed scorer erring on each pair with probability e (independently of the flips), labels
  flipped independently with probability ε; d on n noisy pairs, e on ``n_clean`` clean pairs
  (:func:`~robustrec.noise.scorer_flip_rate_bounds`).
- agreement: two annotators each flipping with probability ε (:func:`~robustrec.noise.agreement_flip_rate_bounds`).
- Dawid–Skene: three annotators each flipping with probability ε, the 8 annotation patterns' counts, bootstrap
  over items (:func:`~robustrec.noise.dawid_skene_flip_rate_bounds`).
- confident learning: Gaussian scorer margins of accuracy 1 − e, calibrated P(label | margin) (or made
  over-confident by scaling its log-odds ×3), no clean pairs (:func:`~robustrec.noise.confident_learning_flip_rate_bounds`).

Per cell: coverage of the 95% interval over all trials (refused ones keep their interval), the share of
identifiable estimates, the share ``flip_rate="auto"`` would accept (:func:`~robustrec.noise.precise_enough`,
identifiable and interval width <= DEFAULT_MAX_CI_WIDTH), coverage among identifiable and among accepted
trials, and the largest value returned (never >= 0.5). ``tests/noise/test_noise_flip_rate_coverage.py`` checks
these numbers.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import dataclass
from math import erf, sqrt
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robustrec.noise import (  # noqa: E402
    DEFAULT_MAX_CI_WIDTH,
    FlipRateBounds,
    agreement_flip_rate_bounds,
    confident_learning_flip_rate_bounds,
    dawid_skene_flip_rate_bounds,
    precise_enough,
    scorer_flip_rate_bounds,
)

#: The grid: scorer clean errors, true flip rates, numbers of noisy pairs (items), clean pairs per noisy pair.
SCORER_ERRORS = (0.05, 0.15, 0.25, 0.35, 0.45)
FLIP_RATES = (0.0, 0.1, 0.2, 0.3, 0.4)
SIZES = (200, 2000)
CLEAN_SHARES = (0.25, 1.0)
#: Confident learning's probability models: calibrated, and log-odds scaled by this factor (over-confident).
CL_CALIBRATIONS = {"calibrated": 1.0, "over-confident x3": 3.0}


@dataclass(frozen=True)
class Cell:
    """One grid cell's summary over its trials (shares in [0, 1]; NaN where a share has no trials)."""

    method: str
    setting: str
    n: int
    flip_rate: float
    trials: int
    coverage: float
    identifiable: float
    accepted: float
    coverage_identifiable: float
    coverage_accepted: float
    accepted_missed: float
    max_value: float
    mean_width_accepted: float


def summarise(method: str, setting: str, n: int, eps: float, b: FlipRateBounds, *,
              max_ci_width: float = DEFAULT_MAX_CI_WIDTH) -> Cell:
    cover = (b.ci_low <= eps) & (eps <= b.ci_high)
    ident = np.asarray(b.identifiable, dtype=bool)
    accepted = np.asarray(precise_enough(b.ci_low, b.ci_high, ident, max_ci_width=max_ci_width), dtype=bool)

    def share(mask: np.ndarray, within: np.ndarray) -> float:
        return float(mask[within].mean()) if within.any() else float("nan")

    values = np.asarray(b.value)
    return Cell(
        method=method, setting=setting, n=n, flip_rate=eps, trials=int(cover.size), coverage=float(cover.mean()),
        identifiable=float(ident.mean()), accepted=float(accepted.mean()),
        coverage_identifiable=share(cover, ident), coverage_accepted=share(cover, accepted),
        accepted_missed=float((accepted & ~cover).mean()),
        max_value=float(np.nanmax(values)) if np.isfinite(values).any() else float("nan"),
        mean_width_accepted=float((b.ci_high - b.ci_low)[accepted].mean()) if accepted.any() else float("nan"),
    )


def scorer_cells(trials: int, rng: np.random.Generator) -> list[Cell]:
    cells = []
    for n, share, e, eps in itertools.product(SIZES, CLEAN_SHARES, SCORER_ERRORS, FLIP_RATES):
        n_clean = int(n * share)
        d_count = rng.binomial(n, e * (1 - eps) + eps * (1 - e), trials)
        e_count = rng.binomial(n_clean, e, trials)
        b = scorer_flip_rate_bounds(d_count / n, n, e_count / n_clean, n_clean)
        cells.append(summarise("scorer", f"e={e:.2f}, clean={n_clean}", n, eps, b))
    return cells


def agreement_cells(trials: int, rng: np.random.Generator) -> list[Cell]:
    cells = []
    for n, eps in itertools.product(SIZES, FLIP_RATES):
        agree = rng.binomial(n, (1 - eps) ** 2 + eps**2, trials)
        cells.append(summarise("agreement", "2 annotators", n, eps, agreement_flip_rate_bounds(agree / n, n)))
    return cells


#: The 8 annotation patterns of three annotators (rows), and how many labels 1 each has.
PATTERNS_3 = np.array(list(itertools.product((0, 1), repeat=3)))


def dawid_skene_cells(trials: int, rng: np.random.Generator, *, n_resamples: int = 200) -> list[Cell]:
    cells = []
    k1 = PATTERNS_3.sum(axis=1)
    for n, eps in itertools.product(SIZES, FLIP_RATES):
        # P(pattern) = ½ P(pattern | z = 1) + ½ P(pattern | z = 0), each annotator flipping with probability ε.
        p = 0.5 * (1 - eps) ** k1 * eps ** (3 - k1) + 0.5 * eps**k1 * (1 - eps) ** (3 - k1)
        counts = rng.multinomial(n, p, size=trials)
        b = dawid_skene_flip_rate_bounds(PATTERNS_3, counts, n_resamples=n_resamples, seed=int(rng.integers(2**31)))
        cells.append(summarise("dawid_skene", "3 annotators", n, eps, b))
    return cells


def _norm_ppf(p: float) -> float:
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if 0.5 * (1 + erf(mid / sqrt(2))) < p else (lo, mid)
    return 0.5 * (lo + hi)


def confident_learning_cells(trials: int, rng: np.random.Generator) -> list[Cell]:
    cells = []
    for (name, scale), n, e, eps in itertools.product(CL_CALIBRATIONS.items(), SIZES, SCORER_ERRORS, FLIP_RATES):
        mu = _norm_ppf(1 - e)
        true = rng.integers(0, 2, (trials, n))
        labels = np.where(rng.random((trials, n)) < eps, 1 - true, true)
        margin = (2 * true - 1) * mu + rng.standard_normal((trials, n))
        q = 1 / (1 + np.exp(-2 * mu * margin * scale))  # P(true = 1 | margin), calibrated when scale = 1
        p_label = (1 - eps) * q + eps * (1 - q)
        b, _, _ = confident_learning_flip_rate_bounds(labels, p_label)
        cells.append(summarise("confident_learning", f"{name}, e={e:.2f}", n, eps, b))
    return cells


def _f(x: float) -> str:
    return "–" if np.isnan(x) else f"{x:.3f}"


def markdown(cells: list[Cell]) -> str:
    head = ("| method | setting | n | ε | trials | coverage | identifiable | accepted | coverage (identifiable) | "
            "coverage (accepted) | accepted & missed | max value | mean width (accepted) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = [
        f"| {c.method} | {c.setting} | {c.n} | {c.flip_rate:.1f} | {c.trials} | {_f(c.coverage)} | {_f(c.identifiable)} | "
        f"{_f(c.accepted)} | {_f(c.coverage_identifiable)} | {_f(c.coverage_accepted)} | {_f(c.accepted_missed)} | "
        f"{_f(c.max_value)} | {_f(c.mean_width_accepted)} |"
        for c in cells
    ]
    return head + "\n".join(rows) + "\n"


def summary(cells: list[Cell]) -> str:
    """One line per method: cells, trials, worst coverage, refusal share, worst accepted coverage."""
    out = ["| method | cells | trials per cell | min coverage (all trials) | min coverage (accepted, cells with >= 50% accepted) | "
           "refused (not accepted), all cells | max accepted & missed | max value |",
           "|---|---|---|---|---|---|---|---|"]
    for method in dict.fromkeys(c.method for c in cells):
        group = [c for c in cells if c.method == method]
        acc = [c.coverage_accepted for c in group if c.accepted >= 0.5]
        out.append(
            f"| {method} | {len(group)} | {group[0].trials} | {min(c.coverage for c in group):.3f} | "
            f"{_f(min(acc) if acc else float('nan'))} | {1 - np.mean([c.accepted for c in group]):.3f} | "
            f"{max(c.accepted_missed for c in group):.3f} | {_f(np.nanmax([c.max_value for c in group]))} |"
        )
    return "\n".join(out) + "\n"


def run(*, trials: int, ds_trials: int, seed: int) -> list[Cell]:
    rng = np.random.default_rng(seed)
    return (scorer_cells(trials, rng) + agreement_cells(trials, rng) + dawid_skene_cells(ds_trials, rng)
            + confident_learning_cells(trials, rng))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--ds-trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cells = run(trials=args.trials, ds_trials=args.ds_trials, seed=args.seed)
    text = summary(cells) + "\n" + markdown(cells) + f"\n({time.perf_counter() - start:.1f} s)\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
