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
        g = output.scores[PHI] + math.log(config.phi_prior / (1 - config.phi_prior))
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
