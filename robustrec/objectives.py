"""Training objectives: scores in, a scalar loss out.

A batch row holds one user, its observed item in column 0 and sampled unobserved
items in columns 1..K-1 (``ModelOutput.scores[head]`` of shape (B, K)). Every loss
is one short branch of :func:`objective_loss`; ``LOSSES`` is the one list of names,
reused by validation, the CLI and the tests. The losses' settings are fields of
:class:`robustrec.config.TrainConfig` (``l2``, ``phi_l2``, ``phi_prior``, ``tce_*``, ``rce_beta``).

NBPO's φ score is ``g_ui = p_u·q_i + logit(phi_prior)``: with the φ factors p, q regularised hard
(``phi_l2``) φ stays a weak correction around ``phi_prior`` instead of learning the interaction
pattern itself (the trap described in docs/algorithms.md).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from robustrec.models import PREFERENCE, ModelOutput

if TYPE_CHECKING:
    from robustrec.config import TrainConfig

LOSSES = ("bpr", "bce", "bpo", "nbpo", "tce", "rce")
PHI = "phi"  # NBPO's second factorisation: g_ui, phi_ui = sigma(g_ui) = P(observed unvoted | truly positive)


def heads_for(loss: str) -> tuple[str, ...]:
    """Factorisations the model must learn for ``loss``."""
    return (PREFERENCE, PHI) if loss == "nbpo" else (PREFERENCE,)


def tce_warmup_steps(config: TrainConfig, steps_per_epoch: int | None) -> int:
    """Steps over which T-CE's drop rate grows: ``tce_warmup_steps`` when set, else ``tce_warmup_epochs`` times
    the run's ``steps_per_epoch`` (batches per epoch), rounded.

    The paper's 30,000 steps (Wang et al. 2021; batch 1024, one negative per positive) are 9.2 epochs of its Yelp
    data: a fixed number of steps would be a fraction of an epoch on a small log and many epochs on a big one.
    """
    if config.tce_warmup_steps is not None:
        return config.tce_warmup_steps
    if steps_per_epoch is None:
        raise ValueError("tce: the drop-rate warm-up is set in epochs (tce_warmup_epochs) but the trainer gave no "
                         "steps_per_epoch; pass it to objective_loss, or set tce_warmup_steps")
    return round(config.tce_warmup_epochs * steps_per_epoch)


def tce_drop_rate(config: TrainConfig, step: int, steps_per_epoch: int | None = None) -> float:
    """T-CE's schedule: grows linearly from 0 to ``tce_max_drop`` over the warm-up (:func:`tce_warmup_steps`)."""
    no_warmup = config.tce_warmup_steps == 0 if config.tce_warmup_steps is not None else config.tce_warmup_epochs == 0
    if no_warmup:
        return config.tce_max_drop
    if step == 0 or config.tce_max_drop == 0:  # whatever the warm-up's length
        return 0.0
    warmup = tce_warmup_steps(config, steps_per_epoch)
    return config.tce_max_drop * min(step / max(warmup, 1), 1.0)


def nbpo_unvoted_nll(s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """-log((1 - R) + R·φ) with R = σ(s), φ = σ(g), computed stably.

    1 - σ(s)σ(-g) = (e^{-s} + e^{g} + e^{g-s}) / ((1 + e^{-s})(1 + e^{g})).
    """
    log_num = torch.logsumexp(torch.stack([-s, g, g - s]), dim=0)
    return F.softplus(-s) + F.softplus(g) - log_num


def objective_loss(
    output: ModelOutput, config: TrainConfig, *, step: int = 0, steps_per_epoch: int | None = None
) -> torch.Tensor:
    """Mean loss of one batch.

    Args:
        output: scores (B, K) per head; column 0 observed, columns 1.. sampled unobserved.
        config: which loss and its settings (a :class:`~robustrec.config.TrainConfig`).
        step: global optimisation step (for losses with schedules).
        steps_per_epoch: batches per epoch of the run (T-CE's warm-up is set in epochs).
    """
    scores = output.scores[PREFERENCE]
    positive, negative = scores[:, 0], scores[:, 1:]
    reg = config.l2 * output.sq_norms[PREFERENCE]
    if config.loss == "bpr":
        # Rendle et al. 2009, eq. (BPR-Opt): -log sigma(s_ui - s_uj)
        return F.softplus(negative - positive[:, None]).mean() + reg
    if config.loss in ("bce", "bpo"):
        # point-wise log-likelihood (BPO, Yu & Qin 2020, eq. 3): -log sigma(s_ui) - sum_j log sigma(-s_uj)
        return (F.softplus(-positive) + F.softplus(negative).sum(1)).mean() + reg
    if config.loss == "nbpo":
        # Yu & Qin 2020, eq. 9: observed: R(1-phi); unvoted: (1-R) + R·phi; R = sigma(s), phi = sigma(g)
        g = output.scores[PHI] + phi_logit(config)
        g_pos, g_neg = g[:, 0], g[:, 1:]
        nll = F.softplus(-positive) + F.softplus(g_pos) + nbpo_unvoted_nll(negative, g_neg).sum(1)
        return nll.mean() + reg + config.phi_l2 * output.sq_norms[PHI]
    if config.loss == "tce":
        # Wang et al. 2021, T-CE: drop the floor(drop(step)·B) largest-loss positives of the batch
        pos_loss = F.softplus(-positive)
        n_drop = int(tce_drop_rate(config, step, steps_per_epoch) * pos_loss.numel())
        if n_drop:
            dropped = torch.topk(pos_loss.detach(), n_drop).indices
            pos_loss = pos_loss.index_fill(0, dropped, 0.0)
        return (pos_loss.sum() + F.softplus(negative).sum()) / positive.numel() + reg
    if config.loss == "rce":
        # Wang et al. 2021, R-CE: positives weighted by sigma(s)^beta, negatives by (1 - sigma(s))^beta, detached
        w_pos = torch.sigmoid(positive).detach().pow(config.rce_beta)
        w_neg = torch.sigmoid(-negative).detach().pow(config.rce_beta)
        return (w_pos * F.softplus(-positive) + (w_neg * F.softplus(negative)).sum(1)).mean() + reg
    raise AssertionError(f"unhandled loss {config.loss!r}")  # TrainConfig validates names


# ---------------------------------------------------------------------------------------------
# Per-row score gradients for the fused CPU training kernel (robustrec.kernels).
#
# Plain scalar code (``math`` only, no torch) that numba compiles into the kernel; each branch mirrors
# one branch of objective_loss and is checked against autograd through it (tests/recommender/
# test_kernel.py). A row is one user's scores s[b] (1 + K,) against its observed item (column 0) and K
# sampled unobserved items; NBPO also gets the raw φ scores g[b] (1 + K,) = p_u·q_i, to which the
# prior's logit is added here. A row function writes d(row loss)/ds into ds (NBPO: d/dg into dg) and
# returns the row loss as (observed-item term, sampled-items term). objective_loss's batch loss is
# the mean of the rows' losses plus the L2 terms on the batch's embeddings, which the kernel adds. The row
# functions index (B, 1 + K) batch arrays by the row b (no per-row array views in the kernel's hot loop).

LOSS_CODES = {name: code for code, name in enumerate(LOSSES)}
_BPR, _NBPO, _RCE = LOSS_CODES["bpr"], LOSS_CODES["nbpo"], LOSS_CODES["rce"]


def softplus_scalar(x: float) -> float:
    """log(1 + e^x) without overflow."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def sigmoid_scalar(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def softplus_sigmoid(x: float) -> tuple[float, float]:
    """(softplus(x), σ(x)), the values of softplus_scalar and sigmoid_scalar, from one exponential e^{−|x|} and
    with the sign chosen by a select: no branch on the sign of a score, which mispredicts half the time."""
    e = math.exp(-abs(x))
    numerator = 1.0 if x >= 0.0 else e
    return max(x, 0.0) + math.log1p(e), numerator / (1.0 + e)


def bpr_row(s, g, ds, dg, b, logit_prior, rce_beta):
    """BPR: mean over k of softplus(s_k − s_0); pairwise, so the whole loss is the sampled-items term."""
    n_neg = s.shape[1] - 1
    total, d_observed = 0.0, 0.0
    for k in range(1, n_neg + 1):
        loss, slope = softplus_sigmoid(float(s[b, k]) - float(s[b, 0]))
        total += loss
        d = slope / n_neg
        ds[b, k] = d
        d_observed -= d
    ds[b, 0] = d_observed
    return 0.0, total / n_neg


def pointwise_row(s, g, ds, dg, b, logit_prior, rce_beta):
    """BCE / BPO / T-CE before its drop: softplus(−s_0) + Σ_k softplus(s_k)."""
    observed, slope = softplus_sigmoid(-float(s[b, 0]))
    ds[b, 0] = -slope
    sampled = 0.0
    for k in range(1, s.shape[1]):
        loss, ds[b, k] = softplus_sigmoid(float(s[b, k]))
        sampled += loss
    return observed, sampled


def nbpo_row(s, g, ds, dg, b, logit_prior, rce_beta):
    """NBPO: −log R(1−φ) for the observed item, −log((1−R) + Rφ) for each sampled one (R = σ(s), φ = σ(g)).

    With A = e^{−s}, G = e^{g} and Z = A + G + AG = (1 + A)(1 + G) − 1: the sampled term is
    softplus(−s) + softplus(g) − log Z = log(1 + 1/Z), its derivatives σ(−s)/Z and −σ(g)/Z (the posterior
    pull toward a hidden positive). Scores beyond ±30 take the overflow-safe log-sum-exp form.
    """
    s0, g0 = float(s[b, 0]), float(g[b, 0]) + logit_prior
    observed_s, slope_s = softplus_sigmoid(-s0)
    observed_g, slope_g = softplus_sigmoid(g0)
    ds[b, 0] = -slope_s
    dg[b, 0] = slope_g
    sampled = 0.0
    for k in range(1, s.shape[1]):
        sk, gk = float(s[b, k]), float(g[b, k]) + logit_prior
        if abs(sk) < 30.0 and abs(gk) < 30.0:
            a, e_g = math.exp(-sk), math.exp(gk)
            inv_z = 1.0 / (a + e_g + a * e_g)
            sampled += math.log1p(inv_z)
            ds[b, k] = a / (1.0 + a) * inv_z
            dg[b, k] = -e_g / (1.0 + e_g) * inv_z
        else:
            top = max(-sk, max(gk, gk - sk))
            log_z = top + math.log(math.exp(-sk - top) + math.exp(gk - top) + math.exp(gk - sk - top))
            loss_s, slope_s = softplus_sigmoid(-sk)
            loss_g, slope_g = softplus_sigmoid(gk)
            sampled += loss_s + loss_g - log_z
            inv_z = math.exp(-log_z)
            ds[b, k] = slope_s * inv_z
            dg[b, k] = -slope_g * inv_z
    return observed_s + observed_g, sampled


def rce_row(s, g, ds, dg, b, logit_prior, rce_beta):
    """R-CE: BCE with detached weights σ(s_0)^β on the observed item and (1 − σ(s_k))^β on sampled ones."""
    s0 = float(s[b, 0])
    w = sigmoid_scalar(s0) ** rce_beta
    observed, slope = softplus_sigmoid(-s0)
    ds[b, 0] = -w * slope
    sampled = 0.0
    for k in range(1, s.shape[1]):
        x = float(s[b, k])
        w_k = sigmoid_scalar(-x) ** rce_beta
        loss, slope_k = softplus_sigmoid(x)
        sampled += w_k * loss
        ds[b, k] = w_k * slope_k
    return w * observed, sampled


def row_gradients(code, s, g, ds, dg, b, logit_prior, rce_beta):
    """Row ``b`` of the loss ``LOSS_CODES[name] == code``: reads s[b] (and g[b]) of (B, 1 + K) scores, writes
    ds[b] (and dg[b]), returns (observed-item term, sampled-items term); see the comment above."""
    if code == _BPR:
        return bpr_row(s, g, ds, dg, b, logit_prior, rce_beta)
    if code == _NBPO:
        return nbpo_row(s, g, ds, dg, b, logit_prior, rce_beta)
    if code == _RCE:
        return rce_row(s, g, ds, dg, b, logit_prior, rce_beta)
    return pointwise_row(s, g, ds, dg, b, logit_prior, rce_beta)  # bce, bpo, tce


def kth_largest(values, k):
    """The k-th largest of ``values`` (n,) for 1 <= k <= n, by quickselect; reorders ``values`` in place."""
    target, lo, hi = k - 1, 0, values.shape[0] - 1
    while lo < hi:
        pivot = values[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:  # Hoare partition into descending order
            while values[i] > pivot:
                i += 1
            while values[j] < pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break
    return values[target]


def tce_dropped(observed_losses, n_drop, dropped, scratch):
    """T-CE's drop: mark in ``dropped`` (B,) bool the ``n_drop`` rows with the largest observed-item loss
    (``observed_losses`` (B,), only read); ties at the threshold go to the earliest rows. ``scratch`` (B,) float64:
    working space (the kernel allocates nothing while it trains)."""
    n = observed_losses.shape[0]
    dropped[:] = False
    if n_drop <= 0:
        return
    if n_drop >= n:
        dropped[:] = True
        return
    for b in range(n):  # (an elementwise copy: numba's array assignment may allocate)
        scratch[b] = observed_losses[b]
    threshold = kth_largest(scratch, n_drop)
    left = n_drop
    for b in range(n):
        if observed_losses[b] > threshold:
            dropped[b] = True
            left -= 1
    for b in range(n):
        if left == 0:
            break
        if observed_losses[b] == threshold and not dropped[b]:
            dropped[b] = True
            left -= 1


def phi_logit(config: TrainConfig) -> float:
    """NBPO's offset of the φ scores: logit(phi_prior), so φ = phi_prior where p_u·q_i = 0."""
    return math.log(config.phi_prior / (1 - config.phi_prior))


# The scalar functions above that the kernel compiles (robustrec.kernels registers them with numba).
KERNEL_FUNCTIONS = (softplus_scalar, sigmoid_scalar, softplus_sigmoid, bpr_row, pointwise_row, nbpo_row, rce_row, row_gradients,
                    kth_largest, tce_dropped)
