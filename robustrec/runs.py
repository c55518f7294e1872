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

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy.stats import rankdata

from robustrec import checkpoint, data
from robustrec.data import FORMATS, Interactions, Split
from robustrec.evaluate import ranking_metrics, top_k_items
from robustrec.models import PREFERENCE
from robustrec.training import TrainConfig, evaluate_model, fit, new_model

log = logging.getLogger(__name__)

CONFIG_FILE, MODEL_FILE, METRICS_FILE, HISTORY_FILE = "config.json", "model.pt", "metrics.json", "history.csv"
LOSS_PLOT_FILE = "loss_distribution.png"
NOISE_SOURCES = ("injected", "ratings")  # where a run's known-noise mask comes from


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
    inject_noise: float = field(
        default=0.0,
        metadata={"help": "PLD's noise protocol on the training part: add floor(R*|train_u|) random unobserved "
                          "items per user (mask kept for diagnostics); 0 = none"},
    )

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; expected one of {FORMATS}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if not self.inject_noise >= 0:
            raise ValueError(f"inject_noise must be >= 0, got {self.inject_noise}")


@dataclass(frozen=True)
class PreparedData:
    """A run's split and, where known, which training interactions are noise.

    Attributes:
        split: train (possibly with injected interactions), clean test, optional validation.
        noise_mask: (n_train,) bool in ``split.train.coo()`` order, True for a known noisy interaction, or None.
        noise_source: "injected" (``DataSpec.inject_noise``), "ratings" (DeCA: rating < 4) or None.
    """

    split: Split
    noise_mask: np.ndarray | None = None
    noise_source: str | None = None


def inject_noise(train: Interactions, ratio: float, *, seed: int) -> tuple[Interactions, np.ndarray]:
    """``train`` plus PLD-style random interactions (:func:`robustrec.noise.add_random_interactions`) and the
    (n_train_after,) mask of the added ones in CSR order. Ratings/timestamps are not carried over."""
    from robustrec.noise import add_random_interactions

    users, items = train.coo()
    injected = add_random_interactions(users, items, train.n_items, ratio, seed=seed)
    noisy = Interactions.from_indices(
        injected.users, injected.items, n_users=train.n_users, n_items=train.n_items,
        user_ids=train.user_ids, item_ids=train.item_ids,
    )
    # injected is sorted by (user, item), which is CSR order: the mask lines up with noisy.coo()
    return noisy, np.asarray(injected.is_noise, dtype=bool)


def _is_deca(spec: DataSpec) -> bool:
    if spec.path is None:
        return False
    return spec.format == "deca" or (spec.format == "auto" and data.detect_format(spec.path) == "deca")


def prepare_data(spec: DataSpec) -> PreparedData:
    """The run's split with its known-noise mask: injected noise (training part only, after the validation
    part is carved out) or, for DeCA logs, the real noise (ratings below 4)."""
    split = load_data(spec, inject=False)
    if spec.inject_noise > 0:
        train, mask = inject_noise(split.train, spec.inject_noise, seed=spec.seed)
        split = Split(train=train, test=split.test, validation=split.validation, report=split.report)
        return PreparedData(split, mask, "injected")
    if split.train.ratings is not None and _is_deca(spec):
        return PreparedData(split, data.deca_noise_mask(split.train), "ratings")
    return PreparedData(split)


def load_data(spec: DataSpec, *, inject: bool = True) -> Split:
    """The run's split; carves a validation part out of train when asked and none exists, then adds
    ``spec.inject_noise`` (unless ``inject=False``; :func:`prepare_data` also returns the mask)."""
    if inject and spec.inject_noise > 0:
        return prepare_data(spec).split
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


def training_losses(
    user_factors: torch.Tensor, item_factors: torch.Tensor, train: sp.csr_matrix, *, n_negatives: int = 4,
    seed: int = 0, chunk: int = 1 << 18,
) -> np.ndarray:
    """(n_train,) BPR loss of every training interaction, in CSR order: mean over ``n_negatives`` uniform
    unobserved items j of softplus(s_uj − s_ui) (the quantity whose distribution PLD looks at)."""
    from robustrec.samplers import UniformNegativeSampler

    train = sp.csr_matrix(train)
    users = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
    items = train.indices.astype(np.int64)
    negatives = UniformNegativeSampler(train).sample(users, n_negatives, np.random.default_rng(seed))
    out = np.empty(users.size)
    with torch.no_grad():
        for start in range(0, users.size, chunk):
            sl = slice(start, start + chunk)
            u = user_factors[torch.from_numpy(users[sl])]
            cols = torch.from_numpy(np.concatenate([items[sl, None], negatives[sl]], axis=1))
            s = (u.unsqueeze(1) * item_factors[cols]).sum(-1)
            out[sl] = torch.nn.functional.softplus(s[:, 1:] - s[:, :1]).mean(1).double().cpu().numpy()
    return out


def standardize_within_users(values: np.ndarray, users: np.ndarray) -> np.ndarray:
    """(n,) values z-scored within each user's own values (users with one value get 0)."""
    n = np.bincount(users).astype(float)
    mean = np.bincount(users, values) / np.maximum(n, 1)
    var = np.bincount(users, (values - mean[users]) ** 2) / np.maximum(n, 1)
    std = np.sqrt(var)[users]
    return np.where(std > 0, (values - mean[users]) / np.where(std > 0, std, 1), 0.0)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of ``scores`` for the boolean labels ``positive`` (Mann-Whitney, ties averaged); NaN if one class."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def noise_diagnostics(
    user_factors: torch.Tensor, item_factors: torch.Tensor, train: sp.csr_matrix, noise_mask: np.ndarray,
    *, k: int = 20, batch_size: int = 1024, losses: np.ndarray | None = None,
) -> dict[str, float]:
    """How a trained model treats known noisy training interactions.

    Returns ``noisy_in_top{k}`` / ``clean_in_top{k}``: share of the noisy / clean training interactions
    ranked in their user's top-k (training items NOT masked: they are the ranked objects here);
    ``noise_auc_global`` / ``noise_auc_per_user``: AUC of the training loss (raw / z-scored within the
    user) for telling noisy from clean interactions; ``n_noisy``.
    """
    train = sp.csr_matrix(train)
    users = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
    keys = users * train.shape[1] + train.indices.astype(np.int64)
    in_top = np.zeros(keys.size, dtype=bool)
    active = np.flatnonzero(np.diff(train.indptr) > 0)
    for start in range(0, active.size, batch_size):
        batch = active[start : start + batch_size]
        ids, _ = top_k_items(user_factors, item_factors, batch, k)
        top_keys = np.sort((batch[:, None] * train.shape[1] + ids.cpu().numpy()).ravel())
        lo, hi = np.searchsorted(keys, [top_keys[0], top_keys[-1] + 1])
        in_top[lo:hi] = np.isin(keys[lo:hi], top_keys)
    if losses is None:
        losses = training_losses(user_factors, item_factors, train)
    noise_mask = np.asarray(noise_mask, dtype=bool)
    return {
        f"noisy_in_top{k}": float(in_top[noise_mask].mean()) if noise_mask.any() else float("nan"),
        f"clean_in_top{k}": float(in_top[~noise_mask].mean()) if (~noise_mask).any() else float("nan"),
        "noise_auc_global": auc(losses, noise_mask),
        "noise_auc_per_user": auc(standardize_within_users(losses, users), noise_mask),
        "n_noisy": int(noise_mask.sum()),
    }


def train_run(
    config: TrainConfig, spec: DataSpec, run_dir: Path, *, resume: bool = False, progress: bool = True,
    prepared: PreparedData | None = None, plots: bool = True, fit_fn=fit,
) -> dict[str, float]:
    """Train, evaluate on the clean test part, and write the run directory. Returns metrics.json's content.

    ``prepared`` reuses data already built by :func:`prepare_data` from ``spec`` (e.g. by ``compare``).
    With a known-noise mask, metrics.json also holds :func:`noise_diagnostics` and ``plots`` writes the
    clean-vs-noisy training-loss distributions (``loss_distribution.png``). ``fit_fn`` trains the model
    (:func:`robustrec.training.fit`, or :func:`robustrec.distributed.fit_sharded` under torchrun).
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
    checkpoint.save_json(resolved, config_path)
    validation = split.validation.matrix if split.validation is not None else None
    result = fit_fn(config, split.train.matrix, validation, run_dir=run_dir, resume=resume, progress=progress)
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
    if prepared.noise_mask is not None:
        users_f, items_f = result.model.embedding_matrices(PREFERENCE)
        losses = training_losses(users_f, items_f, split.train.matrix, seed=config.seed)
        metrics.update(noise_source=prepared.noise_source,
                       **noise_diagnostics(users_f, items_f, split.train.matrix, prepared.noise_mask, losses=losses))
        if plots:
            from robustrec import plots as plotting

            plotting.loss_distributions(losses, prepared.noise_mask, split.train.coo()[0], run_dir / LOSS_PLOT_FILE,
                                        title=f"{config.model}/{config.loss}/{config.sampler}")
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
