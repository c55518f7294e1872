"""Run directories: train a policy into one from the ``train`` arguments, and score one (``evaluate``).

:func:`train_run` reads and counts the pairs, trains, and writes the run's outputs (``model/``,
``config.yaml``, ``run.json``, ``metrics.json``) into a staging folder that :func:`alignment.io.publish` moves
into the run directory in one step at the end — after training has finished and passed its divergence checks,
so a diverged or interrupted run leaves no finished model. Only the main process of a multi-process run writes.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: Parsed option values a run's config.yaml leaves out: the file itself, a one-off resume, secrets, verbosity.
NOT_RECORDED = ("config", "resume_from_checkpoint", "hub_token", "verbose")


@dataclass
class TrainingPairs:
    """The pairs of a run: ``train``, optional ``eval`` and ``clean`` (DataFrames); ``read`` and ``invalid``
    count the rows of the training source (``--data``); ``experiment`` is the experiment's data without it."""

    train: pd.DataFrame
    eval: pd.DataFrame | None
    clean: pd.DataFrame | None
    read: int
    invalid: int
    experiment: object | None = None
    annotations: object | None = None


def load_training_pairs(data_args, *, model_path, seed: int, say: Callable[[str], None]) -> TrainingPairs:
    """The pairs ``train`` asks for: ``--data`` (split by ``--eval-fraction``), ``--eval-data`` and
    ``--clean-data``, each read with ``--on-invalid``; without ``--data`` the controlled experiment's pairs."""
    from .data import load_preference_pairs
    from .models import load_tokenizer

    if not data_args.data:
        from .experiment import ExperimentSettings, make_experiment_data
        from .models import load_model

        model, tokenizer = load_model(model_path)
        data = make_experiment_data(model, tokenizer, ExperimentSettings(), seed=seed)
        say(f"experiment pairs: {len(data.train)} training, {len(data.calibration)} clean calibration, "
            f"{data.n_tied} tied left out")
        return TrainingPairs(data.train, None, data.calibration, len(data.train), 0, experiment=data)

    as_messages = load_tokenizer(model_path).chat_template is not None

    def load(source, split=None):
        loaded = load_preference_pairs(source, format=data_args.data_format, on_invalid=data_args.on_invalid,
                                       split=split, hh_as_messages=as_messages)
        say(loaded.summary())
        return loaded

    loaded = load(data_args.data, data_args.data_split)
    train, held_out = loaded.pairs, None
    if data_args.eval_fraction:
        train, held_out = split_off(train, data_args.eval_fraction, seed=seed)
    if data_args.eval_data:
        held_out = load(data_args.eval_data, data_args.eval_data_split).pairs
    clean = load(data_args.clean_data).pairs if data_args.clean_data else None
    return TrainingPairs(train, held_out, clean, loaded.n_read, len(loaded.invalid), annotations=loaded.annotations)


def train_run(data_args, config, model_args, values: dict, *, say: Callable[[str], None] = print) -> Path:
    """Train as the ``train`` command does and publish the run directory ``config.output_dir``.

    Args:
        data_args, config, model_args: the parsed :class:`~alignment.arguments.TrainArguments`,
            :class:`~alignment.config.RobustDPOConfig` and :class:`~alignment.arguments.PolicyModelConfig`.
        values: the resolved option values, recorded as config.yaml.
    """
    with run_directory(Path(config.output_dir), resume=config.resume_from_checkpoint is not None,
                       overwrite=data_args.overwrite) as run:
        config.output_dir = str(run.path)  # a replacement is staged beside the run it replaces
        _train_into(run, data_args, config, model_args, values, say=say)
    return run.target


def _train_into(run, data_args, config, model_args, values: dict, *, say: Callable[[str], None]) -> None:
    from trl import get_peft_config

    from .experiment import inject_flips
    from .flip_rate import annotated_flip_rate
    from .losses import AUTO, FLIP_RATE_LOSSES, trl_label_smoothing
    from .policy import build_trainer
    from .sequences import DataCounts

    out = run.path
    resume = checkpoint_to_resume(config.resume_from_checkpoint, out)
    pairs = load_training_pairs(data_args, model_path=model_args.model_name_or_path, seed=config.seed, say=say)
    train = pairs.train
    if pairs.annotations is not None and config.flip_rate == AUTO and config.loss in FLIP_RATE_LOSSES:
        config.flip_rate = annotated_flip_rate(pairs.annotations, max_ci_width=config.flip_rate_max_ci_width,
                                               fallback=config.flip_rate_fallback)
        config.label_smoothing = trl_label_smoothing(config.loss, config.flip_rate)
        say(f"flip rate from the annotators (Dawid-Skene): one annotation {pairs.annotations.estimate}; the "
            f"pairs' labels (most probable preference) {config.flip_rate:.4f}, trained with")
    if data_args.inject_flips:
        train, mask = inject_flips(train, data_args.inject_flips, seed=config.seed + 1000)
        say(f"injected flips: {int(mask.sum())} of {len(mask)} pairs")

    trainer = build_trainer(train, config, model_args.model_name_or_path, model_kwargs=model_kwargs(model_args),
                            peft_config=get_peft_config(model_args), eval_pairs=pairs.eval, clean_pairs=pairs.clean)
    lengths = trainer.length_counts["train"]
    if data_args.eval_fraction:  # the held-out pairs came out of --data: count them with it
        lengths = lengths + trainer.length_counts["eval"]
    counts = DataCounts.of(pairs.read, pairs.invalid, lengths)
    say(f"data: {counts.summary()}; {trainer.length_counts['train'].used} pairs train"
        + (f", {trainer.length_counts['eval'].used} evaluate" if "eval" in trainer.length_counts else ""))

    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    if trainer.accelerator.is_main_process:
        write_run(trainer, out, data_args=data_args, config=config, model_args=model_args, values=values,
                  counts=counts, seconds=seconds, experiment=pairs.experiment, annotations=pairs.annotations,
                  say=say)
        run.publish()
        say(f"saved {run.target} ({trainer.state.global_step} steps, {seconds:.1f} s)")
    trainer.accelerator.wait_for_everyone()


#: The file a finished run writes last (published after everything else).
FINISHED_MARKER = "run.json"


@contextmanager
def run_directory(out: Path, *, resume: bool, overwrite: bool):
    """The run directory ``out`` as a transaction (:class:`robustrec.rundir.RunDirectory`: a lock, the resume and
    overwrite rules, a staged replacement). Under ``accelerate launch`` the main process holds it and every
    process gets its decision (the path to write to, or the same error), so no process trains alone."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    from robustrec.rundir import RunDirectory, RunDirectoryError

    transaction = RunDirectory(out, finished=FINISHED_MARKER, resumable="checkpoint-*", resume=resume,
                               overwrite=overwrite)
    state = PartialState()
    decision = [None]
    if state.is_main_process:
        try:
            transaction.__enter__()
            decision = [("ok", str(transaction.path))]
        except RunDirectoryError as error:
            decision = [("error", str(error))]
    if state.num_processes > 1:
        broadcast_object_list(decision)
    kind, detail = decision[0]
    if kind == "error":
        raise RunDirectoryError(detail)
    transaction.path = Path(detail)
    if not state.is_main_process:
        yield transaction
        return
    try:
        yield transaction
    except BaseException:
        transaction.__exit__(*sys.exc_info())
        raise
    transaction.__exit__(None, None, None)


def write_run(trainer, out: Path, *, data_args, config, model_args, values, counts, seconds, experiment, say,
              annotations=None):
    """Stage the run's outputs, then publish them into ``out`` (the one step that makes them visible)."""
    import yaml

    from .io import publish, save_pretrained_atomic, staging_folder, write_json_atomic, write_text_atomic

    staging = staging_folder(out)
    # without accelerate's mixed-precision wrapper on forward: saved and scored in float32, as `evaluate` does
    policy = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    save_pretrained_atomic(policy, trainer.processing_class, staging / "model")
    recorded = {key: value for key, value in values.items() if key not in NOT_RECORDED}
    write_text_atomic(staging / "config.yaml", yaml.safe_dump(recorded, sort_keys=False))
    estimate = trainer.flip_rate_estimate
    write_json_atomic(staging / FINISHED_MARKER, {
        "model": str(model_args.model_name_or_path), "adapter": hasattr(policy, "peft_config"),
        "dtype": model_args.dtype, "data_path": data_args.data, "data_split": data_args.data_split,
        "loss": config.loss, "flip_rate": config.flip_rate, "trained_flip_rate": trainer.flip_rate,
        "label_smoothing": config.label_smoothing, "inject_flips": data_args.inject_flips,
        "beta": config.beta, "seed": config.seed, "max_length": config.max_length,
        "max_prompt_length": config.max_prompt_length, "truncation_mode": config.truncation_mode,
        "data": counts.to_dict(), "split": {name: c.used for name, c in trainer.length_counts.items()},
        "steps": trainer.state.global_step, "world_size": trainer.accelerator.num_processes,
        "flip_rate_estimate": estimate.to_dict() if estimate is not None else None,
        "annotations": None if annotations is None else {
            "one_annotation_flip_rate": annotations.estimate.to_dict(),
            "label_flip_rate": annotations.label_flip_rate,
        },
        "seconds": seconds, "peak_rss_mb": peak_rss_mb(), "log_history": trainer.state.log_history,
    })
    if experiment is not None:
        from .experiment import evaluate_policy

        metrics = evaluate_policy(policy, trainer.ref_model, trainer.processing_class, experiment.eval_prompts,
                                  experiment.eval_pairs, beta=config.beta, seed=config.seed + 20_000)
        write_json_atomic(staging / "metrics.json", {**metrics, "reference_reward": experiment.reference_reward})
        say(json.dumps(metrics))
    publish(staging, out, last=FINISHED_MARKER)


def evaluate_run(run_dir: str | Path, args, *, say: Callable[[str], None] = print) -> dict:
    """Score the run in ``run_dir`` as the ``evaluate`` command does; writes and returns its eval.json.

    ``args``: the parsed :class:`~alignment.arguments.EvaluateArguments`. With ``args.data`` the pairs are cut
    exactly as in the run's training (its max_length, max_prompt_length, truncation_mode); without, a run
    trained on the experiment's pairs is scored on the experiment's held-out prompts.
    """
    from robustrec.atomic import read_json

    from .data import load_preference_pairs
    from .io import write_json_atomic
    from .models import check_finite
    from .policy import evaluate_pairs, load_trained
    from .sequences import DataCounts, LengthLimits

    run_dir = Path(run_dir)
    if not (run_dir / FINISHED_MARKER).is_file():
        raise FileNotFoundError(f"{run_dir}: not a finished run directory (no {FINISHED_MARKER}); create one with "
                                "`train`")
    run = read_json(run_dir / FINISHED_MARKER, keys=("model", "beta"), hint="retrain the run")
    policy, reference, tokenizer = load_trained(run_dir / "model", run["model"], adapter=run.get("adapter", False),
                                                dtype=run.get("dtype"))
    check_finite(policy, str(run_dir / "model"))
    started = time.perf_counter()
    if args.data:
        loaded = load_preference_pairs(args.data, format=args.data_format, on_invalid=args.on_invalid,
                                       split=args.data_split, hh_as_messages=tokenizer.chat_template is not None)
        say(loaded.summary())
        limits = LengthLimits(run["max_length"], run.get("max_prompt_length"), run.get("truncation_mode", "keep_end"))
        metrics, lengths = evaluate_pairs(policy, tokenizer, loaded.pairs, limits, beta=run["beta"],
                                          reference=reference, batch_size=args.batch_size, progress=not args.json)
        metrics["data"] = DataCounts.of(loaded.n_read, len(loaded.invalid), lengths).to_dict()
        say(f"data: {DataCounts(**metrics['data']).summary()}")
    else:
        if run.get("data_path") is not None:
            raise ValueError(f"{run_dir} was trained on {run['data_path']}: pass --data with held-out pairs")
        from .experiment import ExperimentSettings, evaluate_policy, make_experiment_data

        if reference is None:  # an adapter run: the experiment samples its pairs from a model of its own
            from .models import load_model

            reference, _ = load_model(run["model"], dtype=run.get("dtype"))
        data = make_experiment_data(reference, tokenizer, ExperimentSettings(beta=run["beta"]), seed=run["seed"])
        metrics = evaluate_policy(policy, reference, tokenizer, data.eval_prompts, data.eval_pairs,
                                  beta=run["beta"], seed=run["seed"] + 20_000)
        metrics["reference_reward"] = data.reference_reward
    metrics["seconds"] = time.perf_counter() - started
    write_json_atomic(run_dir / "eval.json", metrics)
    return metrics


def model_kwargs(model_args) -> dict:
    """Keyword arguments of :func:`alignment.models.load_model` from TRL's ModelConfig."""
    from trl import get_quantization_config

    kwargs = {"dtype": model_args.dtype}
    if model_args.attn_implementation is not None:
        kwargs["attn_implementation"] = model_args.attn_implementation
    quantization = get_quantization_config(model_args)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    return kwargs


def checkpoint_to_resume(resume: str | None, out: Path) -> str | None:
    """The checkpoint folder ``--resume`` names (``last``: the newest checkpoint-N in ``out``), or None."""
    if resume is None:
        return None
    if resume == "last":
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(out)) if out.is_dir() else None
        if last is None:
            raise FileNotFoundError(f"--resume last: no checkpoint-N folder in {out} (checkpoints are written every "
                                    "--save-steps steps)")
        return last
    if not Path(resume).is_dir():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint folder")
    return resume


def split_off(pairs: pd.DataFrame, fraction: float, *, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, held_out)``: a seeded random share ``fraction`` of the pairs held out (at least one each)."""
    import numpy as np

    n_eval = int(round(fraction * len(pairs)))
    if not 1 <= n_eval < len(pairs):
        raise ValueError(f"--eval-fraction {fraction} of {len(pairs)} pairs leaves no pair to train or evaluate on")
    order = np.random.default_rng(seed).permutation(len(pairs))
    return pairs.iloc[order[n_eval:]].reset_index(drop=True), pairs.iloc[order[:n_eval]].reset_index(drop=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
