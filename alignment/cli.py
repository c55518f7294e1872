"""Command line: ``python -m alignment {train,evaluate,experiment,estimate-flip-rate} ...``.

Run ``python -m alignment COMMAND --help`` for each command's options. Everything runs offline.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .losses import LOSSES

logger = logging.getLogger("alignment")


def _flip_rate(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 0.5) or 'auto', got {text!r}") from None
    if not 0.0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"flip rate must lie in [0, 0.5), got {value}")
    return value


def _injection_rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"injected flip rate must lie in [0, 0.5), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m alignment", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune a policy with DPO / rDPO / cDPO / IPO")
    train.add_argument("--data", help="preference pairs (.jsonl[.gz], .json, .parquet); default: the controlled "
                       "experiment's pairs sampled from the model")
    train.add_argument("--model", default="default", help="'default' (shipped stories260K) or a model folder")
    train.add_argument("--loss", choices=LOSSES, default="dpo", help="preference loss")
    train.add_argument("--flip-rate", type=_flip_rate, default=0.0, help="ε for rdpo/cdpo, or 'auto'")
    train.add_argument("--inject-flips", type=_injection_rate, default=0.0,
                       help="flip this share of the training labels first (experiments)")
    train.add_argument("--clean-data", help="clean-labelled pairs calibrating the 'auto' estimate")
    train.add_argument("--steps", type=int, default=40)
    train.add_argument("--beta", type=float, default=0.1)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--on-invalid", choices=("raise", "drop"), default="raise",
                       help="what to do with invalid pairs in --data (dropped rows are counted)")
    train.add_argument("--out", default="runs/align", help="run directory")

    evaluate = commands.add_parser("evaluate", help="evaluate a trained run")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--data", help="pairs to score the implicit reward on; default: the experiment's "
                          "held-out prompts and clean pairs")

    experiment = commands.add_parser("experiment", help="DPO vs cDPO vs rDPO under injected flips")
    experiment.add_argument("--flip-rate", type=_injection_rate, nargs="+", required=True)
    experiment.add_argument("--seeds", type=int, default=3)
    experiment.add_argument("--steps", type=int, default=None, help="training steps per run (default 40)")
    experiment.add_argument("--methods", nargs="+", default=None, help="subset of dpo cdpo rdpo rdpo_auto")
    experiment.add_argument("--model", default="default")
    experiment.add_argument("--train-prompts", type=int, default=None, help="use only this many training prompts")
    experiment.add_argument("--eval-prompts", type=int, default=None, help="held-out prompts (default 32)")
    experiment.add_argument("--eval-samples", type=int, default=None,
                            help="samples per held-out prompt, for the reward/KL and for the clean pairs (default 16)")
    experiment.add_argument("--samples-per-prompt", type=int, default=None,
                            help="continuations sampled per training prompt (default 16)")
    experiment.add_argument("--shard", type=int, nargs=2, metavar=("J", "N"), default=(0, 1),
                            help="run only cell J of every N (seed × flip-rate cells) so N processes share a grid; "
                            "combine with benchmarks/rdpo_experiment.py or alignment.experiment.merge_results")
    experiment.add_argument("--out", required=True, help="output folder (results.json, results.md, plot)")

    estimate = commands.add_parser("estimate-flip-rate", help="estimate the flip rate of preference data")
    estimate.add_argument("--data", required=True, help="annotated pairs (columns annotator1..K, PandaLM coding "
                          "0 tie / 1 first / 2 second), text pairs (chosen/rejected), or scored pairs (columns "
                          "score, label, clean)")
    estimate.add_argument("--clean-data", help="clean-labelled text pairs (scorer method)")
    estimate.add_argument("--seed", type=int, default=0)
    estimate.add_argument("--out", help="write the estimate as JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logger.setLevel(logging.INFO)
    try:
        return {"train": _train, "evaluate": _evaluate, "experiment": _experiment,
                "estimate-flip-rate": _estimate}[args.command](args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _say(message: str) -> None:
    print(message, flush=True)


def _train(args) -> int:
    import torch

    from .data import load_preference_pairs
    from .experiment import ExperimentSettings, evaluate_policy, inject_flips, make_experiment_data, train_policy
    from .io import save_pretrained_atomic, write_json_atomic
    from .models import load_model

    torch.set_num_threads(1)
    settings = ExperimentSettings(steps=args.steps, beta=args.beta, learning_rate=args.lr,
                                  batch_size=args.batch_size)
    data = None
    if args.data:
        loaded = load_preference_pairs(args.data, on_invalid=args.on_invalid)
        _say(loaded.summary())
        pairs = loaded.pairs
        clean = load_preference_pairs(args.clean_data).pairs if args.clean_data else None
    else:
        model, tokenizer = load_model(args.model)
        data = make_experiment_data(model, tokenizer, settings, seed=args.seed)
        pairs, clean = data.train, data.calibration
        _say(f"experiment pairs: {len(pairs)} training, {len(clean)} clean calibration, {data.n_tied} tied left out")
    if args.inject_flips:
        pairs, mask = inject_flips(pairs, args.inject_flips, seed=args.seed + 1000)
        _say(f"injected flips: {int(mask.sum())} of {len(mask)} pairs")
    trainer, policy, reference, tokenizer = train_policy(
        pairs, loss=args.loss, flip_rate=args.flip_rate, steps=args.steps, batch_size=args.batch_size,
        learning_rate=args.lr, beta=args.beta, seed=args.seed, model_path=args.model, clean_pairs=clean,
        show_progress=True,
    )
    out = Path(args.out)
    save_pretrained_atomic(policy, tokenizer, out / "model")
    run = {
        "model": str(args.model), "data": args.data, "loss": args.loss, "flip_rate": args.flip_rate,
        "trained_flip_rate": trainer.flip_rate, "inject_flips": args.inject_flips, "steps": args.steps,
        "beta": args.beta, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
        "n_pairs": len(pairs),
        "flip_rate_estimate": trainer.flip_rate_estimate.to_dict() if trainer.flip_rate_estimate else None,
        "log_history": trainer.state.log_history,
    }
    write_json_atomic(out / "run.json", run)
    if trainer.flip_rate_estimate is not None:
        _say(f"estimated flip rate: {trainer.flip_rate_estimate}")
    if data is not None:
        metrics = evaluate_policy(policy, reference, tokenizer, data.eval_prompts, data.eval_pairs, beta=args.beta,
                                  seed=args.seed + 20_000)
        write_json_atomic(out / "metrics.json", {**metrics, "reference_reward": data.reference_reward})
        _say(json.dumps(metrics))
    _say(f"saved {out}")
    return 0


def _evaluate(args) -> int:
    import torch

    from .data import load_preference_pairs
    from .experiment import ExperimentSettings, evaluate_policy, implicit_preference_accuracy, make_experiment_data
    from .io import write_json_atomic
    from .models import load_model

    torch.set_num_threads(1)
    run_dir = Path(args.run_dir)
    if not (run_dir / "run.json").is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no run.json); create one with `train`")
    run = json.loads((run_dir / "run.json").read_text())
    policy, tokenizer = load_model(run_dir / "model")
    reference, _ = load_model(run["model"])
    if args.data:
        pairs = load_preference_pairs(args.data).pairs
        metrics = {"pref_accuracy": implicit_preference_accuracy(policy, reference, tokenizer, pairs,
                                                                 beta=run["beta"]), "n_pairs": len(pairs)}
    else:
        settings = ExperimentSettings(beta=run["beta"])
        data = make_experiment_data(reference, tokenizer, settings, seed=run["seed"])
        metrics = evaluate_policy(policy, reference, tokenizer, data.eval_prompts, data.eval_pairs,
                                  beta=run["beta"], seed=run["seed"] + 20_000)
        metrics["reference_reward"] = data.reference_reward
    write_json_atomic(run_dir / "eval.json", metrics)
    _say(json.dumps(metrics))
    return 0


def _experiment(args) -> int:
    from .experiment import ExperimentSettings, results_table, run_experiment

    overrides = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.methods:
        overrides["methods"] = tuple(args.methods)
    if args.train_prompts is not None:
        overrides["n_train_prompts"] = args.train_prompts
    if args.samples_per_prompt is not None:
        overrides["samples_per_train_prompt"] = args.samples_per_prompt
    if args.eval_prompts is not None:
        overrides["n_eval_prompts"] = args.eval_prompts
    if args.eval_samples is not None:
        overrides["samples_per_eval_prompt"] = overrides["eval_pair_samples_per_prompt"] = args.eval_samples
    settings = ExperimentSettings(**overrides)
    results = run_experiment(args.flip_rate, seeds=args.seeds, settings=settings, model_path=args.model,
                             out_dir=args.out, progress=_say, shard=tuple(args.shard))
    _say(results_table(results))
    for key, entry in results["results"].items():
        if "estimated_flip_rate" in entry:
            est = entry["estimated_flip_rate"]
            _say(f"true ε {key}: estimated {est['mean']:.3f} ± {est['std']:.3f} "
                 f"(mean 95% CI [{est['ci_low']:.3f}, {est['ci_high']:.3f}])")
    _say(f"wrote {Path(args.out) / 'results.json'}")
    return 0


def _read_table(path: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"file not found: {p}")
    name = p.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return pd.read_json(p, lines=True)
    if name.endswith((".json", ".json.gz")):
        return pd.read_json(p)
    if name.endswith(".parquet"):
        return pd.read_parquet(p)
    if name.endswith(".csv"):
        return pd.read_csv(p)
    raise ValueError(f"{p}: unknown file type; expected .jsonl[.gz], .json[.gz], .parquet or .csv")


def _estimate(args) -> int:
    from robustrec.noise import flip_rate_from_scorer

    from .data import load_preference_pairs
    from .flip_rate import annotation_columns, estimate_flip_rate, estimate_flip_rate_from_annotations, pandalm_codes
    from .io import write_json_atomic

    frame = _read_table(args.data)
    if len(annotation_columns(frame)) >= 2:
        codes = pandalm_codes(frame)
        estimate = estimate_flip_rate_from_annotations(codes, seed=args.seed)
        unanimous = int((codes == codes[:, :1]).all(axis=1).sum())
        _say(f"{len(codes)} pairs, {codes.shape[1]} annotators, {unanimous} unanimous")
    elif {"score", "label", "clean"} <= set(frame.columns):
        clean = frame["clean"].astype(bool).to_numpy()
        estimate = flip_rate_from_scorer(
            frame.loc[~clean, "score"].to_numpy(), frame.loc[~clean, "label"].to_numpy(),
            frame.loc[clean, "score"].to_numpy(), frame.loc[clean, "label"].to_numpy(), seed=args.seed,
        )
    else:
        pairs = load_preference_pairs(args.data, on_invalid="drop")
        _say(pairs.summary())
        clean = load_preference_pairs(args.clean_data).pairs if args.clean_data else None
        estimate = estimate_flip_rate(pairs.pairs, clean_pairs=clean, seed=args.seed)
    _say(f"estimated flip rate: {estimate}")
    if args.out:
        write_json_atomic(args.out, estimate.to_dict())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
