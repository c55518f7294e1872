"""Hyper-parameter selection on a validation split, with Optuna (``python -m robustrec tune``).

    python -m robustrec tune --loss nbpo --data ../shared/data/ml-100k-deca --trials 20 --epochs 30 \\
        --out runs/tune-nbpo

A study draws a method's settings from its search space — :func:`robustrec.config.search_space`: each setting's
range is declared once, as the ``"search"`` metadata of its :class:`~robustrec.config.TrainConfig` field — with
Optuna's seeded TPE sampler. The first trial is the method's own configuration (its defaults), so the selection
is never worse than the defaults on validation. Every trial trains on the training part with early stopping,
and its value is the best validation ``early_stop_metric``; the test part is never read. With pruning, a trial
reports its validation value after every validation and Optuna's median rule stops trials that fall behind
the others' at the same epoch (the trial continues from its checkpoint between validations, so an unpruned
trial trains exactly as one uninterrupted run).

Written into the output directory (a :class:`~robustrec.rundir.RunDirectory`): ``trials.csv`` (one row per
trial: settings, value, state, best epoch), ``best_config.json`` (``{"train": ..., "data": ...}`` as a run's
config.json, so ``python -m robustrec train --config best_config.json`` trains the selected configuration),
``history.png`` (Optuna's optimisation history) and, last, ``tune.json`` (method, space, budget, best value and
settings, the defaults' value, pruned count, seconds).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from robustrec import atomic
from robustrec.config import Search, TrainConfig, search_space
from robustrec.data import DataSpec, PreparedData, prepare_data
from robustrec.rundir import RunDirectory
from robustrec.training import fit

log = logging.getLogger(__name__)

TRIALS_FILE, BEST_CONFIG_FILE, HISTORY_PLOT, SUMMARY_FILE = "trials.csv", "best_config.json", "history.png", "tune.json"


@dataclass
class TuneSettings:
    """The budget and the search of one study (the epoch budget of a trial is the TrainConfig's ``epochs``)."""

    trials: int = field(default=20, metadata={"help": "trials of the study (the first one is the defaults)"})
    params: tuple[str, ...] = field(default=(), metadata={"help": "settings to search (default: the method's "
                                                                   "whole search space)"})
    prune: bool = field(default=True, metadata={"help": "stop trials whose validation value falls below the median "
                                                        "of earlier trials at the same epoch"})
    startup_trials: int = field(default=5, metadata={"help": "trials drawn at random before TPE models the space "
                                                             "(and before pruning starts)"})

    def __post_init__(self) -> None:
        self.params = tuple(self.params)
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if self.startup_trials < 1:
            raise ValueError(f"startup_trials must be >= 1, got {self.startup_trials}")


@dataclass
class TuneResult:
    """What a study selected.

    best_config: the method's configuration with the selected settings. best_value: its validation value.
    default_value: the validation value of the method's own configuration (the first trial).
    selected: the selected settings (name -> value). trials: one row per trial (also ``trials.csv``).
    """

    best_config: TrainConfig
    best_value: float
    default_value: float | None
    selected: dict[str, float | int]
    trials: pd.DataFrame


def method_space(config: TrainConfig, params: tuple[str, ...] = ()) -> dict[str, Search]:
    """The searched settings of ``config``'s method, restricted to ``params`` when given (ValueError naming a
    setting outside the method's space)."""
    space = search_space(config)
    unknown = [name for name in params if name not in space]
    if unknown:
        raise ValueError(f"params {', '.join(unknown)} are not searched for {config.model}/{config.loss}/"
                         f"{config.sampler}; its search space is {', '.join(space)}")
    return {name: space[name] for name in params} if params else space


def tuning_parts(prepared: PreparedData):
    """(train, validation) matrices of a prepared split — all a study may see; a ValueError without validation."""
    split = prepared.split
    if split.validation is None or split.validation.n_interactions == 0:
        raise ValueError(f"{prepared.source or 'the data'} has no validation part to select settings on; give "
                         "--validation-fraction (a share of each user's training interactions)")
    return split.train.matrix, split.validation.matrix


def _suggest(trial, name: str, search: Search):
    if search.integer:
        return trial.suggest_int(name, int(search.low), int(search.high), log=search.log)
    return trial.suggest_float(name, search.low, search.high, log=search.log)


def _in_range(value, search: Search) -> bool:
    return isinstance(value, (int, float)) and search.low <= value <= search.high


def _best_validation(history: list[dict], metric: str) -> float:
    values = [row[f"valid_{metric}"] for row in history if f"valid_{metric}" in row]
    return max(values) if values else -math.inf


def run_trial(config: TrainConfig, train, validation, *, report=None, scratch: Path | None = None) -> tuple[float, dict]:
    """Train ``config`` with early stopping; return (best validation value, details).

    With ``report(value, epoch) -> bool`` (True: stop the trial) the run stops after each validation to report its
    best value so far and continues from its checkpoint in ``scratch``, which trains exactly as one uninterrupted
    run does. details: ``best_epoch``, ``epochs`` trained, ``stopped`` (True when ``report`` stopped it).
    """
    metric = config.early_stop_metric
    if report is None:
        result = fit(config, train, validation, progress=False)
        return _best_validation(result.history, metric), {"best_epoch": result.best_epoch, "epochs": result.epochs,
                                                          "stopped": False}
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        stop, resume = 0, False
        while stop < config.epochs:
            stop = min(stop + config.eval_every, config.epochs)
            result = fit(replace(config, epochs=stop), train, validation, run_dir=scratch, resume=resume,
                         progress=False)
            resume = True
            value = _best_validation(result.history, metric)
            details = {"best_epoch": result.best_epoch, "epochs": result.epochs, "stopped": False}
            if result.epochs < stop:  # early stopping ended the run
                break
            if stop < config.epochs and report(value, stop):
                details["stopped"] = True
                break
        return value, details
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def tune(
    config: TrainConfig,
    spec: DataSpec,
    out: str | Path,
    settings: TuneSettings | None = None,
    *,
    prepared: PreparedData | None = None,
    overwrite: bool = False,
) -> TuneResult:
    """Select ``config``'s method settings on the validation part of ``spec``'s data (see the module docstring).

    ``config`` fixes everything not searched (model, loss, sampler, dim, the epoch budget ``epochs`` with
    ``eval_every`` and ``patience``, the selection metric ``early_stop_metric``, the seed of training and of the
    TPE sampler). ``prepared`` reuses data already prepared from ``spec``. ``out`` is a run directory, replaced
    only with ``overwrite``.
    """
    import optuna

    settings = settings or TuneSettings()
    if config.eval_every < 1:
        raise ValueError("tune needs validations during training: set eval_every >= 1")
    space = method_space(config, settings.params)
    train, validation = tuning_parts(prepared or prepare_data(spec))
    metric = config.early_stop_metric
    method = f"{config.model}/{config.loss}/{config.sampler}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=settings.startup_trials)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials, n_warmup_steps=config.eval_every)
              if settings.prune else optuna.pruners.NopPruner())
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    defaults = {name: getattr(config, name) for name, search in space.items() if _in_range(getattr(config, name), search)}
    study.enqueue_trial(defaults)
    tic = time.perf_counter()

    with RunDirectory(out, finished=SUMMARY_FILE, overwrite=overwrite) as run:
        scratch = run.path / ".trial"

        def objective(trial) -> float:
            values = {name: _suggest(trial, name, search) for name, search in space.items()}
            trial_config = replace(config, **values)

            def report(value: float, epoch: int) -> bool:
                trial.report(value, epoch)
                return trial.should_prune()

            value, details = run_trial(trial_config, train, validation, scratch=scratch,
                                       report=report if settings.prune else None)
            for key, item in details.items():
                trial.set_user_attr(key, item)
            log.info("%s trial %d: %s=%.4f (%s epochs)%s  %s", method, trial.number, metric, value, details["epochs"],
                     " pruned" if details["stopped"] else "", _show(values))
            if not math.isfinite(value):
                raise ValueError(f"trial {trial.number} gave no validation value; raise epochs above eval_every")
            if details["stopped"]:
                raise optuna.TrialPruned()
            return value

        study.optimize(objective, n_trials=settings.trials, catch=())
        selected = dict(study.best_params)
        best_config = replace(config, **selected)
        trials = _trials_frame(study)
        atomic.save_text(trials.to_csv(index=False), run.path / TRIALS_FILE)
        atomic.save_json({"train": best_config.to_dict(), "data": asdict(spec)}, run.path / BEST_CONFIG_FILE)
        _plot_history(study, run.path / HISTORY_PLOT, title=f"{method}: validation {metric}")
        first = study.trials[0]
        default_value = first.value if first.state == optuna.trial.TrialState.COMPLETE else None
        summary = {
            "method": method, "metric": f"validation {metric}",
            "space": {name: asdict(search) for name, search in space.items()},
            "budget": {"trials": settings.trials, "epochs": config.epochs, "eval_every": config.eval_every,
                       "patience": config.patience, "prune": settings.prune,
                       "startup_trials": settings.startup_trials, "seed": config.seed},
            "best": {"trial": study.best_trial.number, "value": study.best_value, "settings": selected},
            "defaults": {"settings": defaults, "value": default_value},
            "trials": {state: int((trials["state"] == state).sum()) for state in ("COMPLETE", "PRUNED")},
            "seconds": time.perf_counter() - tic,
        }
        atomic.save_json(summary, run.path / SUMMARY_FILE)  # last: the study is finished
        run.publish()
    return TuneResult(best_config=best_config, best_value=study.best_value, default_value=default_value,
                      selected=selected, trials=trials)


def _trials_frame(study) -> pd.DataFrame:
    frame = study.trials_dataframe(attrs=("number", "value", "params", "state", "duration", "user_attrs"))
    frame.columns = [c.removeprefix("params_").removeprefix("user_attrs_") for c in frame.columns]
    if "duration" in frame:
        frame["seconds"] = frame.pop("duration").dt.total_seconds().round(2)
    return frame


def _plot_history(study, path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization.matplotlib import plot_optimization_history

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        axes = plot_optimization_history(study)
    axes.set_title(title)
    atomic.save_figure(axes.figure, path)


def _show(values: dict) -> str:
    return " ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                    for name, value in values.items())


def describe(selected: dict) -> str:
    """``"lr=0.05 l2=0.0001"``: the selected settings in one short string (tables)."""
    return _show(selected)
