"""Training objectives: scores in, a scalar loss out.

A batch row holds one user, its observed item in column 0 and sampled unobserved
items in columns 1..K-1 (``ModelOutput.scores[head]`` of shape (B, K)). Every loss
is one short branch of :func:`objective_loss`; ``LOSSES`` is the one list of names,
reused by validation, the CLI and the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from robustrec.models import PREFERENCE, ModelOutput

LOSSES = ("bpr", "bce", "bpo", "nbpo", "tce", "rce")
FLIP = "flip"  # NBPO's second factorisation: g_ui, phi_ui = sigma(g_ui)


@dataclass(frozen=True)
class ObjectiveConfig:
    """One loss and its settings (defaults from the papers, see ../shared/DESIGN.md).

    NBPO's flip score is ``g_ui = p_u·q_i + logit(flip_prior)``: with the flip factors p, q
    regularised hard (``flip_l2``) φ stays a weak correction around ``flip_prior`` instead of
    learning the interaction pattern itself (the trap described in DESIGN.md).
    """

    loss: str = field(default="bpr", metadata={"help": f"one of {LOSSES}"})
    l2: float = field(default=1e-4, metadata={"help": "L2 weight on the batch's preference embeddings (NBPO: lambda_r)"})
    flip_l2: float = field(default=0.1, metadata={"help": "NBPO: L2 weight on the batch's flip embeddings (lambda_phi)"})
    flip_prior: float = field(default=0.1, metadata={"help": "NBPO: phi where the flip factors are 0 (initial phi)"})
    tce_max_drop: float = field(default=0.2, metadata={"help": "T-CE: final share of a batch's positives dropped"})
    tce_warmup_steps: int = field(default=30_000, metadata={"help": "T-CE: steps over which the drop rate grows to its maximum"})
    rce_beta: float = field(default=0.25, metadata={"help": "R-CE: exponent beta of the detached sigma(s)^beta weights"})

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; expected one of {LOSSES}")
        for name in ("l2", "flip_l2", "rce_beta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.flip_prior < 1:
            raise ValueError(f"flip_prior must be in (0, 1), got {self.flip_prior}")
        if not 0 <= self.tce_max_drop < 1:
            raise ValueError(f"tce_max_drop must be in [0, 1), got {self.tce_max_drop}")
        if self.tce_warmup_steps < 0:
            raise ValueError(f"tce_warmup_steps must be >= 0, got {self.tce_warmup_steps}")


def heads_for(loss: str) -> tuple[str, ...]:
    """Factorisations the model must learn for ``loss``."""
    return (PREFERENCE, FLIP) if loss == "nbpo" else (PREFERENCE,)


def tce_drop_rate(config: ObjectiveConfig, step: int) -> float:
    """T-CE's schedule: grows linearly from 0 to ``tce_max_drop`` over ``tce_warmup_steps``."""
    if config.tce_warmup_steps == 0:
        return config.tce_max_drop
    return config.tce_max_drop * min(step / config.tce_warmup_steps, 1.0)


def nbpo_unvoted_nll(s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """-log((1 - R) + R·φ) with R = σ(s), φ = σ(g), computed stably.

    1 - σ(s)σ(-g) = (e^{-s} + e^{g} + e^{g-s}) / ((1 + e^{-s})(1 + e^{g})).
    """
    log_num = torch.logsumexp(torch.stack([-s, g, g - s]), dim=0)
    return F.softplus(-s) + F.softplus(g) - log_num


def objective_loss(output: ModelOutput, config: ObjectiveConfig, *, step: int = 0) -> torch.Tensor:
    """Mean loss of one batch.

    Args:
        output: scores (B, K) per head; column 0 observed, columns 1.. sampled unobserved.
        config: which loss and its settings.
        step: global optimisation step (for losses with schedules).
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
        flip = output.scores[FLIP] + math.log(config.flip_prior / (1 - config.flip_prior))
        g_pos, g_neg = flip[:, 0], flip[:, 1:]
        nll = F.softplus(-positive) + F.softplus(g_pos) + nbpo_unvoted_nll(negative, g_neg).sum(1)
        return nll.mean() + reg + config.flip_l2 * output.sq_norms[FLIP]
    if config.loss == "tce":
        # Wang et al. 2021, T-CE: drop the floor(drop(step)·B) largest-loss positives of the batch
        pos_loss = F.softplus(-positive)
        n_drop = int(tce_drop_rate(config, step) * pos_loss.numel())
        if n_drop:
            dropped = torch.topk(pos_loss.detach(), n_drop).indices
            pos_loss = pos_loss.index_fill(0, dropped, 0.0)
        return (pos_loss.sum() + F.softplus(negative).sum()) / positive.numel() + reg
    if config.loss == "rce":
        # Wang et al. 2021, R-CE: positives weighted by sigma(s)^beta, negatives by (1 - sigma(s))^beta, detached
        w_pos = torch.sigmoid(positive).detach().pow(config.rce_beta)
        w_neg = torch.sigmoid(-negative).detach().pow(config.rce_beta)
        return (w_pos * F.softplus(-positive) + (w_neg * F.softplus(negative)).sum(1)).mean() + reg
    raise AssertionError(f"unhandled loss {config.loss!r}")  # __post_init__ validates names


# ---------------------------------------------------------------------------------------------
# Per-row score gradients for the fused CPU training kernel (robustrec.kernels).
#
# Plain scalar code (``math`` only, no torch) that numba compiles into the kernel; each branch mirrors
# one branch of objective_loss and is checked against autograd through it (tests/recommender/
# test_kernel.py). A row is one user's scores s[b] (1 + K,) against its observed item (column 0) and K
# sampled unobserved items; NBPO also gets the raw flip scores g[b] (1 + K,) = p_u·q_i, to which the
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


def bpr_row(s, g, ds, dg, b, flip_logit, rce_beta):
    """BPR: mean over k of softplus(s_k − s_0); pairwise, so the whole loss is the sampled-items term."""
    n_neg = s.shape[1] - 1
    total, d_observed = 0.0, 0.0
    for k in range(1, n_neg + 1):
        x = float(s[b, k]) - float(s[b, 0])
        total += softplus_scalar(x)
        d = sigmoid_scalar(x) / n_neg
        ds[b, k] = d
        d_observed -= d
    ds[b, 0] = d_observed
    return 0.0, total / n_neg


def pointwise_row(s, g, ds, dg, b, flip_logit, rce_beta):
    """BCE / BPO / T-CE before its drop: softplus(−s_0) + Σ_k softplus(s_k)."""
    s0 = float(s[b, 0])
    ds[b, 0] = -sigmoid_scalar(-s0)
    sampled = 0.0
    for k in range(1, s.shape[1]):
        x = float(s[b, k])
        sampled += softplus_scalar(x)
        ds[b, k] = sigmoid_scalar(x)
    return softplus_scalar(-s0), sampled


def nbpo_row(s, g, ds, dg, b, flip_logit, rce_beta):
    """NBPO: −log R(1−φ) for the observed item, −log((1−R) + Rφ) for each sampled one (R = σ(s), φ = σ(g)).

    With A = e^{−s}, G = e^{g} and Z = A + G + AG = (1 + A)(1 + G) − 1: the sampled term is
    softplus(−s) + softplus(g) − log Z = log(1 + 1/Z), its derivatives σ(−s)/Z and −σ(g)/Z (the posterior
    pull toward a hidden positive). Scores beyond ±30 take the overflow-safe log-sum-exp form.
    """
    s0, g0 = float(s[b, 0]), float(g[b, 0]) + flip_logit
    ds[b, 0] = -sigmoid_scalar(-s0)
    dg[b, 0] = sigmoid_scalar(g0)
    sampled = 0.0
    for k in range(1, s.shape[1]):
        sk, gk = float(s[b, k]), float(g[b, k]) + flip_logit
        if abs(sk) < 30.0 and abs(gk) < 30.0:
            a, e_g = math.exp(-sk), math.exp(gk)
            inv_z = 1.0 / (a + e_g + a * e_g)
            sampled += math.log1p(inv_z)
            ds[b, k] = a / (1.0 + a) * inv_z
            dg[b, k] = -e_g / (1.0 + e_g) * inv_z
        else:
            top = max(-sk, max(gk, gk - sk))
            log_z = top + math.log(math.exp(-sk - top) + math.exp(gk - top) + math.exp(gk - sk - top))
            sampled += softplus_scalar(-sk) + softplus_scalar(gk) - log_z
            inv_z = math.exp(-log_z)
            ds[b, k] = sigmoid_scalar(-sk) * inv_z
            dg[b, k] = -sigmoid_scalar(gk) * inv_z
    return softplus_scalar(-s0) + softplus_scalar(g0), sampled


def rce_row(s, g, ds, dg, b, flip_logit, rce_beta):
    """R-CE: BCE with detached weights σ(s_0)^β on the observed item and (1 − σ(s_k))^β on sampled ones."""
    s0 = float(s[b, 0])
    w = sigmoid_scalar(s0) ** rce_beta
    ds[b, 0] = -w * sigmoid_scalar(-s0)
    sampled = 0.0
    for k in range(1, s.shape[1]):
        x = float(s[b, k])
        w_k = sigmoid_scalar(-x) ** rce_beta
        sampled += w_k * softplus_scalar(x)
        ds[b, k] = w_k * sigmoid_scalar(x)
    return w * softplus_scalar(-s0), sampled


def row_gradients(code, s, g, ds, dg, b, flip_logit, rce_beta):
    """Row ``b`` of the loss ``LOSS_CODES[name] == code``: reads s[b] (and g[b]) of (B, 1 + K) scores, writes
    ds[b] (and dg[b]), returns (observed-item term, sampled-items term); see the comment above."""
    if code == _BPR:
        return bpr_row(s, g, ds, dg, b, flip_logit, rce_beta)
    if code == _NBPO:
        return nbpo_row(s, g, ds, dg, b, flip_logit, rce_beta)
    if code == _RCE:
        return rce_row(s, g, ds, dg, b, flip_logit, rce_beta)
    return pointwise_row(s, g, ds, dg, b, flip_logit, rce_beta)  # bce, bpo, tce


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


def tce_dropped(observed_losses, n_drop, dropped):
    """T-CE's drop: mark in ``dropped`` (B,) bool the ``n_drop`` rows with the largest observed-item loss
    (``observed_losses`` (B,)); ties at the threshold go to the earliest rows."""
    n = observed_losses.shape[0]
    dropped[:] = False
    if n_drop <= 0:
        return
    if n_drop >= n:
        dropped[:] = True
        return
    threshold = kth_largest(observed_losses.copy(), n_drop)
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


def flip_logit(config: ObjectiveConfig) -> float:
    """NBPO's offset of the flip scores: logit(flip_prior), so φ = flip_prior where p_u·q_i = 0."""
    return math.log(config.flip_prior / (1 - config.flip_prior))


# The scalar functions above that the kernel compiles (robustrec.kernels registers them with numba).
KERNEL_FUNCTIONS = (softplus_scalar, sigmoid_scalar, bpr_row, pointwise_row, nbpo_row, rce_row, row_gradients,
                    kth_largest, tce_dropped)
