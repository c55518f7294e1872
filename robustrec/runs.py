"""A training run on disk: data spec + config in, RUN_DIR with config.json, checkpoint.pt, the saved
recommender (:data:`robustrec.persistence.ARTEFACT_FILES`), metrics.json and history.csv out.

Shared by the CLI and the Python API so that ``python -m robustrec evaluate RUN_DIR``
rebuilds exactly the split a run was trained on (:func:`robustrec.data.prepare_data`), and
``Recommender.from_run(RUN_DIR)`` / ``python -m robustrec recommend RUN_DIR`` load the same model.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pandas as pd

from robustrec import atomic, persistence, plots
from robustrec.atomic import UnreadableFileError, read_json
from robustrec.config import TrainConfig, config_differences, upgrade_names
from robustrec.data import DataSpec, PreparedData, prepare_data
from robustrec.diagnostics import noise_diagnostics, training_losses
from robustrec.evaluate import ranking_metrics
from robustrec.models import PREFERENCE
from robustrec.rundir import FINISHED, RunDirectory
from robustrec.training import CHECKPOINT_FILE, evaluate_model, fit, new_model

log = logging.getLogger(__name__)

CONFIG_FILE, METRICS_FILE, HISTORY_FILE = "config.json", "metrics.json", "history.csv"
LEGACY_MODEL_FILE = "model.pt"  # the state_dict that runs of version 0.1 wrote instead of the saved recommender
LOSS_PLOT_FILE = "loss_distribution.png"
SHARDED_MODEL_DIR = "model"  # a sharded run's tables, one DCP file per rank (robustrec.distributed.run)


def train_run(
    config: TrainConfig, spec: DataSpec, run_dir: Path, *, resume: bool = False, overwrite: bool = False,
    progress: bool = True, prepared: PreparedData | None = None, write_plots: bool = True, fit_fn=fit,
) -> dict[str, float]:
    """Train, evaluate on the clean test part, and write the run directory. Returns metrics.json's content.

    The directory is a transaction (:class:`~robustrec.rundir.RunDirectory`): locked for the run; an unfinished
    run continues only with ``resume``; a finished one is replaced only with ``overwrite`` (atomically, when the
    new run has finished) or extended by more epochs with ``resume``. metrics.json is written last: it marks the
    run finished. ``prepared`` reuses data already built by :func:`~robustrec.data.prepare_data` from ``spec``
    (e.g. by ``compare``). With a known-noise mask, metrics.json also holds :func:`noise_diagnostics` and, with
    ``write_plots``, the clean-vs-noisy training-loss distributions are drawn (``loss_distribution.png``).
    ``fit_fn`` trains the model (:func:`robustrec.training.fit`; sharded runs go through
    :func:`robustrec.distributed.run.train_run_sharded` instead).
    """
    config.warn_schedule()
    with RunDirectory(run_dir, finished=METRICS_FILE, resumable=CHECKPOINT_FILE, resume=resume,
                      overwrite=overwrite) as run:
        out = run.path
        prepared = prepared or prepare_data(spec)
        split = prepared.split
        log.info("data: %r", split)
        if split.test.n_interactions == 0:
            raise ValueError(f"{prepared.source}: the test part is empty; nothing to evaluate (raise "
                             "--test-fraction, or give data with test interactions)")
        resolved = {"train": config.to_dict(), "data": asdict(spec)}
        if resume:
            check_same_data(out / CONFIG_FILE, resolved["data"])
        if run.state != FINISHED:  # an extended finished run keeps its config.json until it is republished
            atomic.save_json(resolved, out / CONFIG_FILE)
        validation = split.validation.matrix if split.validation is not None else None
        result = fit_fn(config, split.train.matrix, validation, run_dir=out, resume=resume, progress=progress)
        metrics = finished_metrics(evaluate_model(result.model, split.train.matrix, split.test.matrix, config.ks),
                                   result, split)
        if prepared.noise_mask is not None:
            users_f, items_f = result.model.embedding_matrices(PREFERENCE)
            losses = training_losses(users_f, items_f, split.train.matrix, seed=config.seed)
            diagnostics = noise_diagnostics(users_f, items_f, split.train.matrix, prepared.noise_mask, losses=losses)
            # a share or AUC that is undefined here (e.g. no clean interaction) is written as null, not NaN
            metrics.update(noise_source=prepared.noise_source,
                           **{k: (v if math.isfinite(v) else None) for k, v in diagnostics.items()})
            if write_plots:
                plots.loss_distributions(losses, prepared.noise_mask, split.train.coo()[0], out / LOSS_PLOT_FILE,
                                         title=f"{config.model}/{config.loss}/{config.sampler}")
        persistence.save_trained(out, config, result.model, split.train)
        atomic.save_text(pd.DataFrame(result.history).to_csv(index=False), out / HISTORY_FILE)
        atomic.save_json(resolved, out / CONFIG_FILE)
        atomic.save_json(metrics, out / METRICS_FILE)  # last: the run is finished
        run.publish()
    return metrics


def finished_metrics(metrics: dict[str, float], result, split) -> dict:
    """A trained run's test ``metrics`` with its training summary (seconds, epochs, best epoch, sizes), as
    metrics.json holds them; FloatingPointError when a metric is not finite (nothing is saved then).

    ``result``: the fit's result (``train_seconds``, ``epochs``, ``best_epoch``); ``split``: the run's data.
    """
    not_finite = [key for key, value in metrics.items() if not math.isfinite(value)]
    if not_finite:
        raise FloatingPointError(f"the trained model gives non-finite {', '.join(not_finite)}; nothing saved")
    return {**metrics, "train_seconds": result.train_seconds, "epochs": result.epochs,
            "seconds_per_epoch": result.train_seconds / max(result.epochs, 1), "best_epoch": result.best_epoch,
            "n_users": split.n_users, "n_items": split.n_items, "n_train": split.train.n_interactions,
            "n_test": split.test.n_interactions}


def check_same_data(config_path: Path, data: dict) -> None:
    """ValueError naming each data setting that differs from the run's config.json (resuming needs the same data)."""
    if not config_path.is_file():
        return  # the checkpoint alone decides (fit checks the training settings)
    previous = read_json(config_path, hint="start over with --overwrite")["data"]
    differences = config_differences(previous, json.loads(json.dumps(data)))
    if differences:
        raise ValueError(f"--resume: the data settings differ from {config_path}: {'; '.join(differences)}")


def load_run(run_dir: Path) -> tuple[TrainConfig, DataSpec]:
    """The configuration and data spec of a finished run."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise FileNotFoundError(f"{run_dir / CONFIG_FILE} is missing; is {run_dir} a finished training run?")
    if not (persistence.is_saved(run_dir) or (run_dir / LEGACY_MODEL_FILE).exists()
            or (run_dir / SHARDED_MODEL_DIR).is_dir()):
        missing = [name for name in persistence.ARTEFACT_FILES if not (run_dir / name).exists()]
        raise FileNotFoundError(f"{run_dir / missing[0]} is missing; is {run_dir} a finished training run?")
    resolved = read_json(run_dir / CONFIG_FILE, keys=("train", "data"), hint="the run directory is damaged; retrain it")
    config = TrainConfig.from_dict(resolved["train"])
    return config, DataSpec(**upgrade_names(resolved["data"], known={f.name for f in fields(DataSpec)},
                                            what="DataSpec fields"))


def load_artefact(run_dir: Path, *, device="cpu") -> persistence.Artefact:
    """The saved recommender of a finished run (a run of version 0.1, with model.pt only, and a sharded run, with
    its tables in RUN_DIR/model, are rebuilt from their config.json and data)."""
    run_dir = Path(run_dir)
    config, spec = load_run(run_dir)  # a clear error when run_dir is no finished run
    if persistence.is_saved(run_dir):
        return persistence.load(run_dir, device=device)
    train = prepare_data(spec).split.train
    model = new_model(config, train.n_users, train.n_items, train.matrix)
    if (run_dir / SHARDED_MODEL_DIR).is_dir():  # written by robustrec.distributed.checkpoint.save_model
        from robustrec.distributed.checkpoint import load_unsharded

        load_unsharded(model, run_dir / SHARDED_MODEL_DIR)  # resharded to this one process
        return persistence.from_model(config, model.to(device), train.matrix, train.user_ids, train.item_ids)
    state = atomic.load_torch(run_dir / LEGACY_MODEL_FILE, hint="the run directory is damaged; retrain it")
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as error:
        raise UnreadableFileError(f"{run_dir / LEGACY_MODEL_FILE} does not fit the model of "
                                  f"{run_dir / CONFIG_FILE} ({str(error).splitlines()[0]}); retrain the run") from None
    return persistence.from_model(config, model.to(device), train.matrix, train.user_ids, train.item_ids)


def evaluate_run(run_dir: Path, *, ks=None) -> dict[str, float]:
    """Re-evaluate a saved run on its clean test part (same split, rebuilt from config.json)."""
    run_dir = Path(run_dir)
    if ks is not None and (not ks or min(ks) < 1):
        raise ValueError(f"--k must be cut-offs >= 1, got {' '.join(map(str, ks))}")
    config, spec = load_run(run_dir)
    split = prepare_data(spec).split
    artefact = load_artefact(run_dir)
    seen = artefact.seen
    if seen.shape != split.train.matrix.shape or not np.array_equal(seen.indices, split.train.matrix.indices) \
            or not np.array_equal(seen.indptr, split.train.matrix.indptr):
        raise ValueError(f"{spec.path or 'the synthetic default'} no longer gives the training part {run_dir} was "
                         f"trained on ({seen.shape[0]:,} users x {seen.shape[1]:,} items, {seen.nnz:,} "
                         f"interactions); was the data changed?")
    return ranking_metrics(artefact.user_factors, artefact.item_factors, split.train.matrix, split.test.matrix,
                           ks=ks or config.ks)
