"""``RobustDPOConfig``: TRL's ``DPOConfig`` with a loss name, a flip rate and counted truncation, validated before
training. It is also the ``train`` command line: every field is a flag (:mod:`alignment.cli`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from trl import DPOConfig

from robustrec.noise import DEFAULT_MAX_CI_WIDTH

from .losses import (
    FLIP_RATE_LOSSES,
    FLIP_RATE_MODES,
    PER_PAIR,
    PREFERENCE_LOSSES,
    TRL_LOSS_TYPE,
    check_flip_rate,
    check_loss,
    trl_label_smoothing,
)
from .scorers import SCORERS
from .sequences import TRUNCATION_MODES


@dataclass
class RobustDPOConfig(DPOConfig):
    """Configuration of :class:`alignment.trainer.RobustDPOTrainer`.

    Everything of :class:`trl.DPOConfig` applies; set ``loss`` and ``flip_rate`` instead of TRL's
    ``loss_type`` and ``label_smoothing``, which are derived from them. Defaults that differ from TRL's:
    ``max_length`` (the model's context), ``truncation_mode`` (``keep_end``: a dialogue keeps its last turns),
    ``use_cpu`` (True when no GPU is visible) and ``output_dir`` (``runs/align``). Short flags: ``--out``,
    ``--steps``, ``--lr``, ``--batch-size``, ``--resume``.
    """

    loss: str = field(
        default="dpo",
        metadata={
            "help": f"Preference loss, one of {', '.join(PREFERENCE_LOSSES)}: dpo (Rafailov et al. 2023), rdpo "
            "(robust DPO, Chowdhury et al. 2024), cdpo (conservative DPO / label smoothing, Mitchell 2023), ipo "
            "(Azar et al. 2023).",
            "choices": list(PREFERENCE_LOSSES),
        },
    )
    # The union with str makes the command line pass the text ('auto' or a number); __post_init__ validates it.
    flip_rate: float | str | None = field(
        default=0.0,
        metadata={
            "help": "Probability ε in [0, 0.5) that a preference label is flipped, used by rdpo and cdpo. 'auto': "
            "estimated from the training pairs before training (repeated annotations: Dawid-Skene; else a scorer "
            "corrected by its error on --clean-data), logged with its interval, and refused (training stops with "
            "why and what would fix it) when not identifiable or wider than flip_rate_max_ci_width, unless "
            "flip_rate_fallback is given. 'per-pair' (rdpo): each pair's own ε_i weights its loss: a flip_rate "
            "column of the data, or each pair's Dawid-Skene posterior from annotator columns."
        },
    )
    flip_rate_fallback: float | None = field(
        default=None,
        metadata={"help": "With flip_rate='auto': train with this ε (in [0, 0.5)) when the estimate is refused, "
                  "instead of stopping."},
    )
    flip_rate_max_ci_width: float = field(
        default=DEFAULT_MAX_CI_WIDTH,
        metadata={"help": "With flip_rate='auto': the widest 95% interval of the estimate that is trained with "
                  "(0.2 = ±0.1)."},
    )
    flip_rate_scorer: str = field(
        default="bow",
        metadata={"help": "With flip_rate='auto' on pairs with one label each: the scorer whose disagreement with "
                  "the labels is corrected by its error on --clean-data. bow: bag of words (cheap); embeddings: "
                  "the reference model's mean-pooled hidden states; reward-model: a local sequence-classification "
                  "model (--reward-model).", "choices": list(SCORERS)},
    )
    reward_model: str | None = field(
        default=None,
        metadata={"help": "Folder of a local AutoModelForSequenceClassification (flip_rate_scorer='reward-model')."},
    )
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "Longest sequence (prompt + one completion) in tokens; default: the model's context "
            "(max_position_embeddings). Longer pairs are cut as truncation_mode says, and counted."
        },
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={
            "help": "Longest prompt in tokens (cut as truncation_mode says); default: no limit of its own, the "
            "prompt is only cut to make room for the longer completion within max_length."
        },
    )
    truncation_mode: str = field(
        default="keep_end",
        metadata={
            "help": "How a pair longer than max_length is cut. keep_end: the prompt loses its first tokens (a "
            "dialogue keeps its last turns; it keeps at least half of max_length), then the completions lose their "
            "last tokens; no pair is dropped for length. keep_start (TRL's rule): every sequence keeps its first "
            "max_length tokens, and a pair whose prompt fills max_length is dropped.",
            "choices": list(TRUNCATION_MODES),
        },
    )
    use_cpu: bool | None = field(
        default=None,
        metadata={"help": "Train on the CPU even when a GPU is visible; default: true when no GPU is visible."},
    )
    output_dir: str | None = field(
        default="runs/align",
        metadata={"help": "Run directory (checkpoints; the command line also writes the model and run.json there).",
                  "aliases": ["--out"]},
    )
    max_steps: int = field(
        default=-1,
        metadata={"help": "Number of optimizer steps; -1: num_train_epochs passes over the pairs.",
                  "aliases": ["--steps"]},
    )
    learning_rate: float = field(
        default=1e-6, metadata={"help": "The initial learning rate for AdamW.", "aliases": ["--lr"]}
    )
    per_device_train_batch_size: int = field(
        default=8, metadata={"help": "Pairs per batch and device.", "aliases": ["--batch-size"]}
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "Resume training from this checkpoint folder, or 'last' for the newest checkpoint-N in "
                  "output_dir (written every save_steps steps).", "aliases": ["--resume"]},
    )

    def __post_init__(self):
        check_loss(self.loss)
        self.flip_rate = check_flip_rate(self.flip_rate, allow_modes=True)
        if self.loss not in FLIP_RATE_LOSSES and self.flip_rate != 0.0:
            raise ValueError(
                f"flip_rate={self.flip_rate} has no effect on loss {self.loss!r}; it is used by "
                f"{' and '.join(FLIP_RATE_LOSSES)} only (set flip_rate=0, or choose one of those losses)"
            )
        if self.flip_rate == PER_PAIR and self.loss != "rdpo":
            raise ValueError(f"flip_rate='per-pair' weights rDPO's loss pair by pair; use loss='rdpo', not {self.loss!r}")
        if self.flip_rate_fallback is not None:
            self.flip_rate_fallback = check_flip_rate(self.flip_rate_fallback)
        if not 0 < self.flip_rate_max_ci_width <= 1:
            raise ValueError(f"flip_rate_max_ci_width must lie in (0, 1], got {self.flip_rate_max_ci_width}")
        if self.flip_rate_scorer not in SCORERS:
            raise ValueError(f"flip_rate_scorer must be one of {', '.join(SCORERS)}, got {self.flip_rate_scorer!r}")
        if (self.flip_rate_scorer == "reward-model") != (self.reward_model is not None):
            raise ValueError("flip_rate_scorer='reward-model' and --reward-model PATH go together")
        if self.label_smoothing not in (0.0, None):
            raise ValueError("set flip_rate rather than label_smoothing: it is derived from loss and flip_rate")
        requested = self.loss_type if isinstance(self.loss_type, list) else [self.loss_type]
        if requested not in (["sigmoid"], [TRL_LOSS_TYPE[self.loss]]):
            raise ValueError(
                f"set loss (one of {', '.join(PREFERENCE_LOSSES)}) rather than loss_type: "
                f"loss_type={self.loss_type!r} conflicts with loss={self.loss!r}"
            )
        self._check_not_empty()
        if self.truncation_mode not in TRUNCATION_MODES:
            raise ValueError(f"truncation_mode must be one of {', '.join(TRUNCATION_MODES)}, "
                             f"got {self.truncation_mode!r}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 tokens, got {self.max_length}")
        if self.max_prompt_length is not None and not (
                1 <= self.max_prompt_length < (self.max_length or float("inf"))):
            raise ValueError(f"max_prompt_length must be at least 1 and below max_length, got {self.max_prompt_length}")
        if self.use_cpu is None:
            import torch

            self.use_cpu = not torch.cuda.is_available()
        self.loss_type = [TRL_LOSS_TYPE[self.loss]]
        # For "auto" the trainer sets the smoothing once ε is estimated.
        # ε is a number only once estimated ("auto") or read per pair ("per-pair"): the trainer sets it then.
        self.label_smoothing = (0.0 if self.flip_rate in FLIP_RATE_MODES
                                else trl_label_smoothing(self.loss, self.flip_rate))
        with warnings.catch_warnings():
            # TRL deprecates its own 'keep_end' (the end of the whole sequence); ours is applied before TRL's
            # collator sees the pairs (alignment.sequences), which then cuts nothing.
            warnings.filterwarnings("ignore", message=".*keep_end.*truncation mode is deprecated",
                                    category=FutureWarning)
            super().__post_init__()

    def _check_not_empty(self) -> None:
        """Refuse runs that would train nothing, before any work."""
        if self.max_steps == 0 or (self.max_steps < 0 and self.num_train_epochs <= 0):
            raise ValueError(
                f"nothing to train: max_steps={self.max_steps}, num_train_epochs={self.num_train_epochs}; set "
                "--steps N (N >= 1) or --num-train-epochs above 0"
            )
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
