"""Several configurations trained on the same split, one table (``python -m robustrec compare``).

    python -m robustrec compare --models mf --losses bpr nbpo tce rce --samplers uniform pld \\
        --data ../shared/data/gowalla --inject-noise 0.1 0.3 --seeds 0 1 --epochs 20 --out runs/compare

For every noise ratio and seed the data is prepared once (split, injected noise with its mask) and every
configuration trains on it. Written into ``--out``: ``runs.csv`` (one row per run), ``summary.csv`` and
``summary.md`` (mean ± std over seeds), ``metric_vs_noise.png`` (with two or more ratios) and one run
directory per run. The table holds clean-test metrics, seconds per epoch (and its ratio to the first
configuration's) and ``noisy_in_top20``, the share of injected noisy training interactions the model still
ranks in their user's top-20.

With ``--tune`` every configuration first gets the same validation-selection budget (:mod:`robustrec.tune`: the
same trials and epochs) per noise ratio, on the first seed's data; every seed then trains the selected settings,
which the tables show in their ``selected`` column beside the clean-test metrics. The studies are written to
``tune/r<R>/<method>/``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from robustrec import atomic, plots
from robustrec.config import TrainConfig
from robustrec.data import DataSpec, prepare_data
from robustrec.models import MODELS
from robustrec.objectives import LOSSES
from robustrec.rundir import RunDirectory
from robustrec.runs import train_run
from robustrec.samplers import SAMPLERS

if TYPE_CHECKING:
    from robustrec.tune import TuneSettings

log = logging.getLogger(__name__)

RUNS_FILE, SUMMARY_CSV, SUMMARY_MD, CURVE_FILE = "runs.csv", "summary.csv", "summary.md", "metric_vs_noise.png"
SHOWN = ("recall@20", "ndcg@20", "seconds_per_epoch", "time_ratio", "noisy_in_top20", "clean_in_top20")
VARIED = ("model", "loss", "sampler", "seed")  # set per configuration / per seed, not shared options


def method_name(config: TrainConfig) -> str:
    return f"{config.model}/{config.loss}/{config.sampler}"


def parse_method(text: str) -> tuple[str, str, str]:
    """``"mf/nbpo/uniform"`` (or ``mf:nbpo:uniform``; sampler optional) -> (model, loss, sampler), validated."""
    parts = text.replace(":", "/").split("/")
    if len(parts) == 2:
        parts.append("uniform")
    if len(parts) != 3:
        raise ValueError(f"configuration {text!r} must look like MODEL/LOSS[/SAMPLER]")
    for value, allowed, what in zip(parts, (MODELS, LOSSES, SAMPLERS), ("model", "loss", "sampler")):
        if value not in allowed:
            raise ValueError(f"configuration {text!r}: unknown {what} {value!r}; expected one of {allowed}")
    return parts[0], parts[1], parts[2]


def compare_runs(
    configs: Sequence[tuple[str, TrainConfig]],
    spec: DataSpec,
    out: str | Path,
    *,
    ratios: Sequence[float] = (0.0,),
    seeds: Sequence[int] = (0,),
    metric: str = "recall@20",
    progress: bool = False,
    overwrite: bool = False,
    tuning: TuneSettings | None = None,
) -> pd.DataFrame:
    """Train every ``(name, config)`` for every noise ratio and seed on shared data; write the tables.

    ``seeds`` replace both ``config.seed`` and ``spec.seed`` (split and injected noise). Returns the
    per-run frame (also ``out/runs.csv``); see :func:`summarize` for the summary. ``out`` is a run directory
    (:class:`~robustrec.rundir.RunDirectory`, finished by ``summary.md``): a finished comparison is replaced only
    with ``overwrite``.
    """
    with RunDirectory(out, finished=SUMMARY_MD, overwrite=overwrite) as run:
        frame = _train_all(configs, spec, run.path, ratios=ratios, seeds=seeds, metric=metric, progress=progress,
                           tuning=tuning)
        first = frame.groupby(["inject_noise", "seed"])["seconds_per_epoch"].transform("first")
        frame["time_ratio"] = frame["seconds_per_epoch"] / first
        atomic.save_text(frame.to_csv(index=False), run.path / RUNS_FILE)
        summary = summarize(frame, metric=metric)
        atomic.save_text(summary.to_csv(index=False), run.path / SUMMARY_CSV)
        if len(set(frame["inject_noise"])) > 1:
            plots.metric_vs_noise(frame, run.path / CURVE_FILE, metric=metric)
        atomic.save_text(to_markdown(summary) + "\n", run.path / SUMMARY_MD)  # last: the comparison is finished
        run.publish()
    return frame


def _train_all(configs, spec: DataSpec, out: Path, *, ratios, seeds, metric: str, progress: bool,
               tuning: TuneSettings | None = None) -> pd.DataFrame:
    """One run directory per (noise ratio, seed, configuration) under ``out``; their metrics, one row each. With
    ``tuning``, each configuration's settings are first selected per ratio on the first seed's data."""
    rows = []
    for ratio in ratios:
        selected: dict[str, tuple[TrainConfig, str]] = {}
        for seed in seeds:
            run_spec = replace(spec, inject_noise=float(ratio), seed=int(seed))
            tic = time.perf_counter()
            prepared = prepare_data(run_spec)
            log.info("data r=%s seed=%s: %r (%.1fs)", ratio, seed, prepared.split, time.perf_counter() - tic)
            if tuning is not None and not selected:
                selected = _tune_all(configs, run_spec, prepared, out / "tune" / f"r{ratio:g}", tuning, seed=seed)
            for name, config in configs:
                config, shown = selected.get(name, (config, None))
                config = replace(config, seed=int(seed))
                run_dir = out / f"r{ratio:g}" / f"seed{seed}" / name.replace("/", "-")
                metrics = train_run(config, run_spec, run_dir, prepared=prepared, progress=progress)
                row = {"method": name, "inject_noise": float(ratio), "seed": int(seed), "model": config.model,
                       "loss": config.loss, "sampler": config.sampler, **metrics}
                if shown is not None:
                    row["selected"] = shown
                rows.append(row)
                log.info("%s r=%s seed=%s: %s=%.4f, %.2fs/epoch", name, ratio, seed, metric, metrics[metric],
                         metrics["seconds_per_epoch"])
                atomic.save_text(pd.DataFrame(rows).to_csv(index=False), out / RUNS_FILE)  # partial results
    return pd.DataFrame(rows)


def _tune_all(configs, spec: DataSpec, prepared, out: Path, tuning: TuneSettings, *, seed: int):
    """name -> (configuration with the settings selected on ``prepared``'s validation part, those settings)."""
    from robustrec.tune import describe, tune

    selected = {}
    for name, config in configs:
        result = tune(replace(config, seed=int(seed)), spec, out / name.replace("/", "-"), tuning, prepared=prepared)
        selected[name] = (result.best_config, describe(result.selected))
        log.info("%s r=%s: selected %s (validation %s %.4f)", name, spec.inject_noise, selected[name][1],
                 config.early_stop_metric, result.best_value)
    return selected


def summarize(frame: pd.DataFrame, *, metric: str = "recall@20") -> pd.DataFrame:
    """One row per (method, noise ratio): mean ± std over seeds of the shown columns, as strings."""
    columns = [c for c in dict.fromkeys((metric, *SHOWN)) if c in frame and frame[c].notna().any()]
    rows = []
    for (method, ratio), group in frame.groupby(["method", "inject_noise"], sort=False):
        row = {"method": method, "noise": ratio, "seeds": len(group)}
        if "selected" in group:
            row["selected"] = group["selected"].iloc[0]
        for c in columns:
            values = group[c].astype(float)
            digits = 2 if c in ("seconds_per_epoch", "time_ratio") else 4
            row[c] = f"{values.mean():.{digits}f}" + (f" ± {values.std():.{digits}f}" if len(values) > 1 else "")
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["noise"], kind="stable").reset_index(drop=True)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table of ``table`` (no extra dependency)."""
    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])
