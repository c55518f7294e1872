"""Training objectives: scores in, a scalar loss out.

A batch row holds one user, its observed item in column 0 and sampled unobserved
items in columns 1..K-1 (``ModelOutput.scores[head]`` of shape (B, K)). Every loss
is one short branch of :func:`objective_loss`; ``LOSSES`` is the one list of names,
reused by validation, the CLI and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from robustrec.models import PREFERENCE, ModelOutput

LOSSES = ("bpr", "bce")


@dataclass(frozen=True)
class ObjectiveConfig:
    loss: str = field(default="bpr", metadata={"help": f"one of {LOSSES}"})
    l2: float = field(default=1e-4, metadata={"help": "L2 weight on the batch's preference embeddings"})

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; expected one of {LOSSES}")
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2}")


def heads_for(loss: str) -> tuple[str, ...]:
    """Factorisations the model must learn for ``loss``."""
    return (PREFERENCE,)


def objective_loss(output: ModelOutput, config: ObjectiveConfig, *, step: int = 0) -> torch.Tensor:
    """Mean loss of one batch.

    Args:
        output: scores (B, K) per head; column 0 observed, columns 1.. sampled unobserved.
        config: which loss and its settings.
        step: global optimisation step (for losses with schedules).
    """
    scores = output.scores[PREFERENCE]
    positive, negative = scores[:, :1], scores[:, 1:]
    reg = config.l2 * output.sq_norms[PREFERENCE]
    if config.loss == "bpr":
        # Rendle et al. 2009, eq. (BPR-Opt): -log sigma(s_ui - s_uj)
        return F.softplus(negative - positive).mean() + reg
    if config.loss == "bce":
        # point-wise log-likelihood: -log sigma(s_ui) - sum_j log sigma(-s_uj)
        return (F.softplus(-positive).squeeze(1) + F.softplus(negative).sum(1)).mean() + reg
    raise AssertionError(f"unhandled loss {config.loss!r}")  # __post_init__ validates names
