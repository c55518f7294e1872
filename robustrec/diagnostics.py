"""How a trained model treats known noisy training interactions.

Used by a run with a known-noise mask (:mod:`robustrec.runs`: injected noise or DeCA's real noise), by the
plots (:mod:`robustrec.plots`) and by the noise-share estimate (:mod:`robustrec.crossfit`):

- :func:`training_losses`: each training interaction's BPR loss against sampled unobserved items;
- :func:`standardize_within_users`: values z-scored within each user (PLD's per-user view);
- :func:`auc`: ROC AUC of a score for telling noisy from clean interactions;
- :func:`noise_diagnostics`: top-k shares and AUCs of noisy vs clean interactions for a model.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.stats import rankdata

from robustrec.evaluate import top_k_items
from robustrec.samplers import UniformNegativeSampler


def training_losses(
    user_factors: torch.Tensor, item_factors: torch.Tensor, train: sp.csr_matrix, *, n_negatives: int = 4,
    seed: int = 0, chunk: int = 1 << 18,
) -> np.ndarray:
    """(n_train,) BPR loss of every training interaction, in CSR order: mean over ``n_negatives`` uniform
    unobserved items j of softplus(s_uj − s_ui) (the quantity whose distribution PLD looks at)."""
    train = sp.csr_matrix(train)
    users = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
    items = train.indices.astype(np.int64)
    negatives = UniformNegativeSampler(train).sample(users, n_negatives, np.random.default_rng(seed))
    out = np.empty(users.size)
    with torch.no_grad():
        for start in range(0, users.size, chunk):
            sl = slice(start, start + chunk)
            u = user_factors[torch.from_numpy(users[sl])]
            cols = torch.from_numpy(np.concatenate([items[sl, None], negatives[sl]], axis=1))
            s = (u.unsqueeze(1) * item_factors[cols]).sum(-1)
            out[sl] = torch.nn.functional.softplus(s[:, 1:] - s[:, :1]).mean(1).double().cpu().numpy()
    return out


def standardize_within_users(values: np.ndarray, users: np.ndarray) -> np.ndarray:
    """(n,) values z-scored within each user's own values (users with one value get 0)."""
    n = np.bincount(users).astype(float)
    mean = np.bincount(users, values) / np.maximum(n, 1)
    var = np.bincount(users, (values - mean[users]) ** 2) / np.maximum(n, 1)
    std = np.sqrt(var)[users]
    return np.where(std > 0, (values - mean[users]) / np.where(std > 0, std, 1), 0.0)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of ``scores`` for the boolean labels ``positive`` (Mann-Whitney, ties averaged); NaN if one class."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def noise_diagnostics(
    user_factors: torch.Tensor, item_factors: torch.Tensor, train: sp.csr_matrix, noise_mask: np.ndarray,
    *, k: int = 20, batch_size: int = 1024, losses: np.ndarray | None = None,
) -> dict[str, float]:
    """How a trained model treats known noisy training interactions.

    Returns ``noisy_in_top{k}`` / ``clean_in_top{k}``: share of the noisy / clean training interactions
    ranked in their user's top-k (training items NOT masked: they are the ranked objects here);
    ``noise_auc_global`` / ``noise_auc_per_user``: AUC of the training loss (raw / z-scored within the
    user) for telling noisy from clean interactions; ``n_noisy``.
    """
    train = sp.csr_matrix(train)
    users = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
    keys = users * train.shape[1] + train.indices.astype(np.int64)
    in_top = np.zeros(keys.size, dtype=bool)
    active = np.flatnonzero(np.diff(train.indptr) > 0)
    for start in range(0, active.size, batch_size):
        batch = active[start : start + batch_size]
        ids, _ = top_k_items(user_factors, item_factors, batch, k)
        top_keys = np.sort((batch[:, None] * train.shape[1] + ids.cpu().numpy()).ravel())
        lo, hi = np.searchsorted(keys, [top_keys[0], top_keys[-1] + 1])
        in_top[lo:hi] = np.isin(keys[lo:hi], top_keys)
    if losses is None:
        losses = training_losses(user_factors, item_factors, train)
    noise_mask = np.asarray(noise_mask, dtype=bool)
    return {
        f"noisy_in_top{k}": float(in_top[noise_mask].mean()) if noise_mask.any() else float("nan"),
        f"clean_in_top{k}": float(in_top[~noise_mask].mean()) if (~noise_mask).any() else float("nan"),
        "noise_auc_global": auc(losses, noise_mask),
        "noise_auc_per_user": auc(standardize_within_users(losses, users), noise_mask),
        "n_noisy": int(noise_mask.sum()),
    }
