"""Plots of experiment results (matplotlib, Agg backend: works without a display)."""

from __future__ import annotations

import os
from pathlib import Path

from robustrec.atomic import save_figure

METRIC_LABELS = {"reward": "mean true reward (held-out prompts)", "kl": "KL(π ‖ π_ref), nats",
                 "clean_pref_accuracy": "implicit-reward accuracy, clean pairs"}


def plot_reward_vs_flip_rate(results: dict, path: str | os.PathLike) -> Path:
    """One panel per metric: mean ± std over seeds against the flip rate ε, one line per method.

    ``results`` is what :func:`alignment.experiment.run_experiment` returns. Written atomically (PNG).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = results["flip_rates"]
    keys = [str(float(r)) for r in rates]
    methods = dict.fromkeys(m for k in keys for m in results["results"][k] if m != "estimated_flip_rate")
    fig, axes = plt.subplots(1, len(METRIC_LABELS), figsize=(5 * len(METRIC_LABELS), 4))
    for ax, (metric, label) in zip(axes, METRIC_LABELS.items()):
        for method in methods:
            # a rate where every seed of the method was refused ("auto") has no point
            points = [(r, results["results"][k][method][metric]) for r, k in zip(rates, keys)
                      if metric in results["results"][k].get(method, {})]
            if points:
                ax.errorbar([r for r, _ in points], [m["mean"] for _, m in points],
                            yerr=[m["std"] for _, m in points], marker="o", capsize=3, label=method)
        if metric == "reward":
            ref = results["reference"]["reward"]["mean"]
            ax.axhline(ref, color="grey", linestyle="--", label="reference policy")
        ax.set_xlabel("flip rate ε")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"DPO / cDPO / rDPO under flipped preferences ({results['seeds']} seeds)")
    fig.tight_layout()
    return save_figure(fig, Path(path), dpi=120)
