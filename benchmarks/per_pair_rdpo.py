"""Per-pair rDPO on simulated annotators, beside global rDPO and DPO (the controlled experiment's setting).

    python benchmarks/per_pair_rdpo.py --seeds 3 --out benchmarks/results/per_pair_rdpo.md

The pairs are the controlled experiment's (``alignment.experiment``: two stories260K continuations per story
opening, the lexicon reward, Bradley–Terry labels). Three simulated annotators judge every training pair, each
reversing the true preference independently with its own rate (``--annotator-rates``, default 0.1 0.2 0.3).
Dawid–Skene (:func:`alignment.flip_rate.pair_flip_rates_from_annotations`) orients each pair by its most
probable preference and gives its posterior flip probability ε_i: near 0 when the annotators agree, larger on a
2–1 split. Three methods train on those pairs (same steps, batch, learning rate, seed):

- ``dpo``: the oriented labels, no correction;
- ``rdpo``: one ε for every pair, the labels' expected flip rate (what ``train --flip-rate auto`` uses here);
- ``rdpo_per_pair``: each pair's own ε_i (``--flip-rate per-pair``).

Reported: the held-out metrics of ``alignment.experiment.evaluate_policy`` (mean true reward of sampled
continuations, KL to the reference, preference accuracy of the implicit reward on held-out clean pairs), mean ±
std over seeds, and the realised share of flipped training labels.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignment.experiment import ExperimentSettings, evaluate_policy, make_experiment_data  # noqa: E402
from alignment.flip_rate import oriented_pairs, pair_flip_rates_from_annotations  # noqa: E402
from alignment.models import load_model  # noqa: E402
from alignment.policy import train_policy  # noqa: E402
from robustrec.atomic import save_text  # noqa: E402
from robustrec.noise import FIRST_BETTER, SECOND_BETTER  # noqa: E402

METHODS = {"dpo": ("dpo", 0.0), "rdpo": ("rdpo", "labels"), "rdpo_per_pair": ("rdpo", "per-pair")}
METRICS = ("reward", "kl", "clean_pref_accuracy")


def annotate(train: pd.DataFrame, rates: list[float], rng: np.random.Generator):
    """(prompts, first, second, codes (n, m), first_is_better (n,)): each pair in a random order, judged by m
    annotators who reverse the true preference with their own rates."""
    n = len(train)
    swap = rng.random(n) < 0.5
    first = np.where(swap, train["rejected"], train["chosen"])
    second = np.where(swap, train["chosen"], train["rejected"])
    first_better = ~swap
    truth = np.where(first_better, FIRST_BETTER, SECOND_BETTER)
    flips = rng.random((n, len(rates))) < np.asarray(rates)
    codes = np.where(flips, 1 - truth[:, None], truth[:, None])
    return list(train["prompt"]), list(first), list(second), codes, first_better


def run_seed(seed: int, args, settings: ExperimentSettings) -> tuple[list[dict], float]:
    model, tokenizer = load_model(args.model)
    data = make_experiment_data(model, tokenizer, settings, seed=seed)
    prompts, first, second, codes, first_better = annotate(data.train, args.annotator_rates,
                                                           np.random.default_rng(seed + 500))
    rates = pair_flip_rates_from_annotations(codes, seed=seed)
    pairs = oriented_pairs(prompts, first, second, rates)
    kept = pairs["row"].to_numpy()
    realised = float(np.mean((rates.labels[kept] == FIRST_BETTER) != first_better[kept]))
    print(f"seed {seed}: {len(pairs)} of {len(codes)} pairs oriented, realised label flip share {realised:.3f}, "
          f"one annotation {rates.estimate}, labels' expected flip rate {rates.label_flip_rate:.3f}", flush=True)
    rows = []
    for method, (loss, flip_rate) in METHODS.items():
        trained_on = pairs if flip_rate == "per-pair" else pairs.drop(columns="flip_rate")
        epsilon = rates.label_flip_rate if flip_rate == "labels" else flip_rate
        tic = time.perf_counter()
        trainer, policy, reference, tok = train_policy(
            trained_on, loss=loss, flip_rate=epsilon, steps=settings.steps, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, beta=settings.beta, seed=seed, model_path=args.model)
        metrics = evaluate_policy(policy, reference, tok, data.eval_prompts, data.eval_pairs, beta=settings.beta,
                                  samples_per_prompt=settings.samples_per_eval_prompt,
                                  max_new_tokens=settings.max_new_tokens, seed=seed + 20_000)
        rows.append({"seed": seed, "method": method, **metrics, "epsilon": epsilon if flip_rate != "per-pair"
                     else float(pairs["flip_rate"].mean()), "seconds": time.perf_counter() - tic})
        print(f"  {method}: " + ", ".join(f"{m} {metrics[m]:.3f}" for m in METRICS), flush=True)
    return rows, realised


def table(frame: pd.DataFrame) -> str:
    lines = ["| method | ε used (mean) | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for method in METHODS:
        rows = frame[frame["method"] == method]
        cells = [f"{rows[m].mean():.3f} ± {rows[m].std(ddof=1) if len(rows) > 1 else 0.0:.3f}" for m in METRICS]
        lines.append(f"| {method} | {rows['epsilon'].mean():.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--annotator-rates", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="Markdown file to write")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    settings = replace(ExperimentSettings(), steps=args.steps)
    rows, realised = [], []
    for seed in range(args.seeds):
        seed_rows, share = run_seed(seed, args, settings)
        rows += seed_rows
        realised.append(share)
    frame = pd.DataFrame(rows)
    text = "\n".join([
        f"# Per-pair rDPO on simulated annotators ({args.seeds} seeds, mean ± std)", "",
        "```", "python benchmarks/per_pair_rdpo.py " + " ".join(sys.argv[1:]), "```", "",
        f"Three annotators reversing the true preference with rates {args.annotator_rates}; pairs oriented by "
        f"Dawid–Skene; realised share of flipped training labels {np.mean(realised):.3f} (per seed "
        f"{', '.join(f'{r:.3f}' for r in realised)}); {settings.steps} steps × batch {settings.batch_size}, lr "
        f"{settings.learning_rate}, β {settings.beta}.", "", table(frame), ""])
    print(text)
    if args.out is not None:
        save_text(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
