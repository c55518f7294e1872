"""Early-stopping bookkeeping on a validation metric: the best value and epoch, and validations since then."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    """Stop after ``patience`` validations without improvement of a metric to maximise.

    ``update(value, epoch)`` records one validation and says whether it is a new best; ``should_stop`` is then
    read before the next epoch. ``state()``/``from_state`` round-trip it through JSON (for checkpoints).
    """

    patience: int
    best_value: float = -math.inf
    best_epoch: int | None = None
    stale: int = 0

    def update(self, value: float, epoch: int) -> bool:
        if value > self.best_value:
            self.best_value, self.best_epoch, self.stale = value, epoch, 0
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.stale >= self.patience

    def state(self) -> dict:
        out = asdict(self)
        out["best_value"] = None if math.isinf(self.best_value) else self.best_value  # JSON has no -inf
        return out

    @classmethod
    def from_state(cls, state: dict) -> "EarlyStopping":
        value = state["best_value"]
        return cls(patience=state["patience"], best_value=-math.inf if value is None else value,
                   best_epoch=state["best_epoch"], stale=state["stale"])
