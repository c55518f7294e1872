"""The NBPO paper's training protocol, re-implemented in plain PyTorch for its Amazon split (used by
``reproduce_papers.py nbpo-protocol``).

What the authors' code does (Wenhui-Yu/NBPO, ``_BPR.py`` and ``_NBPO.py``, read for the protocol, not copied):
MF with 50 factors, initialised uniform in [0, 1) / sqrt(50) (all positive); NBPO's φ factors P, Q start at
±5·U[0, 1) / sqrt(50), so φ = σ(P·Q) starts near σ(−6.25) ≈ 0.002; each epoch walks the training pairs in
file order in batches of 5,000, with 4 uniform unvoted items per pair; the gradient is *summed* over the batch,
the observed item's term is counted once per sampled item, and every row of every matrix is decayed by
``lr · λ`` at every batch (weight decay on the whole matrices, λ_r = 1, λ_φ = 5 for Amazon); plain gradient
ascent with lr 0.05, multiplied by 0.99 after each epoch, 200 epochs; F1@K and NDCG@K over all items with the
training items masked, every epoch.

Two NBPO updates are offered: ``likelihood`` — the exact gradient of the paper's likelihood (eq. 9) — and
``authors`` — the update the authors' code applies, which is not that gradient: for an observed item it moves
s by (1−φ)(1−R) and g by −φR, for an unvoted one s by φ(1−R) − R and g by (1−φ)R (the exact ones are (1−R),
−φ, −R(1−R)(1−φ)/(1−R+Rφ) and Rφ(1−φ)/(1−R+Rφ)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from robustrec.evaluate import per_user_metrics
from robustrec.samplers import UniformNegativeSampler

UPDATES = ("likelihood", "authors")


@dataclass(frozen=True)
class Protocol:
    loss: str = "bpr"  # "bpr" or "nbpo"
    update: str = "likelihood"  # nbpo only: one of UPDATES
    dim: int = 50
    lr: float = 0.05
    lr_decay: float = 0.99
    l2: float = 1.0  # lambda_r
    phi_l2: float = 5.0  # lambda_phi
    negatives: int = 4
    batch_size: int = 5000
    epochs: int = 200
    seed: int = 0


def _init(rows: int, dim: int, gen: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.rand(rows, dim, generator=gen) / math.sqrt(dim)


def f1_and_ndcg(users, items, train, part, ks=(5, 10, 20)) -> dict[str, float]:
    """The NBPO paper's metrics of factors ``users`` (n_users, D) and ``items`` (n_items, D) on the relevant items
    ``part`` with ``train`` masked: per-user F1@K = 2PR/(P+R) and NDCG@K, averaged over the users of ``part``."""
    frame = per_user_metrics(users, items, train, part, ks=ks)
    out = {}
    for k in ks:
        p, r = frame[f"precision@{k}"], frame[f"recall@{k}"]
        out[f"F1@{k}"] = float(np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0).mean())
        out[f"NDCG@{k}"] = float(frame[f"ndcg@{k}"].mean())
    return out


def train(protocol: Protocol, train_m: sp.csr_matrix, validation: sp.csr_matrix, test: sp.csr_matrix) -> dict:
    """Train as the authors did; returns the test metrics at the epoch of best validation NDCG@20 (``selected``),
    the best test NDCG@20 over epochs (``best_test_ndcg20``: what choosing the epoch on the test part gives) and
    the per-epoch history."""
    gen = torch.Generator().manual_seed(protocol.seed)
    rng = np.random.default_rng(protocol.seed)
    n_users, n_items = train_m.shape
    U, V = _init(n_users, protocol.dim, gen), _init(n_items, protocol.dim, gen)
    P = _init(n_users, protocol.dim, gen, 5.0)
    Q = -_init(n_items, protocol.dim, gen, 5.0)
    sampler = UniformNegativeSampler(train_m)
    coo = train_m.tocoo()
    order = np.lexsort((coo.col, coo.row))  # the file's order: user by user
    pos_u, pos_i = coo.row[order].astype(np.int64), coo.col[order].astype(np.int64)
    lr, history, best = protocol.lr, [], None
    for epoch in range(1, protocol.epochs + 1):
        lr *= protocol.lr_decay  # the authors decay before the epoch's first batch
        for start in range(0, pos_u.size, protocol.batch_size):
            u = torch.from_numpy(pos_u[start:start + protocol.batch_size])
            i = torch.from_numpy(pos_i[start:start + protocol.batch_size])
            j = torch.from_numpy(sampler.sample(u.numpy(), protocol.negatives, rng))  # (B, K)
            ds_i, ds_j, dg_i, dg_j = _score_steps(protocol, U, V, P, Q, u, i, j)
            dU, dV = _factor_steps(U, V, u, i, j, ds_i, ds_j)
            U, V = U + lr * (dU - protocol.l2 * U), V + lr * (dV - protocol.l2 * V)
            if protocol.loss == "nbpo":
                dP, dQ = _factor_steps(P, Q, u, i, j, dg_i, dg_j)
                P, Q = P + lr * (dP - protocol.phi_l2 * P), Q + lr * (dQ - protocol.phi_l2 * Q)
        if not torch.isfinite(U).all():
            raise FloatingPointError(f"{protocol} diverged in epoch {epoch}")
        valid = f1_and_ndcg(U, V, train_m, validation)
        row = {"epoch": epoch, "valid_NDCG@20": valid["NDCG@20"]}
        row.update({f"test_{k}": v for k, v in f1_and_ndcg(U, V, train_m, test).items()})
        history.append(row)
        if best is None or row["valid_NDCG@20"] > best["valid_NDCG@20"]:
            best = row
    return {"selected": best, "best_test_ndcg20": max(r["test_NDCG@20"] for r in history), "history": history}


def _factor_steps(A, B, u, i, j, d_i, d_j):
    """Ascent directions of user factors A and item factors B from the score steps d_i (n,) of the observed pairs
    and d_j (n, K) of the sampled pairs (the chain rule of s = a·b, summed over the batch)."""
    dA, dB = torch.zeros_like(A), torch.zeros_like(B)
    au, bi, bj = A[u], B[i], B[j]  # (n, D), (n, D), (n, K, D)
    dA.index_add_(0, u, d_i[:, None] * bi + (d_j[:, :, None] * bj).sum(1))
    dB.index_add_(0, i, d_i[:, None] * au)
    dB.index_add_(0, j.reshape(-1), (d_j[:, :, None] * au[:, None, :]).reshape(-1, A.shape[1]))
    return dA, dB


def _score_steps(protocol: Protocol, U, V, P, Q, u, i, j):
    """Per-pair ascent steps of the scores: (ds_i (n,), ds_j (n, K), dg_i, dg_j) — the derivatives of the
    log-likelihood (BPR; NBPO ``likelihood``) or the authors' NBPO update. The observed item's step counts once
    per sampled item, as in the authors' loop."""
    eu = U[u]
    s_i = (eu * V[i]).sum(-1)
    s_j = torch.einsum("nd,nkd->nk", eu, V[j])
    k = j.shape[1]
    if protocol.loss == "bpr":
        w = torch.sigmoid(s_j - s_i[:, None])  # d log sigma(s_i - s_j) / d s_i
        return w.sum(1), -w, None, None
    pu = P[u]
    r_i, f_i = torch.sigmoid(s_i), torch.sigmoid((pu * Q[i]).sum(-1))
    r_j, f_j = torch.sigmoid(s_j), torch.sigmoid(torch.einsum("nd,nkd->nk", pu, Q[j]))
    if protocol.update == "likelihood":  # log R(1 - phi) and log(1 - R(1 - phi))
        z = 1 - r_j * (1 - f_j)
        return k * (1 - r_i), -r_j * (1 - r_j) * (1 - f_j) / z, -k * f_i, r_j * f_j * (1 - f_j) / z
    return k * (1 - f_i) * (1 - r_i), f_j * (1 - r_j) - r_j, -k * f_i * r_i, (1 - f_j) * r_j
