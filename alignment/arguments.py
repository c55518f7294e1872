"""The command lines' arguments as dataclasses: each field is a flag (``HfArgumentParser``), with its default
and help shown by ``--help``. ``train`` combines :class:`TrainArguments`, :class:`PolicyModelConfig` and
:class:`alignment.config.RobustDPOConfig`; ``evaluate`` reads :class:`EvaluateArguments`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ModelConfig

from .data import ON_INVALID, PAIR_FORMATS
from .losses import check_flip_rate
from .models import DEFAULT, TORCH_DTYPES

_DATA_HELP = ("JSON lines (.jsonl[.gz]), a JSON list (.json[.gz]), Parquet, or a datasets save_to_disk folder; "
              "rows prompt/chosen/rejected (texts or chat message lists) or HH-RLHF chosen/rejected dialogues")


_THREADS_HELP = ("torch CPU threads of this process; default: torch's own (the cores, or OMP_NUM_THREADS). A tiny "
                 "model such as the default one runs fastest on 1, far faster on a busy machine.")


@dataclass
class TrainArguments:
    """Where ``train`` reads its pairs, and settings of the run that are not the trainer's."""

    data: str | None = field(
        default=None,
        metadata={"help": f"Training pairs: {_DATA_HELP}. Default: the controlled experiment's pairs, sampled from "
                  "the default model (alignment.experiment)."},
    )
    data_split: str | None = field(default=None, metadata={"help": "Split of a DatasetDict folder given as --data."})
    data_format: str = field(
        default="auto",
        metadata={"help": "Row form: explicit (prompt/chosen/rejected), hh (whole dialogues in chosen/rejected) or "
                  "auto (explicit when rows have a prompt).", "choices": list(PAIR_FORMATS)},
    )
    eval_data: str | None = field(
        default=None, metadata={"help": "Pairs evaluated during training (every eval_steps), same forms as --data."}
    )
    eval_data_split: str | None = field(default=None, metadata={"help": "Split of a DatasetDict given as --eval-data."})
    eval_fraction: float = field(
        default=0.0,
        metadata={"help": "Hold out this share of the --data pairs (seeded by --seed) and evaluate on them during "
                  "training; 0: none."},
    )
    clean_data: str | None = field(
        default=None, metadata={"help": "Pairs with trusted labels calibrating --flip-rate auto (never trained on)."}
    )
    on_invalid: str = field(
        default="raise",
        metadata={"help": "What to do with an invalid pair (empty or identical responses, ...) in any data read: "
                  "raise stops at the first, naming file and row; drop removes and counts them.",
                  "choices": list(ON_INVALID)},
    )
    inject_flips: float = field(
        default=0.0, metadata={"help": "Flip this share of the training labels first (experiments)."}
    )
    num_threads: int | None = field(default=None, metadata={"help": _THREADS_HELP})
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace the run in --out; the old run stays intact until the new one has finished."},
    )

    def __post_init__(self):
        self.inject_flips = check_flip_rate(self.inject_flips)
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")
        if self.eval_fraction and self.eval_data:
            raise ValueError("give --eval-data or --eval-fraction, not both")
        if (self.eval_fraction or self.clean_data or self.data_split) and not self.data:
            raise ValueError("--eval-fraction, --clean-data and --data-split need --data")
        _check_threads(self.num_threads)


@dataclass
class PolicyModelConfig(ModelConfig):
    """TRL's ModelConfig (``--use-peft``, ``--lora-r``, ``--lora-alpha``, ``--lora-target-modules``, ...) with
    the shipped model as default and the shorter flags ``--model`` and ``--torch-dtype``."""

    model_name_or_path: str | None = field(
        default=DEFAULT,
        metadata={"help": "'default' (the shipped stories260K model) or a local model folder (save_pretrained).",
                  "aliases": ["--model"]},
    )
    dtype: str | None = field(
        default="float32",
        metadata={"help": "Load the weights in this dtype ('auto': as stored).", "choices": list(TORCH_DTYPES),
                  "aliases": ["--torch-dtype", "--torch_dtype"]},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.model_revision != "main":
            raise ValueError("model_revision applies to Hub models; this toolkit loads local folders only")


@dataclass
class EvaluateArguments:
    """``evaluate RUN``: score a trained run on pairs, cut exactly as in its training."""

    data: str | None = field(
        default=None,
        metadata={"help": f"Pairs to score: {_DATA_HELP}. Default (runs trained on the experiment's pairs): the "
                  "experiment's held-out prompts and clean pairs."},
    )
    data_split: str | None = field(default=None, metadata={"help": "Split of a DatasetDict given as --data."})
    data_format: str = field(default="auto", metadata={"help": "Row form, as for train.",
                                                       "choices": list(PAIR_FORMATS)})
    on_invalid: str = field(default="raise", metadata={"help": "As for train.", "choices": list(ON_INVALID)})
    batch_size: int = field(default=8, metadata={"help": "Pairs per forward pass."})
    json: bool = field(default=False, metadata={"help": "Print the metrics as one JSON object (and nothing else)."})
    num_threads: int | None = field(default=None, metadata={"help": _THREADS_HELP})

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        _check_threads(self.num_threads)


def _check_threads(num_threads: int | None) -> None:
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be at least 1, got {num_threads}")
