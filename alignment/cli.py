"""Command line: ``python -m alignment {train,evaluate,experiment,estimate-flip-rate} ...``.

``train`` takes every field of :class:`~alignment.config.RobustDPOConfig` (TRL's DPOConfig and transformers'
TrainingArguments), of TRL's ModelConfig (``--use-peft``, ``--lora-r``, ...) and of
:class:`~alignment.arguments.TrainArguments` as a flag, through TRL's own parser; ``--config FILE.yaml``
sets any of them (flags given on the command line win), and every run records its resolved flags in
``RUN/config.yaml``, so ``train --config RUN/config.yaml --out NEW`` repeats it. Run ``python -m alignment
COMMAND --help`` for each command's options. Everything runs offline. Bad input is one line on stderr and exit
status 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger("alignment")

COMMANDS = {
    "train": "fine-tune a policy with DPO / rDPO / cDPO / IPO (every DPOConfig field is a flag; --config FILE)",
    "evaluate": "score a trained run on preference pairs (implicit-reward accuracy and margin)",
    "experiment": "the controlled experiment: DPO vs cDPO vs rDPO under injected flips",
    "estimate-flip-rate": "estimate the flip rate of preference data",
}

def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = one_line_errors(argparse.ArgumentParser)(
        prog="python -m alignment", description=__doc__.splitlines()[0], allow_abbrev=False,
        epilog="commands:\n" + "\n".join(f"  {name:20s}{text}" for name, text in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_flags(parser)
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="the command's options (COMMAND --help)")
    args = parser.parse_args(argv)
    # train's --debug is TrainingArguments' own (overflow detection): there, write --debug before the command
    debug = args.debug or (args.command != "train" and "--debug" in args.arguments)
    verbose = args.verbose or bool({"-v", "--verbose"} & set(args.arguments))
    quiet = args.quiet or bool({"-q", "--quiet"} & set(args.arguments))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s",
                        force=True)  # own the root configuration, whatever ran before in this process
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    _quiet_libraries(verbose)
    runners = {"train": run_train, "evaluate": run_evaluate, "experiment": run_experiment,
               "estimate-flip-rate": run_estimate_flip_rate}
    from .trainer import TrainingDivergedError

    try:
        return runners[args.command](args.arguments)
    except KeyboardInterrupt:
        print(f"alignment {args.command}: interrupted; a finished run in the output folder is intact, and a "
              "checkpoint-N folder (--save-steps) continues with --resume last", file=sys.stderr)
        return 130
    except (ValueError, OSError, MemoryError, TrainingDivergedError) as error:
        if debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"alignment {args.command}: error: {message}", file=sys.stderr)
        return 2


#: Libraries whose deprecation warnings concern their own calls into each other (TRL 1.16 still calls the
#: gradient_checkpointing names that transformers 5 deprecates), not anything the user wrote.
LIBRARIES = ("transformers", "trl", "accelerate", "peft", "datasets", "torch")


def one_line_errors(parser_class: type) -> type:
    """``parser_class`` whose usage errors are one line (argparse prints the whole usage first: 170 lines for
    ``train``, whose every DPOConfig field is a flag)."""

    class OneLineErrors(parser_class):
        def error(self, message: str):
            self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    OneLineErrors.__name__ = parser_class.__name__
    return OneLineErrors


def _quiet_libraries(verbose: bool) -> None:
    """Keep stderr for what concerns the run: no library-internal deprecation warnings, and no per-file
    loading/saving progress bars unless ``--verbose``."""
    import warnings

    for library in LIBRARIES:
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=rf"{library}(\.|$)")
    if not verbose:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


def _add_common_flags(parser: argparse.ArgumentParser, *, debug: bool = True) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level, libraries included")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only (no progress or counts)")
    if debug:
        parser.add_argument("--debug", action="store_true", help="show the traceback of an error")


def _say(message: str) -> None:
    """Print on the main process only (``accelerate launch`` starts several)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(message, flush=True)


# -- train -----------------------------------------------------------------------------------------------------


def train_parser():
    """TRL's parser over the three argument dataclasses of ``train``, plus ``--config``."""
    from trl import TrlParser

    from .arguments import PolicyModelConfig, TrainArguments
    from .config import RobustDPOConfig

    parser = one_line_errors(TrlParser)((TrainArguments, RobustDPOConfig, PolicyModelConfig), prog="python -m alignment train",
                       description=COMMANDS["train"], allow_abbrev=False)
    parser.add_argument("--config", help="YAML file of option values (keys with underscores, as in RUN/config.yaml); "
                        "options given on the command line override it")
    _add_common_flags(parser, debug=False)  # --debug is a TrainingArguments field; use it before `train`
    return parser


def parse_train(argv: list[str]):
    """``(data_args, config, model_args, values)``: the dataclasses of ``train`` and the resolved flag values.

    ``values`` (flag name -> value) is what RUN/config.yaml records: the file and command line merged, with the
    model's context filled in for ``max_length`` and evaluation switched on when there is an eval set.
    """
    from transformers import AutoConfig

    from .models import load_tokenizer, model_folder
    from .sequences import model_context_length

    parser = train_parser()
    values = _parse_with_config_file(parser, argv)
    folder = model_folder(values["model_name_or_path"])
    if values["max_length"] is None:
        values["max_length"] = model_context_length(AutoConfig.from_pretrained(folder, local_files_only=True),
                                                    load_tokenizer(folder))
    if (values["eval_data"] or values["eval_fraction"]) and values["eval_strategy"] in ("no", None):
        values["eval_strategy"] = "steps"
    fields = {key: value for key, value in values.items() if key not in ("config", "verbose", "quiet")}
    data_args, config, model_args = parser.parse_dict(fields)
    return data_args, config, model_args, values


def _parse_with_config_file(parser, argv: list[str]) -> dict:
    """The parsed flag values, with the defaults replaced by those of ``--config FILE`` when given."""
    import yaml

    values = vars(parser.parse_args(argv))
    if values.get("config"):
        path = Path(values["config"])
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            file_values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML ({error})") from None
        if not isinstance(file_values, dict):
            raise ValueError(f"{path}: expected a mapping of option names to values")
        unknown = parser.set_defaults_with_config(**file_values)
        if unknown:
            raise ValueError(f"{path}: unknown options {', '.join(unknown[0::2])}")
        values = vars(parser.parse_args(argv))
    return values


def run_train(argv: list[str]) -> int:
    from .runs import train_run

    data_args, config, model_args, values = parse_train(argv)
    _set_threads(data_args.num_threads)
    train_run(data_args, config, model_args, values, say=_say)
    return 0


def _set_threads(num_threads: int | None) -> None:
    if num_threads is not None:
        import torch

        torch.set_num_threads(num_threads)


# -- evaluate --------------------------------------------------------------------------------------------------


def run_evaluate(argv: list[str]) -> int:
    from transformers import HfArgumentParser

    from .arguments import EvaluateArguments
    from .runs import evaluate_run

    parser = one_line_errors(HfArgumentParser)(EvaluateArguments, prog="python -m alignment evaluate", allow_abbrev=False,
                              description=COMMANDS["evaluate"])
    parser.add_argument("run_dir", help="a run directory written by train")
    _add_common_flags(parser)
    values = vars(parser.parse_args(argv))
    run_dir = values.pop("run_dir")
    values.pop("verbose"), values.pop("quiet"), values.pop("debug")
    (args,) = parser.parse_dict(values)
    _set_threads(args.num_threads)
    metrics = evaluate_run(run_dir, args, say=(lambda message: None) if args.json else _say)
    if args.json:
        print(json.dumps(metrics), flush=True)
    else:
        _say(json.dumps({key: value for key, value in metrics.items() if key != "data"}))
    return 0


# -- experiment and estimate-flip-rate --------------------------------------------------------------------------


def _flip_rate_option(text: str) -> float:
    from .losses import check_flip_rate

    try:
        return check_flip_rate(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def experiment_parser() -> argparse.ArgumentParser:
    from .experiment import EXPERIMENT_METHODS

    parser = one_line_errors(argparse.ArgumentParser)(prog="python -m alignment experiment", description=COMMANDS["experiment"],
                                     allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--flip-rate", type=_flip_rate_option, nargs="+", required=True,
                        help="injected flip rates ε in [0, 0.5)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 40)")
    parser.add_argument("--methods", nargs="+", default=None, choices=list(EXPERIMENT_METHODS),
                        help="subset of the methods (default: all)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--train-prompts", type=int, default=None, help="use only this many training prompts")
    parser.add_argument("--eval-prompts", type=int, default=None, help="held-out prompts (default 32)")
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="samples per held-out prompt, for the reward/KL and for the clean pairs (default 16)")
    parser.add_argument("--samples-per-prompt", type=int, default=None,
                        help="continuations sampled per training prompt (default 64)")
    parser.add_argument("--shard", type=int, nargs=2, metavar=("J", "N"), default=(0, 1),
                        help="run only cell J of every N (seed × flip-rate cells) so N processes share a grid; "
                        "combine with benchmarks/rdpo_experiment.py or alignment.experiment.merge_results")
    parser.add_argument("--out", required=True, help="output folder (results.json, results.md, plot)")
    _add_common_flags(parser)
    return parser


def run_experiment(argv: list[str]) -> int:
    from .experiment import ExperimentSettings, results_table, run_experiment as run_grid

    args = experiment_parser().parse_args(argv)
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
    results = run_grid(args.flip_rate, seeds=args.seeds, settings=settings, model_path=args.model,
                       out_dir=args.out, progress=_say, shard=tuple(args.shard))
    _say(results_table(results))
    for key, entry in results["results"].items():
        if "estimated_flip_rate" in entry:
            est = entry["estimated_flip_rate"]
            _say(f"true ε {key}: estimated {est['mean']:.3f} ± {est['std']:.3f} "
                 f"(mean 95% CI [{est['ci_low']:.3f}, {est['ci_high']:.3f}])")
    _say(f"wrote {Path(args.out) / 'results.json'}")
    return 0


def estimate_parser() -> argparse.ArgumentParser:
    from robustrec.noise import DEFAULT_MAX_CI_WIDTH

    from .data import ON_INVALID
    from .scorers import SCORERS

    parser = one_line_errors(argparse.ArgumentParser)(
        prog="python -m alignment estimate-flip-rate", allow_abbrev=False, description=COMMANDS["estimate-flip-rate"],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", required=True, help="annotated pairs (response1, response2, annotator1..K in "
                        "PandaLM's coding 0 tie / 1 first / 2 second), text pairs (chosen/rejected), or scored pairs "
                        "(columns score, label, clean)")
    parser.add_argument("--clean-data", help="pairs with trusted labels: calibrate the scorer's error")
    parser.add_argument("--scorer", choices=SCORERS, default="bow",
                        help="the scorer of text pairs: bow (bag of words), embeddings (--model's mean-pooled hidden "
                        "states), reward-model (--reward-model)")
    parser.add_argument("--model", default="default", help="the causal LM whose hidden states --scorer embeddings reads")
    parser.add_argument("--reward-model", help="local AutoModelForSequenceClassification folder (--scorer reward-model)")
    parser.add_argument("--max-ci-width", type=float, default=DEFAULT_MAX_CI_WIDTH,
                        help="widest interval train --flip-rate auto accepts (reported, not enforced here)")
    parser.add_argument("--on-invalid", choices=ON_INVALID, default="raise",
                        help="what to do with an invalid pair in --data or --clean-data: raise, or drop and count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the estimate as one JSON object")
    parser.add_argument("--out", help="write the estimate as JSON here")
    _add_common_flags(parser)
    return parser


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


def run_estimate_flip_rate(argv: list[str]) -> int:
    """Estimate ε, say whether ``train --flip-rate auto`` would train with it (and with what), and why not."""
    from robustrec.noise import flip_rate_from_scorer

    from .data import load_preference_pairs, pairs_as_text
    from .flip_rate import (
        annotation_columns,
        estimate_flip_rate,
        flip_rate_refusal,
        pair_flip_rates_from_annotations,
        pandalm_codes,
    )
    from .io import write_json_atomic
    from .scorers import make_scorer

    args = estimate_parser().parse_args(argv)
    say = (lambda message: None) if args.json else _say
    if (args.scorer == "reward-model") != (args.reward_model is not None):
        raise ValueError("--scorer reward-model and --reward-model PATH go together")
    frame = _read_table(args.data)
    columns = annotation_columns(frame)
    if len(columns) == 1:
        raise ValueError(f"{args.data}: one annotator column ({columns[0]}); repeated labels need at least two "
                         "(annotator1, annotator2, ...)")
    trains_with = None
    if len(columns) >= 2:  # repeated annotations: Dawid-Skene on every row's labels, no scorer and no texts needed
        codes = pandalm_codes(frame)
        rates = pair_flip_rates_from_annotations(codes, seed=args.seed)
        estimate, trains_with = rates.estimate, rates.label_flip_rate
        unanimous = int((codes == codes[:, :1]).all(axis=1).sum())
        say(f"{len(codes)} pairs, {codes.shape[1]} annotators, {unanimous} unanimous; the most probable labels' own "
            f"flip rate {trains_with:.4f}")
    elif {"score", "label", "clean"} <= set(frame.columns):
        clean = frame["clean"].astype(bool).to_numpy()
        estimate = flip_rate_from_scorer(
            frame.loc[~clean, "score"].to_numpy(), frame.loc[~clean, "label"].to_numpy(),
            frame.loc[clean, "score"].to_numpy(), frame.loc[clean, "label"].to_numpy(),
        )
    else:
        pairs = load_preference_pairs(args.data, on_invalid=args.on_invalid)
        say(pairs.summary())
        clean = None
        if args.clean_data:
            clean_pairs = load_preference_pairs(args.clean_data, on_invalid=args.on_invalid)
            say(clean_pairs.summary())
            clean = pairs_as_text(clean_pairs.pairs)
        scorer = make_scorer(args.scorer, path=args.reward_model if args.reward_model else args.model)
        estimate = estimate_flip_rate(pairs_as_text(pairs.pairs), clean_pairs=clean, scorer=scorer, seed=args.seed)
    refusal = flip_rate_refusal(estimate, max_ci_width=args.max_ci_width)
    result = {**estimate.to_dict(), "auto": {
        "accepted": refusal is None, "max_ci_width": args.max_ci_width, "refusal": refusal,
        "trains_with": None if refusal else (trains_with if trains_with is not None else estimate.value)}}
    say(f"estimated flip rate: {estimate}")
    say(refusal or f"train --flip-rate auto would train with ε = {result['auto']['trains_with']:.4f}")
    if args.json:
        print(json.dumps(result), flush=True)
    if args.out:
        write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
