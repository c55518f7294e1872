"""``RobustDPOConfig``: TRL's ``DPOConfig`` with a loss name and a flip rate, validated before training."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig

from .losses import FLIP_RATE_LOSSES, LOSSES, TRL_LOSS_TYPE, check_flip_rate, check_loss, trl_label_smoothing

AUTO = "auto"


@dataclass
class RobustDPOConfig(DPOConfig):
    """Configuration of :class:`alignment.trainer.RobustDPOTrainer`.

    Everything of :class:`trl.DPOConfig` applies; set ``loss`` and ``flip_rate`` instead of TRL's
    ``loss_type`` and ``label_smoothing``, which are derived from them.
    """

    loss: str = field(
        default="dpo",
        metadata={
            "help": f"Preference loss, one of {', '.join(LOSSES)}: dpo (Rafailov et al. 2023), rdpo (robust DPO, "
            "Chowdhury et al. 2024), cdpo (conservative DPO / label smoothing, Mitchell 2023), ipo (Azar et al. "
            "2023).",
            "choices": list(LOSSES),
        },
    )
    flip_rate: float | str = field(
        default=0.0,
        metadata={
            "help": "Probability ε in [0, 0.5) that a preference label is flipped, used by rdpo and cdpo; 'auto' "
            "estimates it from the training pairs before training (robustrec.noise) and logs it with its interval."
        },
    )

    def __post_init__(self):
        check_loss(self.loss)
        if isinstance(self.flip_rate, str) and self.flip_rate.strip().lower() == AUTO:
            self.flip_rate = AUTO
        else:
            self.flip_rate = check_flip_rate(self.flip_rate)
        if self.loss not in FLIP_RATE_LOSSES and self.flip_rate not in (0.0, AUTO):
            raise ValueError(
                f"flip_rate={self.flip_rate} has no effect on loss {self.loss!r}; it is used by "
                f"{' and '.join(FLIP_RATE_LOSSES)} only (set flip_rate=0, or choose one of those losses)"
            )
        if self.label_smoothing not in (0.0, None):
            raise ValueError("set flip_rate rather than label_smoothing: it is derived from loss and flip_rate")
        requested = self.loss_type if isinstance(self.loss_type, list) else [self.loss_type]
        if requested not in (["sigmoid"], [TRL_LOSS_TYPE[self.loss]]):
            raise ValueError(
                f"set loss (one of {', '.join(LOSSES)}) rather than loss_type: loss_type={self.loss_type!r} "
                f"conflicts with loss={self.loss!r}"
            )
        self.loss_type = [TRL_LOSS_TYPE[self.loss]]
        # For "auto" the trainer sets the smoothing once ε is estimated.
        self.label_smoothing = 0.0 if self.flip_rate == AUTO else trl_label_smoothing(self.loss, self.flip_rate)
        super().__post_init__()
