"""A training run on disk: data spec + config in, RUN_DIR with config.json,
checkpoint.pt, model.pt, metrics.json and history.csv out.

Shared by the CLI and the Python API so that ``python -m robustrec evaluate RUN_DIR``
rebuilds exactly the split a run was trained on (:func:`robustrec.data.prepare_data`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd

from robustrec import atomic, plots
from robustrec.config import TrainConfig, upgrade_names
from robustrec.data import DataSpec, PreparedData, prepare_data
from robustrec.diagnostics import noise_diagnostics, training_losses
from robustrec.evaluate import ranking_metrics
from robustrec.models import PREFERENCE
from robustrec.training import evaluate_model, fit, new_model

log = logging.getLogger(__name__)

CONFIG_FILE, MODEL_FILE, METRICS_FILE, HISTORY_FILE = "config.json", "model.pt", "metrics.json", "history.csv"
LOSS_PLOT_FILE = "loss_distribution.png"


def train_run(
    config: TrainConfig, spec: DataSpec, run_dir: Path, *, resume: bool = False, progress: bool = True,
    prepared: PreparedData | None = None, write_plots: bool = True, fit_fn=fit,
) -> dict[str, float]:
    """Train, evaluate on the clean test part, and write the run directory. Returns metrics.json's content.

    ``prepared`` reuses data already built by :func:`~robustrec.data.prepare_data` from ``spec`` (e.g. by
    ``compare``). With a known-noise mask, metrics.json also holds :func:`noise_diagnostics` and, with
    ``write_plots``, the clean-vs-noisy training-loss distributions are drawn (``loss_distribution.png``).
    ``fit_fn`` trains the model (:func:`robustrec.training.fit`, or :func:`robustrec.distributed.fit_sharded`
    under torchrun).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    prepared = prepared or prepare_data(spec)
    split = prepared.split
    log.info("data: %r", split)
    resolved = {"train": config.to_dict(), "data": asdict(spec)}
    config_path = run_dir / CONFIG_FILE
    if resume and config_path.exists():
        previous = json.loads(config_path.read_text())
        if previous != json.loads(json.dumps(resolved)):
            raise ValueError(f"{config_path} differs from the requested configuration; refusing to resume")
    atomic.save_json(resolved, config_path)
    validation = split.validation.matrix if split.validation is not None else None
    result = fit_fn(config, split.train.matrix, validation, run_dir=run_dir, resume=resume, progress=progress)
    atomic.save_torch(result.model.state_dict(), run_dir / MODEL_FILE)
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
    if prepared.noise_mask is not None:
        users_f, items_f = result.model.embedding_matrices(PREFERENCE)
        losses = training_losses(users_f, items_f, split.train.matrix, seed=config.seed)
        metrics.update(noise_source=prepared.noise_source,
                       **noise_diagnostics(users_f, items_f, split.train.matrix, prepared.noise_mask, losses=losses))
        if write_plots:
            plots.loss_distributions(losses, prepared.noise_mask, split.train.coo()[0], run_dir / LOSS_PLOT_FILE,
                                        title=f"{config.model}/{config.loss}/{config.sampler}")
    atomic.save_json(metrics, run_dir / METRICS_FILE)
    atomic.save_text(pd.DataFrame(result.history).to_csv(index=False), run_dir / HISTORY_FILE)
    return metrics


def load_run(run_dir: Path) -> tuple[TrainConfig, DataSpec]:
    """The configuration and data spec of a finished run."""
    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, MODEL_FILE):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} is missing; is {run_dir} a finished training run?")
    resolved = json.loads((run_dir / CONFIG_FILE).read_text())
    config = TrainConfig.from_dict(resolved["train"])
    return config, DataSpec(**upgrade_names(resolved["data"], known={f.name for f in fields(DataSpec)},
                                            what="DataSpec fields"))


def evaluate_run(run_dir: Path, *, ks=None) -> dict[str, float]:
    """Re-evaluate a saved run on its clean test part (same split, rebuilt from config.json)."""
    run_dir = Path(run_dir)
    config, spec = load_run(run_dir)
    split = prepare_data(spec).split
    model = new_model(config, split.n_users, split.n_items, split.train.matrix)
    model.load_state_dict(atomic.load_torch(run_dir / MODEL_FILE))
    users, items = model.embedding_matrices(PREFERENCE)
    return ranking_metrics(users, items, split.train.matrix, split.test.matrix, ks=ks or config.ks)
