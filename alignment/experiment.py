"""The controlled experiment: DPO, cDPO and rDPO under injected label flips, fully offline.

A miniature of the IMDb experiment of Chowdhury, Kini & Natarajan (ICML 2024, "Provably Robust DPO"):

1. **Policy.** The reference policy π_ref is the shipped stories260K model (:mod:`alignment.models`).
2. **Pairs.** For each training prompt (story openings, :data:`alignment.stories.STORY_OPENINGS`, split into
   training and held-out prompts), π_ref samples continuations (temperature 1, ``max_new_tokens`` tokens);
   consecutive samples of a prompt form a pair (a, b). Pairs whose two continuations have the same reward
   carry no preference and are left out (their number is recorded in ``ExperimentData.n_tied``).
3. **Ground truth.** r = :func:`alignment.stories.sentiment_reward` (positive minus negative emotion words).
4. **Preferences.** Bradley–Terry: a ≻ b with probability σ((r_a − r_b) / ``bt_temperature``), sampled once
   per pair: the *clean* labels. The default temperature 0.25 makes a one-word difference decisive
   (σ(4) = 0.982; ≈ 1.5 % of the clean labels disagree with the reward, against ≈ 9 % at 0.5), so the
   injected flips — the noise rDPO models — dominate the label noise, and the ``"auto"`` estimate, whose
   scorer error on clean pairs is bounded below by that Bradley–Terry noise, stays tight.
5. **Flips.** A share ε of the training labels is reversed with :func:`robustrec.noise.inject.flip_pairs`
   (an exact count, seeded). A share ``calibration_fraction`` of the pairs keeps its clean labels and is never
   trained on: the calibration set of the ``"auto"`` flip-rate estimate
   (:func:`alignment.flip_rate.estimate_flip_rate`, scorer method, bag-of-words scorer fitted on the clean
   pairs).

Sizes (defaults of :class:`ExperimentSettings`): 100 training prompts × 64 samples = 3,200 candidate pairs, of
which ≈ 1,780 are not tied; 30 % of them (≈ 530) are the clean calibration set, ≈ 1,250 are trained on. Sampling
them takes ≈ 25 s on one idle core; the estimate of ε then has 95 % intervals ≈ ±0.04 at every ε in
{0, …, 0.4} (with 16 samples per prompt and a scorer fitted on the noisy pairs: ±0.15 and no estimate at 0.4).
Training is the cost: ``steps`` × ``batch_size`` pairs per run, independent of the number of pairs.
6. **Methods.** :data:`EXPERIMENT_METHODS`: DPO, cDPO(ε), rDPO(ε) with the true ε, rDPO with ε estimated ("auto");
   same steps, batch, learning rate and seed.
7. **Evaluation** on the held-out prompts: mean true reward of continuations sampled from the trained
   policy (``reward``); the Monte-Carlo KL(π_θ ‖ π_ref) = mean over those samples of
   log π_θ(y|x) − log π_ref(y|x) (``kl``, nats per continuation); and the share of held-out *clean* pairs
   — reference samples ordered by their true reward, ties left out — on which the implicit reward
   β·log(π_θ/π_ref) ranks the better continuation higher (``clean_pref_accuracy``).

:func:`run_experiment` runs the grid (flip rates × seeds × methods) and returns / writes the results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from robustrec.noise import flip_pairs

from .flip_rate import FlipRateRefusedError
from .generation import completion_logprobs, sample_continuations
from .stories import STORY_OPENINGS, sentiment_reward

logger = logging.getLogger(__name__)

#: Method name -> (loss, flip rate: "true" = the injected ε, "auto" = estimated, 0.0 = none).
EXPERIMENT_METHODS: dict[str, tuple[str, str | float]] = {
    "dpo": ("dpo", 0.0),
    "cdpo": ("cdpo", "true"),
    "rdpo": ("rdpo", "true"),
    "rdpo_auto": ("rdpo", "auto"),
}

EXPERIMENT_METRICS = ("reward", "kl", "clean_pref_accuracy")


@dataclass
class ExperimentSettings:
    """Sizes and hyperparameters of the controlled experiment (defaults: the full grid's per-run budget)."""

    n_eval_prompts: int = 32
    n_train_prompts: int | None = None  # None: all the other openings
    samples_per_train_prompt: int = 64
    samples_per_eval_prompt: int = 16
    eval_pair_samples_per_prompt: int = 16
    calibration_fraction: float = 0.3
    max_new_tokens: int = 32
    bt_temperature: float = 0.25
    steps: int = 40
    batch_size: int = 16
    learning_rate: float = 1e-3
    beta: float = 0.1
    methods: tuple[str, ...] = tuple(EXPERIMENT_METHODS)
    num_threads: int = 1  # tiny matrices: one thread is fastest, and far faster on a shared machine

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in EXPERIMENT_METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {', '.join(EXPERIMENT_METHODS)}")
        if not 0 < self.calibration_fraction < 1:
            raise ValueError("calibration_fraction must lie in (0, 1)")


@dataclass
class ExperimentData:
    """The pairs of one seed (before flips).

    Attributes:
        train: DataFrame (n_train rows): ``prompt``, ``chosen``, ``rejected`` by the clean Bradley–Terry label,
            and ``reward_chosen``, ``reward_rejected``.
        calibration: same columns, the clean-labelled calibration pairs (never flipped, never trained on).
        eval_prompts: held-out prompts.
        eval_pairs: DataFrame of held-out pairs ordered by true reward (``chosen`` has the higher reward).
        reference_reward: mean true reward of π_ref's continuations of ``eval_prompts``.
        n_tied: pairs left out because their two continuations had equal reward (train + calibration + eval).
    """

    train: pd.DataFrame
    calibration: pd.DataFrame
    eval_prompts: list[str]
    eval_pairs: pd.DataFrame
    reference_reward: float
    n_tied: int


def split_prompts(n_eval: int, *, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(train_prompts, eval_prompts)``: a seeded random split of :data:`STORY_OPENINGS`."""
    order = np.random.default_rng(seed).permutation(len(STORY_OPENINGS))
    prompts = [STORY_OPENINGS[i] for i in order]
    return prompts[n_eval:], prompts[:n_eval]


def _pairs_from_samples(prompts: Sequence[str], texts: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """Consecutive samples of the same prompt as pairs (a, b) with rewards; ties left out and counted."""
    rows, tied = [], 0
    for i in range(0, len(texts) - 1, 2):
        assert prompts[i] == prompts[i + 1]
        a, b = texts[i], texts[i + 1]
        ra, rb = sentiment_reward(a), sentiment_reward(b)
        if ra == rb or a == b:
            tied += 1
            continue
        rows.append({"prompt": prompts[i], "a": a, "b": b, "reward_a": ra, "reward_b": rb})
    return pd.DataFrame(rows), tied


def _orient(frame: pd.DataFrame, a_wins: np.ndarray) -> pd.DataFrame:
    """Columns prompt, chosen, rejected, reward_chosen, reward_rejected with a chosen where ``a_wins``."""
    return pd.DataFrame({
        "prompt": frame["prompt"].to_numpy(),
        "chosen": np.where(a_wins, frame["a"], frame["b"]),
        "rejected": np.where(a_wins, frame["b"], frame["a"]),
        "reward_chosen": np.where(a_wins, frame["reward_a"], frame["reward_b"]),
        "reward_rejected": np.where(a_wins, frame["reward_b"], frame["reward_a"]),
    })


def make_experiment_data(model, tokenizer, settings: ExperimentSettings, *, seed: int = 0) -> ExperimentData:
    """Sample the pairs of one seed from the reference policy ``model`` and label them by Bradley–Terry."""
    train_prompts, eval_prompts = split_prompts(settings.n_eval_prompts, seed=seed)
    train_prompts = train_prompts[: settings.n_train_prompts]
    rng = np.random.default_rng(seed)
    k = settings.samples_per_train_prompt + settings.samples_per_train_prompt % 2
    prompts = [p for p in train_prompts for _ in range(k)]
    texts = sample_continuations(model, tokenizer, prompts, max_new_tokens=settings.max_new_tokens, seed=seed)
    pairs, tied = _pairs_from_samples(prompts, texts)
    p_a = 1.0 / (1.0 + np.exp(-(pairs["reward_a"] - pairs["reward_b"]).to_numpy() / settings.bt_temperature))
    labelled = _orient(pairs, rng.random(len(pairs)) < p_a).sample(frac=1.0, random_state=seed)
    n_cal = int(round(settings.calibration_fraction * len(labelled)))
    calibration = labelled.iloc[:n_cal].reset_index(drop=True)
    train = labelled.iloc[n_cal:].reset_index(drop=True)

    k = settings.eval_pair_samples_per_prompt + settings.eval_pair_samples_per_prompt % 2
    eval_prompt_list = [p for p in eval_prompts for _ in range(k)]
    eval_texts = sample_continuations(
        model, tokenizer, eval_prompt_list, max_new_tokens=settings.max_new_tokens, seed=seed + 10_000
    )
    eval_raw, eval_tied = _pairs_from_samples(eval_prompt_list, eval_texts)
    eval_pairs = _orient(eval_raw, (eval_raw["reward_a"] > eval_raw["reward_b"]).to_numpy())
    reference_reward = float(np.mean([sentiment_reward(t) for t in eval_texts]))
    return ExperimentData(train, calibration, eval_prompts, eval_pairs, reference_reward, tied + eval_tied)


def inject_flips(train: pd.DataFrame, flip_rate: float, *, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Swap chosen and rejected on exactly round(ε·n) pairs (:func:`robustrec.noise.inject.flip_pairs`).

    Returns the flipped copy and the (n,) bool mask of flipped pairs.
    """
    mask = flip_pairs(len(train), flip_rate, seed=seed)
    out = train.copy()
    for a, b in (("chosen", "rejected"), ("reward_chosen", "reward_rejected")):
        if a in out.columns:
            out.loc[mask, [a, b]] = train.loc[mask, [b, a]].to_numpy()
    return out, mask


def evaluate_policy(
    policy,
    reference,
    tokenizer,
    eval_prompts: Sequence[str],
    eval_pairs: pd.DataFrame,
    *,
    beta: float,
    samples_per_prompt: int = 8,
    max_new_tokens: int = 32,
    seed: int = 0,
) -> dict[str, float]:
    """``reward``, ``kl`` and ``clean_pref_accuracy`` of ``policy`` (see the module docstring)."""
    prompts = [p for p in eval_prompts for _ in range(samples_per_prompt)]
    texts = sample_continuations(policy, tokenizer, prompts, max_new_tokens=max_new_tokens, seed=seed)
    rewards = np.array([sentiment_reward(t) for t in texts])
    # Sampling stops at EOS, so EOS belongs to the sampled sequence only when the text ended early; the KL
    # estimate counts the continuation tokens (without EOS) under both models.
    logp_policy, _ = completion_logprobs(policy, tokenizer, prompts, texts)
    logp_ref, _ = completion_logprobs(reference, tokenizer, prompts, texts)
    kl = float((logp_policy - logp_ref).mean())
    accuracy = implicit_preference_accuracy(policy, reference, tokenizer, eval_pairs, beta=beta)
    return {"reward": float(rewards.mean()), "kl": kl, "clean_pref_accuracy": accuracy}


def implicit_preference_accuracy(policy, reference, tokenizer, pairs: pd.DataFrame, *, beta: float) -> float:
    """Share of pairs with β·[log π/π_ref](chosen) > β·[log π/π_ref](rejected); (n,) pairs, text columns.

    The experiment's pairs are sampled continuations that may end without EOS (sampling stops after
    ``max_new_tokens``), so they are scored as they are, without the EOS that training appends
    (:func:`alignment.policy.evaluate_pairs` scores pairs as training sees them).
    """
    prompts = list(pairs["prompt"])
    margins = 0.0
    for column, sign in (("chosen", 1.0), ("rejected", -1.0)):
        texts = list(pairs[column])
        lp, _ = completion_logprobs(policy, tokenizer, prompts, texts)
        lr, _ = completion_logprobs(reference, tokenizer, prompts, texts)
        margins = margins + sign * beta * (lp - lr)
    return float((margins > 0).float().mean())


def run_experiment(
    flip_rates: Sequence[float],
    *,
    seeds: int | Sequence[int] = 3,
    settings: ExperimentSettings | None = None,
    model_path=None,
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> dict:
    """Run every method at every flip rate for each seed; return (and write) the results.

    Args:
        seeds: a number K (seeds 0..K−1) or the seeds themselves.
        shard: ``(j, n)``: run only the (seed, flip rate) cells whose index (seed-major order) is j modulo n, so
            that n processes can share a grid; combine their results with :func:`merge_results`.
        out_dir: where ``results.json`` (rewritten after every run, so an interrupted grid keeps what it
            finished) and, for several flip rates, ``reward_vs_flip_rate.png`` go.

    Returns a dict (see :func:`build_results`): ``settings``, ``reference`` (mean/std over seeds of π_ref's
    reward), ``runs`` (one record per flip rate × seed × method) and
    ``results[str(ε)][method][metric] = {"mean", "std"}``, with
    ``results[str(ε)]["estimated_flip_rate"] = {"mean", "std", "ci_low", "ci_high", "per_seed": [...]}``.
    """
    from .losses import check_flip_rate
    from .models import load_model
    from .policy import train_policy

    settings = settings or ExperimentSettings()
    torch.set_num_threads(settings.num_threads)
    for rate in flip_rates:
        check_flip_rate(rate)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    index, n_shards = shard
    if not 0 <= index < n_shards:
        raise ValueError(f"shard must be (j, n) with 0 <= j < n; got {shard}")
    cells = [(seed, float(rate)) for seed in seed_list for rate in flip_rates]
    cells = [cell for i, cell in enumerate(cells) if i % n_shards == index]
    say = progress or (lambda message: logger.info(message))
    reference_model, tokenizer = load_model(model_path)
    runs: list[dict] = []
    references: dict[str, float] = {}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(cells) * len(settings.methods), desc="experiment runs", disable=progress is not None)
    data, data_seed = None, None
    for seed, rate in cells:
        if data_seed != seed:
            data, data_seed = make_experiment_data(reference_model, tokenizer, settings, seed=seed), seed
            references[str(seed)] = data.reference_reward
            say(
                f"seed {seed}: {len(data.train)} training pairs, {len(data.calibration)} clean calibration pairs, "
                f"{len(data.eval_pairs)} held-out clean pairs, {data.n_tied} tied pairs left out, "
                f"reference reward {data.reference_reward:.3f}"
            )
        noisy, mask = inject_flips(data.train, rate, seed=seed + 1000)
        for method in settings.methods:
            loss, rate_spec = EXPERIMENT_METHODS[method]
            flip_rate = rate if rate_spec == "true" else rate_spec
            started = time.perf_counter()
            try:
                trainer, policy, reference, tok = train_policy(
                    noisy,
                    loss=loss,
                    flip_rate=flip_rate,
                    steps=settings.steps,
                    batch_size=settings.batch_size,
                    learning_rate=settings.learning_rate,
                    beta=settings.beta,
                    seed=seed,
                    model_path=model_path,
                    clean_pairs=data.calibration,
                )
            except FlipRateRefusedError as refused:  # "auto" declined to train: a result of the experiment too
                runs.append({"flip_rate": rate, "seed": seed, "method": method, "loss": loss, "refused": str(refused),
                             "estimate": refused.estimate.to_dict(), "n_train": len(noisy),
                             "n_calibration": len(data.calibration)})
                say(f"ε={rate} seed={seed} {method}: refused ({refused.estimate})")
                bar.update(1)
                continue
            metrics = evaluate_policy(
                policy, reference, tok, data.eval_prompts, data.eval_pairs,
                beta=settings.beta, samples_per_prompt=settings.samples_per_eval_prompt,
                max_new_tokens=settings.max_new_tokens, seed=seed + 20_000,
            )
            record = {"flip_rate": rate, "seed": seed, "method": method, "loss": loss,
                      "trained_flip_rate": float(trainer.flip_rate), **metrics,
                      "seconds": time.perf_counter() - started,
                      "realised_flip_rate": float(mask.mean()) if len(mask) else 0.0,
                      "n_train": len(noisy), "n_calibration": len(data.calibration),
                      "n_eval_pairs": len(data.eval_pairs)}
            if trainer.flip_rate_estimate is not None:
                record["estimate"] = trainer.flip_rate_estimate.to_dict()
            runs.append(record)
            say(f"ε={rate} seed={seed} {method}: " + ", ".join(f"{m}={metrics[m]:.3f}" for m in EXPERIMENT_METRICS)
                + (f", ε used {trainer.flip_rate:.3f}" if rate_spec == "auto" else "")
                + f" ({record['seconds']:.0f} s)")
            bar.update(1)
            if out_dir is not None:
                from .io import write_json_atomic

                write_json_atomic(Path(out_dir) / "results.json",
                                  build_results(runs, references, flip_rates, settings.methods, asdict(settings)))
    bar.close()
    results = build_results(runs, references, flip_rates, settings.methods, asdict(settings))
    if out_dir is not None:
        write_outputs(results, out_dir)
    return results


def build_results(runs: list[dict], references: dict[str, float], flip_rates: Sequence[float],
                  methods: Sequence[str], settings: dict) -> dict:
    """The results dict of :func:`run_experiment` from its run records and per-seed reference rewards."""
    seeds = sorted({int(r["seed"]) for r in runs} | {int(s) for s in references})
    return {
        "settings": settings,
        "seeds": len(seeds),
        "seed_list": seeds,
        "flip_rates": [float(r) for r in flip_rates],
        "reference": {"reward": _mean_std(list(references.values())) if references else None,
                      "per_seed": references},
        "results": _summarise(runs, flip_rates, methods),
        "runs": runs,
    }


def merge_results(parts: Sequence[dict]) -> dict:
    """Combine the results of several shards (or seeds) of the same grid into one results dict."""
    if not parts:
        raise ValueError("nothing to merge")
    settings = parts[0]["settings"]
    for part in parts[1:]:
        if part["settings"] != settings:
            raise ValueError("cannot merge results run with different settings")
    runs = [run for part in parts for run in part["runs"]]
    keys = [(r["seed"], r["flip_rate"], r["method"]) for r in runs]
    if len(set(keys)) != len(keys):
        raise ValueError("the parts overlap: some (seed, flip rate, method) runs appear twice")
    references = {k: v for part in parts for k, v in part["reference"]["per_seed"].items()}
    flip_rates = sorted({float(r) for part in parts for r in part["flip_rates"]})
    return build_results(runs, references, flip_rates, tuple(settings["methods"]), settings)


def write_outputs(results: dict, out_dir: str | Path) -> Path:
    """Write ``results.json``, ``results.md`` (:func:`results_markdown`) and, for several flip rates, the plot."""
    from .io import write_json_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", results)
    (out / "results.md").write_text(results_markdown(results) + "\n")
    if len(results["flip_rates"]) > 1:
        from .plots import plot_reward_vs_flip_rate

        plot_reward_vs_flip_rate(results, out / "reward_vs_flip_rate.png")
    return out


def _mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean and std over the numbers among ``values`` (an unidentified estimate's value is None); None if none."""
    array = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    array = array[np.isfinite(array)]
    if not len(array):
        return {"mean": None, "std": None}
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0}


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _summarise(runs, flip_rates, methods) -> dict:
    frame = pd.DataFrame(runs)
    summary: dict[str, dict] = {}
    for rate in flip_rates:
        entry: dict[str, dict] = {}
        if frame.empty:
            summary[str(float(rate))] = entry
            continue
        at_rate = frame[frame["flip_rate"] == float(rate)]
        refused = at_rate["refused"].notna() if "refused" in at_rate else pd.Series(False, index=at_rate.index)
        for method in methods:
            rows = at_rate[(at_rate["method"] == method) & ~refused]
            n_refused = int(((at_rate["method"] == method) & refused).sum())
            if len(rows):
                entry[method] = {metric: _mean_std(rows[metric]) for metric in EXPERIMENT_METRICS}
            if n_refused:
                entry.setdefault(method, {})["refused"] = n_refused
        per_seed = [dict(r["estimate"], seed=r["seed"]) for r in runs
                    if r["flip_rate"] == float(rate) and isinstance(r.get("estimate"), dict)]
        if per_seed:
            entry["estimated_flip_rate"] = {
                **_mean_std([e["value"] for e in per_seed]),
                "ci_low": float(np.mean([e["ci_low"] for e in per_seed])),
                "ci_high": float(np.mean([e["ci_high"] for e in per_seed])),
                "per_seed": per_seed,
            }
        summary[str(float(rate))] = entry
    return summary


def results_table(results: dict) -> str:
    """A Markdown table of the results: one row per flip rate and method (mean ± std over seeds)."""
    lines = ["| ε | method | reward | KL | clean pref. acc. | ε used |", "|---|---|---|---|---|---|"]
    runs = pd.DataFrame(results["runs"])
    for key, entry in results["results"].items():
        for method, metrics in entry.items():
            if method == "estimated_flip_rate":
                continue
            if EXPERIMENT_METRICS[0] not in metrics:  # every seed refused
                lines.append(f"| {key} | {method} | " + " | ".join("—" for _ in EXPERIMENT_METRICS)
                             + f" | refused ({metrics['refused']} seeds) |")
                continue
            used = runs[(runs["flip_rate"] == float(key)) & (runs["method"] == method)]["trained_flip_rate"].mean()
            cells = [f"{metrics[m]['mean']:.3f} ± {metrics[m]['std']:.3f}" for m in EXPERIMENT_METRICS]
            refusals = f" ({metrics['refused']} seeds refused)" if metrics.get("refused") else ""
            lines.append(f"| {key} | {method} | " + " | ".join(cells) + f" | {used:.3f}{refusals} |")
    ref = results["reference"]["reward"]
    if ref is not None:
        lines.append(f"\nreference policy reward: {ref['mean']:.3f} ± {ref['std']:.3f}")
    return "\n".join(lines)


def estimates_table(results: dict) -> str:
    """A Markdown table of the ``"auto"`` estimates of ε against the true ε (empty without rdpo_auto runs)."""
    lines = ["| true ε | estimated ε (mean ± std over seeds) | mean 95% interval | per seed: value [interval] |",
             "|---|---|---|---|"]
    rows = 0
    for key, entry in results["results"].items():
        est = entry.get("estimated_flip_rate")
        if est:
            rows += 1
            per_seed = "; ".join(f"{_number(e['value'])} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]"
                                 + ("" if e.get("identifiable", True) else " not identifiable") for e in est["per_seed"])
            lines.append(f"| {key} | {_number(est['mean'])} ± {_number(est['std'])} | "
                         f"[{est['ci_low']:.3f}, {est['ci_high']:.3f}] "
                         f"| {per_seed} |")
    return "\n".join(lines) if rows else ""


def results_markdown(results: dict, command: str | None = None) -> str:
    """results.md: the settings line, the results table and the estimate table."""
    settings = results["settings"]
    head = [f"# rDPO controlled experiment: {results['seeds']} seeds (mean ± std over seeds)", ""]
    if command:
        head += ["```", command, "```", ""]
    head += [
        f"steps {settings['steps']} × batch {settings['batch_size']}, lr {settings['learning_rate']}, "
        f"β {settings['beta']}, Bradley–Terry temperature {settings['bt_temperature']}, "
        f"{settings['samples_per_train_prompt']} samples per training prompt, calibration fraction "
        f"{settings['calibration_fraction']}, {settings['max_new_tokens']} new tokens; seeds {results.get('seed_list')}",
        "",
    ]
    parts = head + [results_table(results)]
    estimates = estimates_table(results)
    if estimates:
        parts += ["", "## Estimated ε (rdpo_auto) against the true ε", "", estimates]
    return "\n".join(parts)
