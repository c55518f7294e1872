"""``RobustDPOTrainer``: TRL's DPOTrainer with rDPO / cDPO, an estimated flip rate, counted truncation and a
divergence guard.

The losses themselves are TRL's (see :mod:`alignment.losses` for how cDPO maps onto TRL's ``robust`` loss).
What this class adds:

- ``flip_rate="auto"``: ε is estimated from the training pairs before training (the ``flip_rate_estimator``
  hook, by default :func:`alignment.flip_rate.estimate_flip_rate` with ``flip_rate_scorer``), decided by
  :func:`alignment.flip_rate.resolve_flip_rate` (a refused estimate stops training with why and what would fix it,
  unless ``flip_rate_fallback`` is set) and logged, with its interval, as the first entry of the training history;
- ``flip_rate="per-pair"``: each pair's own ε_i (the ``flip_rate`` column of the training pairs) weights its rDPO
  loss — TRL's ``robust`` loss evaluated with a per-pair ε (:meth:`RobustDPOTrainer.compute_loss`);
- the pairs are tokenised and fitted to the context by :func:`alignment.sequences.prepare_pairs` instead of
  TRL's preprocessing (same tokenisation, but the prompt of a dialogue keeps its last turns, and every dropped
  or cut pair is counted in :attr:`RobustDPOTrainer.length_counts`); ``max_length=None`` means the model's
  context;
- a non-finite loss or parameter stops training with :class:`TrainingDivergedError` naming the step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager

import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase, TrainerCallback
from trl import DPOTrainer

from .config import RobustDPOConfig
from .data import PAIR_FLIP_RATE, pairs_as_text
from .losses import AUTO, FLIP_RATE_LOSSES, PER_PAIR, check_flip_rate, trl_label_smoothing
from .sequences import LengthCounts, LengthLimits, model_context_length, prepare_pairs

logger = logging.getLogger(__name__)

#: An estimated ε is clipped to [0, MAX_ESTIMATED_FLIP_RATE]: rDPO's weights 1/(1−2ε) explode near 1/2.
MAX_ESTIMATED_FLIP_RATE = 0.45


class TrainingDivergedError(RuntimeError):
    """The loss or a parameter became NaN or infinite; ``step`` is the 1-based optimizer step."""

    def __init__(self, step: int, what: str, learning_rate: float):
        self.step = step
        super().__init__(
            f"training diverged at step {step}: {what}. Lower the learning rate (it is {learning_rate:g}), or "
            "raise beta; no model was written"
        )


class RobustDPOTrainer(DPOTrainer):
    """DPOTrainer for the losses of :data:`alignment.losses.PREFERENCE_LOSSES`.

    Args:
        model, ref_model, train_dataset, eval_dataset, processing_class, peft_config, ...: as for
            :class:`trl.DPOTrainer`. Pass an explicit ``ref_model`` (or a ``peft_config``: the reference is then
            the base model with the adapters disabled) and a ``processing_class`` for a local model (TRL
            otherwise reaches the Hub). The datasets hold ``prompt``, ``chosen``, ``rejected`` as texts or chat
            message lists.
        args: a :class:`RobustDPOConfig`; its ``max_length`` is set to the model's context when None.
        clean_pairs: optional small set of pairs whose labels are known to be right (DataFrame or Dataset with
            the same columns); with ``flip_rate="auto"`` it calibrates the estimator's own error.
        flip_rate_estimator: optional ``f(pairs: DataFrame, clean_pairs: DataFrame | None) -> Estimate``
            replacing the default :func:`alignment.flip_rate.estimate_flip_rate`; the frames hold texts
            (message lists are joined into text).

    Attributes:
        flip_rate: the ε used in training (the estimate's value with ``"auto"``).
        flip_rate_estimate: the :class:`robustrec.noise.Estimate` with ``"auto"``, else None.
        length_counts: ``{"train": LengthCounts, "eval": ...}``: what fitting the pairs to ``max_length`` did.
    """

    def __init__(
        self,
        *args,
        clean_pairs=None,
        flip_rate_estimator: Callable | None = None,
        **kwargs,
    ):
        config = kwargs.get("args")
        if config is None and len(args) >= 3:
            config = args[2]
        if not isinstance(config, RobustDPOConfig):
            raise TypeError(f"RobustDPOTrainer needs args=RobustDPOConfig(...), got {type(config).__name__}")
        model = kwargs.get("model", args[0] if args else None)
        tokenizer = kwargs.get("processing_class")
        config.max_length = _resolved_max_length(config.max_length, model, tokenizer)
        self.length_limits = LengthLimits(config.max_length, config.max_prompt_length, config.truncation_mode)
        self.length_counts: dict[str, LengthCounts] = {}

        self.flip_rate_estimate = None
        train_dataset = kwargs.get("train_dataset", args[3] if len(args) >= 4 else None)
        self.per_pair = config.flip_rate == PER_PAIR
        if config.flip_rate == AUTO and config.loss in FLIP_RATE_LOSSES:
            estimator = flip_rate_estimator or _default_estimator(
                config, kwargs.get("ref_model") or model, tokenizer)
            self.flip_rate_estimate = _run_flip_rate_estimator(train_dataset, clean_pairs, estimator)
            self.flip_rate = _trained_flip_rate(self.flip_rate_estimate, config)
        elif self.per_pair:
            _check_pair_flip_rates(train_dataset)
            self.flip_rate = 0.0  # the scalar TRL checks at construction; each batch brings its own ε_i
        else:
            self.flip_rate = 0.0 if config.flip_rate == AUTO else config.flip_rate
        config.label_smoothing = trl_label_smoothing(config.loss, self.flip_rate)
        with _quiet_trl_smoothing_warning(config.loss == "cdpo"):
            super().__init__(*args, **kwargs)
        self.label_smoothing = config.label_smoothing  # what TRL's loss reads
        if self.per_pair:
            self.data_collator = _WithPairFlipRates(self.data_collator)
        self.add_callback(_FlipRateLogCallback(self))
        self.add_callback(_FiniteParametersCallback(config.learning_rate))

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """Tokenise and fit the pairs with :func:`alignment.sequences.prepare_pairs`, counting what is cut."""
        if not isinstance(processing_class, PreTrainedTokenizerBase):  # a multimodal processor: TRL's own path
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        prepared, counts = prepare_pairs(dataset, processing_class, self.length_limits)
        self.length_counts[dataset_name] = counts
        logger.info("%s pairs fitted to max_length=%d: %s", dataset_name, self.length_limits.max_length, counts)
        if counts.used == 0:
            raise ValueError(
                f"no {dataset_name} pair fits max_length={self.length_limits.max_length} "
                f"(all {counts.n_in} dropped): raise max_length or use truncation_mode='keep_end'"
            )
        return prepared

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self.per_pair and PAIR_FLIP_RATE not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, PAIR_FLIP_RATE]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """With ``flip_rate="per-pair"``, TRL's robust loss with the batch's (B,) ε_i in place of one ε:
        [(1−ε_i)(−log σ(z_i)) − ε_i(−log σ(−z_i))] / (1−2ε_i) for each pair i (Chowdhury et al. 2024, section 3,
        with ε depending on the pair: still unbiased for the clean loss when ε_i is pair i's flip probability)."""
        rates = inputs.pop(PAIR_FLIP_RATE, None)
        if rates is None:  # e.g. evaluation pairs without rates: plain DPO (ε = 0)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        scalar = self.label_smoothing
        self.label_smoothing = rates.to(inputs["input_ids"].device, torch.float32)
        try:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self.label_smoothing = scalar

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        bad = torch.tensor(0.0 if torch.isfinite(loss).all() else 1.0, device=loss.device)
        if self.accelerator.num_processes > 1:  # every process stops at the same step
            bad = self.accelerator.reduce(bad, reduction="sum")
        if bad.item() > 0:
            raise TrainingDivergedError(self.state.global_step + 1, f"the loss is {loss.item()}",
                                        self.args.learning_rate)
        return loss


class _FlipRateLogCallback(TrainerCallback):
    """Logs the estimated ε (and its interval) as the first entry of the training history."""

    def __init__(self, trainer: RobustDPOTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        estimate = self.trainer.flip_rate_estimate
        if estimate is not None and not any("flip_rate" in entry for entry in state.log_history):
            self.trainer.log({"flip_rate": self.trainer.flip_rate, "flip_rate_ci_low": estimate.ci_low,
                              "flip_rate_ci_high": estimate.ci_high})


class _FiniteParametersCallback(TrainerCallback):
    """Stops training when a trainable parameter is NaN or infinite after an optimizer step."""

    def __init__(self, learning_rate: float):
        self.learning_rate = learning_rate

    def on_step_end(self, args, state, control, model=None, **kwargs):
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and not torch.isfinite(parameter).all():
                raise TrainingDivergedError(state.global_step, f"parameter {name} is not finite",
                                            self.learning_rate)


def _resolved_max_length(max_length: int | None, model, tokenizer) -> int:
    """``max_length``, or the model's context when None; an error when it exceeds the context."""
    if isinstance(model, str):
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(model)
    else:
        model_config = model.config
    context = model_context_length(model_config, tokenizer)
    if max_length is None:
        return context
    if max_length > context:
        raise ValueError(f"max_length={max_length} exceeds the model's context ({context} positions)")
    return max_length


def _default_estimator(config: RobustDPOConfig, reference, tokenizer) -> Callable:
    """:func:`alignment.flip_rate.estimate_flip_rate` with ``config.flip_rate_scorer`` (the embeddings scorer
    reads the reference model: the user's own model is the feature extractor)."""
    from .flip_rate import estimate_flip_rate
    from .scorers import make_scorer

    def estimator(pairs: pd.DataFrame, clean_pairs: pd.DataFrame | None):
        name = config.flip_rate_scorer
        if name == "embeddings" and not isinstance(reference, str):
            scorer = make_scorer(name, model=reference, tokenizer=tokenizer)
        else:
            scorer = make_scorer(name, path=config.reward_model if name == "reward-model" else reference)
        return estimate_flip_rate(pairs, clean_pairs=clean_pairs, scorer=scorer, seed=config.seed)

    return estimator


def _trained_flip_rate(estimate, config: RobustDPOConfig) -> float:
    """The ε "auto" trains with: the accepted estimate (clipped to :data:`MAX_ESTIMATED_FLIP_RATE`), or the
    fallback; :class:`~alignment.flip_rate.FlipRateRefusedError` when refused without one."""
    from .flip_rate import resolve_flip_rate

    value = resolve_flip_rate(estimate, max_ci_width=config.flip_rate_max_ci_width,
                              fallback=config.flip_rate_fallback)
    clipped = float(min(max(value, 0.0), MAX_ESTIMATED_FLIP_RATE))
    if clipped != value:
        logger.warning("flip rate %.4f clipped to %.4f for training", value, clipped)
    return clipped


def _check_pair_flip_rates(train_dataset) -> None:
    """ValueError unless every training pair has a ``flip_rate`` in [0, 0.5) (``flip_rate="per-pair"``)."""
    columns = getattr(train_dataset, "column_names", None) or list(getattr(train_dataset, "columns", []))
    if PAIR_FLIP_RATE not in columns:
        raise ValueError(f"flip_rate='per-pair' needs a {PAIR_FLIP_RATE!r} column (each pair's ε_i) in the training "
                         "pairs, or annotator columns to derive it from (Dawid-Skene)")
    for position, rate in enumerate(train_dataset[PAIR_FLIP_RATE], start=1):
        try:
            check_flip_rate(rate)
        except ValueError as error:
            raise ValueError(f"training pair {position}: {error}") from None


class _WithPairFlipRates:
    """TRL's preference collator, plus the batch's (B,) ``flip_rate`` tensor of the pairs' own ε_i."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples):
        batch = self.collator([{k: v for k, v in e.items() if k != PAIR_FLIP_RATE} for e in examples])
        if PAIR_FLIP_RATE in examples[0]:
            batch[PAIR_FLIP_RATE] = torch.tensor([e[PAIR_FLIP_RATE] for e in examples], dtype=torch.float32)
        return batch


def _as_text_frame(pairs) -> pd.DataFrame | None:
    if pairs is None:
        return None
    if not isinstance(pairs, pd.DataFrame):
        if not hasattr(pairs, "to_pandas"):
            raise TypeError(f"expected a DataFrame or a datasets.Dataset of pairs, got {type(pairs).__name__}")
        pairs = pd.DataFrame(pairs.to_dict())  # keeps message lists as lists
    return pairs_as_text(pairs)


def _run_flip_rate_estimator(train_dataset, clean_pairs, estimator: Callable):
    """Call ``estimator`` on the training pairs (and the clean ones), as text frames; log and return its Estimate."""
    if train_dataset is None:
        raise ValueError("flip_rate='auto' needs a train_dataset to estimate the flip rate from")
    estimate = estimator(_as_text_frame(train_dataset), _as_text_frame(clean_pairs))
    logger.info("estimated flip rate: %s", estimate)
    return estimate


class _DropSmoothingWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "label_smoothing" not in record.getMessage()


@contextmanager
def _quiet_trl_smoothing_warning(active: bool):
    """TRL warns when the robust loss gets a smoothing outside [0, 0.5); cDPO's negative one is intended."""
    trl_logger = logging.getLogger("trl.trainer.dpo_trainer")
    drop = _DropSmoothingWarning()
    if active:
        trl_logger.addFilter(drop)
    try:
        yield
    finally:
        trl_logger.removeFilter(drop)
