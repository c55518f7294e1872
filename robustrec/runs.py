"""A training run on disk: data spec + config in, RUN_DIR with config.json,
checkpoint.pt, model.pt, metrics.json and history.csv out.

Shared by the CLI and the Python API so that ``python -m robustrec evaluate RUN_DIR``
rebuilds exactly the split a run was trained on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from robustrec import checkpoint, data
from robustrec.data import FORMATS, Split
from robustrec.evaluate import ranking_metrics
from robustrec.models import PREFERENCE
from robustrec.training import TrainConfig, evaluate_model, fit, new_model

log = logging.getLogger(__name__)

CONFIG_FILE, MODEL_FILE, METRICS_FILE, HISTORY_FILE = "config.json", "model.pt", "metrics.json", "history.csv"


@dataclass(frozen=True)
class DataSpec:
    """Where a run's split comes from: a path and format, or the embedded synthetic default."""

    path: str | None = field(default=None, metadata={"help": "file or directory; None = synthetic default"})
    format: str = field(default="auto", metadata={"help": f"one of {FORMATS}"})
    test_fraction: float = field(default=0.2, metadata={"help": "per-user test share when a log must be split"})
    validation_fraction: float = field(
        default=0.0, metadata={"help": "per-user share of train held out for early stopping when the data has no validation part"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the split (and of the synthetic generator)"})
    synthetic_users: int = field(default=5000, metadata={"help": "users of the synthetic default"})
    synthetic_items: int = field(default=3000, metadata={"help": "items of the synthetic default"})

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; expected one of {FORMATS}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")


def load_data(spec: DataSpec) -> Split:
    """The run's split; carves a validation part out of train when asked and none exists."""
    if spec.path is None:
        split = data.generate(
            n_users=spec.synthetic_users, n_items=spec.synthetic_items, seed=spec.seed, test_fraction=spec.test_fraction
        )
    else:
        split = data.load_split(spec.path, format=spec.format, test_fraction=spec.test_fraction, seed=spec.seed)
    if split.validation is None and spec.validation_fraction > 0:
        inner = data.random_holdout(split.train, test_fraction=spec.validation_fraction, seed=spec.seed + 1)
        split = Split(train=inner.train, test=split.test, validation=inner.test, report=split.report)
    return split


def train_run(
    config: TrainConfig, spec: DataSpec, run_dir: Path, *, resume: bool = False, progress: bool = True
) -> dict[str, float]:
    """Train, evaluate on the clean test part, and write the run directory. Returns metrics.json's content."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    split = load_data(spec)
    log.info("data: %r", split)
    resolved = {"train": config.to_dict(), "data": asdict(spec)}
    config_path = run_dir / CONFIG_FILE
    if resume and config_path.exists():
        previous = json.loads(config_path.read_text())
        if previous != json.loads(json.dumps(resolved)):
            raise ValueError(f"{config_path} differs from the requested configuration; refusing to resume")
    checkpoint.save_json(resolved, config_path)
    validation = split.validation.matrix if split.validation is not None else None
    result = fit(config, split.train.matrix, validation, run_dir=run_dir, resume=resume, progress=progress)
    checkpoint.save_torch(result.model.state_dict(), run_dir / MODEL_FILE)
    metrics = evaluate_model(result.model, split.train.matrix, split.test.matrix, config.ks)
    metrics.update(
        train_seconds=result.train_seconds,
        epochs=result.epochs,
        seconds_per_epoch=result.train_seconds / max(result.epochs, 1),
        best_epoch=result.best_epoch,
        n_users=split.n_users,
        n_items=split.n_items,
        n_train=split.train.n_interactions,
        n_test=split.test.n_interactions,
    )
    checkpoint.save_json(metrics, run_dir / METRICS_FILE)
    checkpoint.save_text(pd.DataFrame(result.history).to_csv(index=False), run_dir / HISTORY_FILE)
    return metrics


def load_run(run_dir: Path) -> tuple[TrainConfig, DataSpec]:
    """The configuration and data spec of a finished run."""
    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, MODEL_FILE):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} is missing; is {run_dir} a finished training run?")
    resolved = json.loads((run_dir / CONFIG_FILE).read_text())
    config = TrainConfig.from_dict(resolved["train"])
    return config, DataSpec(**resolved["data"])


def evaluate_run(run_dir: Path, *, ks=None) -> dict[str, float]:
    """Re-evaluate a saved run on its clean test part (same split, rebuilt from config.json)."""
    run_dir = Path(run_dir)
    config, spec = load_run(run_dir)
    split = load_data(spec)
    model = new_model(config, split.n_users, split.n_items, split.train.matrix)
    model.load_state_dict(checkpoint.load_torch(run_dir / MODEL_FILE))
    users, items = model.embedding_matrices(PREFERENCE)
    return ranking_metrics(users, items, split.train.matrix, split.test.matrix, ks=ks or config.ks)
