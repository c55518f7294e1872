"""``robustrec noise {estimate,flag}``: how much of a log is noise, and which interactions.

    python -m robustrec noise estimate --data ../shared/data/gowalla --inject-noise 0.1 --json
    python -m robustrec noise flag --data ../shared/data/ml-100k-deca --out flagged.csv --drop-share auto

The training part of the split is "the log" (with no ``--data``, the embedded synthetic default). With
``--inject-noise R`` PLD's protocol first adds ``floor(R·|log_u|)`` random unobserved items per user and keeps the
mask, so the estimate can be checked. The estimate comes from cross-fitted MF-BPR models
(:mod:`robustrec.crossfit`: ``--method storey``, the default, or ``mixture``).

``flag`` writes FILE (CSV ``user,item,noise_score,rank[,is_injected][,is_known_noise]``, raw ids, most suspicious
first) and a cleaned log (CSV ``user,item``, default ``FILE`` with ``.clean.csv``) without the top ones:
``--drop-top F`` drops the top share F, ``--drop-share auto`` (the default) the estimated noisy share.
Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path

import pandas as pd

from robustrec.cli.common import add_data_arguments, data_spec
from robustrec.cli.options import add_config_argument, add_dataclass_arguments, from_namespace, report_config
from robustrec.crossfit import LOSS_KINDS, NOISY_SHARE_METHODS, CrossFitSettings
from robustrec.data import DataSpec

#: CrossFitSettings fields exposed under shorter flags.
CROSSFIT_FLAGS = {"n_folds": "--folds", "n_negatives": "--negatives"}
#: Sections of a ``--config`` file.
CONFIG_SECTIONS = {"data": DataSpec, "crossfit": CrossFitSettings}
#: Fewer interactions than this cannot give a noisy share.
MIN_INTERACTIONS = 20


def _share(text: str) -> str | float:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a share in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a share in [0, 1], got {text!r}")
    return value


def add_parser(commands, parents=()) -> None:
    parser = commands.add_parser("noise", parents=parents, description=__doc__.split("\n\n")[0],
                                 help="estimate the share of noisy interactions; flag the suspicious ones")
    sub = parser.add_subparsers(dest="noise_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    add_data_arguments(common, skip=("seed", "test_fraction", "validation_fraction"))
    add_dataclass_arguments(common.add_argument_group("cross-fitting"), CrossFitSettings, rename=CROSSFIT_FLAGS)
    common.add_argument("--method", default="storey", choices=NOISY_SHARE_METHODS,
                        help="storey (default): Storey's null proportion of the p-values (share of sampled "
                             "unobserved items scored above each interaction); mixture: per-user loss mixture")
    common.add_argument("--loss", default="rank", choices=LOSS_KINDS,
                        help="--method mixture's per-interaction loss: rank = probit of the share of sampled "
                             "unobserved items scored above it (default); bpr = their mean BPR loss")
    common.add_argument("--resamples", type=int, default=200, help="bootstrap resamples of the interval")
    common.add_argument("--json", action="store_true", help="print one JSON object (no progress)")
    common.add_argument("-q", "--quiet", dest="noise_quiet", action="store_true", help="no progress bars")
    est = sub.add_parser("estimate", parents=[common, *parents], help="estimated share of noisy interactions with its interval",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_argument(est, CONFIG_SECTIONS)
    est.set_defaults(run=run)
    flag = sub.add_parser("flag", parents=[common, *parents], help="interactions ranked by noise score, and a cleaned log",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    flag.add_argument("--out", type=Path, required=True, help="CSV of the ranked interactions to write")
    flag.add_argument("--clean-out", type=Path, default=None, help="cleaned log (default: OUT with .clean.csv)")
    drop = flag.add_mutually_exclusive_group()
    drop.add_argument("--drop-top", type=_share, default=None, metavar="F",
                      help="drop the top share F in [0, 1] of the ranking from the cleaned log")
    drop.add_argument("--drop-share", type=_share, default="auto", metavar="auto|F",
                      help="'auto' (default): drop the estimated noisy share; or a share like --drop-top")
    add_config_argument(flag, CONFIG_SECTIONS)
    flag.set_defaults(run=run)


def _clean_path(out: Path) -> Path:
    name = out.name[:-4] if out.name.lower().endswith(".csv") else out.name
    return out.with_name(name + ".clean.csv")


def _csv_text(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    from robustrec import atomic
    from robustrec.crossfit import analyse_noise, cleaned_log, flag_frame, ranking
    from robustrec.data import prepare_data

    report_config(args)
    if args.resamples < 1:
        raise ValueError(f"--resamples must be >= 1, got {args.resamples}")
    settings = from_namespace(CrossFitSettings, args, rename=CROSSFIT_FLAGS)
    quiet = args.json or args.noise_quiet or getattr(args, "quiet", False)
    if args.json:
        logging.getLogger("robustrec").setLevel(logging.WARNING)
    clean_path = None
    if args.noise_command == "flag":
        clean_path = args.clean_out or _clean_path(args.out)
        if clean_path.resolve() == args.out.resolve():
            raise ValueError("--clean-out must differ from --out")
        for flag, path in (("--out", args.out), ("--clean-out", clean_path)):
            if path.is_dir():
                raise ValueError(f"{flag} {path} is a folder; give the name of the CSV file to write")
    data = prepare_data(data_spec(args, seed=settings.seed))
    n = data.split.train.n_interactions
    if n < MIN_INTERACTIONS:
        raise ValueError(f"{data.source}: {n} interactions are too few to estimate a noisy share "
                         f"(>= {MIN_INTERACTIONS})")
    analysis = analyse_noise(data, settings, method=args.method, loss=args.loss, n_resamples=args.resamples,
                             progress=not quiet)
    summary = analysis.summary()
    if args.noise_command == "flag":
        frame = flag_frame(analysis)
        share = args.drop_top if args.drop_top is not None else args.drop_share
        share_value = analysis.estimate.value if share == "auto" else float(share)
        n_drop = int(round(share_value * len(frame)))
        atomic.save_text(_csv_text(frame), args.out)
        kept = cleaned_log(analysis, n_drop)
        atomic.save_text(_csv_text(kept), clean_path)
        summary.update(out=str(args.out), clean_out=str(clean_path), n_dropped=n_drop, n_kept=int(len(kept)),
                       drop_share=share_value)
        truth = data.noise_mask
        if truth is not None and n_drop:
            summary["precision_of_dropped"] = float(truth[ranking(analysis)[:n_drop]].mean())
    if args.json:
        print(json.dumps(summary, sort_keys=True, allow_nan=False))
        return 0
    e = analysis.estimate
    print(f"data: {data.source}: {summary['n_interactions']:,} interactions of {summary['n_users']:,} users")
    print(f"estimated noisy share: {e.value:.3f}  [{e.ci_low:.3f}, {e.ci_high:.3f}] "
          f"({e.confidence:.0%} interval, {e.method}, {settings.n_folds}-fold cross-fitted MF-BPR "
          f"{'p-values' if args.method == 'storey' else args.loss + ' losses'})")
    if "injected_share" in summary:
        print(f"injected share:        {summary['injected_share']:.3f}  (noise-score AUC {summary['injected_auc']:.3f})")
    if "known_noisy_share" in summary:
        print(f"known noisy share:     {summary['known_noisy_share']:.3f}  "
              f"(noise-score AUC {summary['known_noise_auc']:.3f})")
    if args.noise_command == "flag":
        print(f"wrote {args.out} ({len(analysis.losses):,} ranked interactions) and {summary['clean_out']} "
              f"({summary['n_kept']:,} kept, {summary['n_dropped']:,} dropped = share {summary['drop_share']:.3f})")
    return 0
