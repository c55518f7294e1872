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
