"""``RobustDPOTrainer``: TRL's DPOTrainer with rDPO / cDPO and, optionally, an estimated flip rate.

The losses themselves are TRL's (see :mod:`alignment.losses` for how cDPO maps onto TRL's ``robust`` loss);
what this class adds is resolving ``flip_rate="auto"`` before training — estimating ε from the training pairs
with :func:`alignment.flip_rate.estimate_flip_rate` and logging the value with its interval — and checking
that ε lies in [0, 0.5) on every path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager

import pandas as pd
from trl import DPOTrainer

from .config import AUTO, RobustDPOConfig
from .losses import FLIP_RATE_LOSSES, check_flip_rate, trl_label_smoothing

logger = logging.getLogger(__name__)

#: An estimated ε is clipped to [0, MAX_ESTIMATED_FLIP_RATE]: rDPO's weights 1/(1−2ε) explode near 1/2.
MAX_ESTIMATED_FLIP_RATE = 0.45


class RobustDPOTrainer(DPOTrainer):
    """DPOTrainer for the losses of :data:`alignment.losses.LOSSES`.

    Args:
        model, ref_model, train_dataset, processing_class, ...: as for :class:`trl.DPOTrainer`. Pass an
            explicit ``ref_model`` and ``processing_class`` for a local model (TRL otherwise reaches the Hub).
            ``train_dataset`` holds text columns ``prompt``, ``chosen``, ``rejected``.
        args: a :class:`RobustDPOConfig`.
        clean_pairs: optional small set of pairs whose labels are known to be right (DataFrame or Dataset with
            the same columns); with ``flip_rate="auto"`` it calibrates the estimator's own error.
        flip_rate_estimator: optional ``f(pairs: DataFrame, clean_pairs: DataFrame | None) -> Estimate``
            replacing the default :func:`alignment.flip_rate.estimate_flip_rate`.

    Attributes:
        flip_rate: the ε used in training (the estimate's value with ``"auto"``).
        flip_rate_estimate: the :class:`robustrec.noise.Estimate` with ``"auto"``, else None.
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
        self.flip_rate_estimate = None
        if config.flip_rate == AUTO and config.loss in FLIP_RATE_LOSSES:
            train_dataset = kwargs.get("train_dataset", args[3] if len(args) >= 4 else None)
            self.flip_rate_estimate = _estimate(
                train_dataset, clean_pairs, flip_rate_estimator or _default_estimator(config.seed)
            )
            value = float(min(max(self.flip_rate_estimate.value, 0.0), MAX_ESTIMATED_FLIP_RATE))
            if value != self.flip_rate_estimate.value:
                logger.warning(
                    "estimated flip rate %.4f clipped to %.4f for training", self.flip_rate_estimate.value, value
                )
            self.flip_rate = value
        else:
            self.flip_rate = 0.0 if config.flip_rate == AUTO else check_flip_rate(config.flip_rate)
        config.label_smoothing = trl_label_smoothing(config.loss, self.flip_rate)
        with _quiet_trl_smoothing_warning(config.loss == "cdpo"):
            super().__init__(*args, **kwargs)
        self.label_smoothing = config.label_smoothing  # what TRL's loss reads

    def train(self, *args, **kwargs):
        if self.flip_rate_estimate is not None:
            self.log({"flip_rate": self.flip_rate, "flip_rate_ci_low": self.flip_rate_estimate.ci_low,
                      "flip_rate_ci_high": self.flip_rate_estimate.ci_high})
        return super().train(*args, **kwargs)


def _default_estimator(seed: int) -> Callable:
    from .flip_rate import estimate_flip_rate

    def estimator(pairs: pd.DataFrame, clean_pairs: pd.DataFrame | None):
        return estimate_flip_rate(pairs, clean_pairs=clean_pairs, seed=seed)

    return estimator


def _as_frame(pairs) -> pd.DataFrame | None:
    if pairs is None or isinstance(pairs, pd.DataFrame):
        return pairs
    if hasattr(pairs, "to_pandas"):
        return pairs.to_pandas()
    raise TypeError(f"expected a DataFrame or a datasets.Dataset of pairs, got {type(pairs).__name__}")


def _estimate(train_dataset, clean_pairs, estimator: Callable):
    if train_dataset is None:
        raise ValueError("flip_rate='auto' needs a train_dataset to estimate the flip rate from")
    estimate = estimator(_as_frame(train_dataset), _as_frame(clean_pairs))
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
