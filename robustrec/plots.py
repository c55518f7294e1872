"""Plots (matplotlib, Agg backend, PNG files): pictures of noise that a table of numbers hides.

- :func:`loss_distributions`: global and per-user training-loss distributions of clean vs noisy
  interactions — the observation PLD (Zhang et al., WWW 2025, section 3) rests on: noisy interactions
  overlap with clean ones in the global loss distribution but stand out within their user's own.
- :func:`metric_vs_noise`: a clean-test metric against the injected noise ratio, one line per method
  (written by ``python -m robustrec compare --inject-noise R1 R2 ...``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from robustrec.atomic import save_figure  # noqa: E402
from robustrec.diagnostics import standardize_within_users  # noqa: E402


def loss_distributions(
    losses: np.ndarray, noise_mask: np.ndarray, users: np.ndarray, path: str | Path, *, title: str = "",
    bins: int = 60,
) -> Path:
    """Write a two-panel PNG: histogram of the training losses (n,) of clean vs noisy interactions, globally
    and z-scored within each user (``users`` (n,) the user of each interaction). Returns ``path``."""
    losses = np.asarray(losses, dtype=float)
    noise_mask = np.asarray(noise_mask, dtype=bool)
    z = standardize_within_users(losses, np.asarray(users))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, values, label in ((axes[0], losses, "training loss (global)"),
                              (axes[1], z, "training loss z-scored within the user")):
        edges = np.histogram_bin_edges(values[np.isfinite(values)], bins=bins)
        ax.hist(values[~noise_mask], bins=edges, density=True, alpha=0.6, label=f"clean ({(~noise_mask).sum():,})")
        ax.hist(values[noise_mask], bins=edges, density=True, alpha=0.6, label=f"noisy ({noise_mask.sum():,})")
        ax.set_xlabel(label)
        ax.set_ylabel("density")
        ax.legend()
    fig.suptitle(title or "training loss of clean vs noisy interactions")
    fig.tight_layout()
    return save_figure(fig, Path(path))


def metric_vs_noise(
    table: pd.DataFrame, path: str | Path, *, metric: str = "recall@20", method: str = "method",
    ratio: str = "inject_noise",
) -> Path:
    """Write a PNG of ``metric`` against the noise ratio, one line per ``method``; ``table`` holds one row per
    run (several seeds are averaged, their std drawn as error bars). Returns ``path``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, group in table.groupby(method, sort=False):
        stats = group.groupby(ratio)[metric].agg(["mean", "std"]).sort_index()
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=name)
    ax.set_xlabel("injected noise ratio r")
    ax.set_ylabel(f"clean test {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, Path(path))
