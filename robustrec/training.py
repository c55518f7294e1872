"""The training loop: epochs of sampled batches, periodic validation with early
stopping, atomic resumable checkpoints, a tqdm progress bar, fixed seeds."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from robustrec import checkpoint
from robustrec.engines import ENGINES, KernelEngine, resolve_engine
from robustrec.evaluate import DEFAULT_KS, METRICS, ranking_metrics
from robustrec.models import GRAPH_MODELS, MODELS, PREFERENCE, build_model
from robustrec.objectives import FLIP, LOSSES, ObjectiveConfig, heads_for, objective_loss
from robustrec.optim import OPTIMIZERS, check_optimizer, dense_parameters, fuse, load_optimizer_state, optimizer_state
from robustrec.samplers import SAMPLERS, build_sampler

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainConfig:
    """Everything that determines a training run (written to RUN_DIR/config.json)."""

    model: str = field(default="mf", metadata={"help": f"backbone, one of {MODELS}"})
    loss: str = field(default="bpr", metadata={"help": f"objective, one of {LOSSES}"})
    sampler: str = field(default="uniform", metadata={"help": f"batch sampler, one of {SAMPLERS}"})
    dim: int = field(default=64, metadata={"help": "embedding dimension"})
    epochs: int = field(default=30, metadata={"help": "maximum number of passes over the training interactions"})
    batch_size: int = field(default=4096, metadata={"help": "observed interactions per batch"})
    lr: float = field(default=0.05, metadata={"help": "learning rate of the fused table optimizer"})
    optimizer: str = field(default="rowwise_adagrad", metadata={"help": f"one of {OPTIMIZERS}"})
    l2: float = field(default=1e-4, metadata={"help": "L2 weight on the batch's embeddings"})
    n_negatives: int = field(default=1, metadata={"help": "sampled unobserved items per observed one"})
    init_std: float = field(default=0.1, metadata={"help": "std of the normal initialisation of the tables"})
    flip_l2: float = field(default=0.1, metadata={"help": "nbpo: L2 weight on the flip factors (lambda_phi); keep it "
                                                          "~1000x l2 or phi learns the interaction pattern itself"})
    flip_dim: int = field(default=0, metadata={"help": "nbpo: dimension of the flip factors (0: same as --dim); "
                                                       "a small flip model is cheaper and stays a weak correction"})
    flip_prior: float = field(default=0.1, metadata={"help": "nbpo: phi where the flip factors are 0 (its start value)"})
    tce_max_drop: float = field(default=0.2, metadata={"help": "tce: final share of each batch's positives dropped"})
    tce_warmup_steps: int = field(default=30_000, metadata={"help": "tce: steps for the drop rate to grow from 0"})
    rce_beta: float = field(default=0.25, metadata={"help": "rce: exponent of the detached sigma(s)^beta weights"})
    pld_pool_size: int = field(default=5, metadata={"help": "pld: observed candidates per row (k)"})
    pld_temperature: float = field(default=0.1, metadata={"help": "pld: softmax temperature tau of the selection"})
    pld_warmup_epochs: int = field(default=5, metadata={"help": "pld: epochs of plain uniform sampling first"})
    n_layers: int = field(default=3, metadata={"help": "lightgcn: propagation layers"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation and sampling"})
    eval_every: int = field(default=5, metadata={"help": "validate every this many epochs (0: never)"})
    early_stop_metric: str = field(default="recall@20", metadata={"help": "validation metric to maximise"})
    patience: int = field(default=3, metadata={"help": "validations without improvement before stopping"})
    ks: tuple[int, ...] = field(default=DEFAULT_KS, metadata={"help": "cut-offs of the ranking metrics"})
    device: str = field(default="cpu", metadata={"help": "torch device"})
    engine: str = field(default="auto", metadata={"help": f"training engine, one of {ENGINES}: 'kernel' is the fused "
                                                        "CPU kernel (MF on CPU), 'autograd' the torchrec/FBGEMM "
                                                        "step per batch, 'auto' the kernel where it applies"})
    deterministic: bool = field(default=False, metadata={"help": "kernel engine: one thread, bit-identical reruns "
                                                                 "(default: every thread, each training whole "
                                                                 "mini-batches that update the tables without "
                                                                 "locks, so reruns differ slightly)"})

    def __post_init__(self) -> None:
        self.ks = tuple(int(k) for k in self.ks)
        choices = {"model": MODELS, "loss": LOSSES, "sampler": SAMPLERS, "optimizer": OPTIMIZERS, "engine": ENGINES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; expected one of {allowed}")
        for name in ("dim", "epochs", "batch_size", "n_negatives", "pld_pool_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dim", "flip_dim"):
            if getattr(self, name) % 4 or getattr(self, name) < 0:
                raise ValueError(
                    f"{name} must be a multiple of 4 (FBGEMM's fused embedding kernels), got {getattr(self, name)}"
                )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        metric, _, k = self.early_stop_metric.partition("@")
        if metric not in METRICS or not k.isdigit():
            raise ValueError(
                f"early_stop_metric {self.early_stop_metric!r} must look like METRIC@K with METRIC in {METRICS}"
            )
        if int(k) not in self.ks:
            self.ks = tuple(sorted(set(self.ks) | {int(k)}))
        if self.pld_temperature <= 0 or self.pld_warmup_epochs < 0 or self.n_layers < 0:
            raise ValueError("need pld_temperature > 0, pld_warmup_epochs >= 0 and n_layers >= 0")
        check_optimizer(self.optimizer, torch.device(self.device))
        self.objective()  # validates the loss settings
        resolve_engine(self)  # validates the engine for this model and device

    def objective(self) -> ObjectiveConfig:
        return ObjectiveConfig(
            loss=self.loss, l2=self.l2, flip_l2=self.flip_l2, flip_prior=self.flip_prior,
            tce_max_drop=self.tce_max_drop, tce_warmup_steps=self.tce_warmup_steps, rce_beta=self.rce_beta,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**data)


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list[dict]
    epochs: int
    train_seconds: float
    best_epoch: int | None


def new_model(config: TrainConfig, n_users: int, n_items: int, train: sp.spmatrix | None = None) -> torch.nn.Module:
    """The untrained model of ``config``; graph models (LightGCN) need the training matrix ``train``."""
    torch.manual_seed(config.seed)
    extra = {"train": train, "n_layers": config.n_layers} if config.model in GRAPH_MODELS else {}
    if config.flip_dim:
        extra["head_dims"] = {FLIP: config.flip_dim}
    return build_model(
        config.model, n_users, n_items, config.dim,
        heads=heads_for(config.loss), init_std=config.init_std, device=torch.device(config.device), **extra,
    )


def evaluate_model(model, train: sp.csr_matrix, test: sp.csr_matrix, ks) -> dict[str, float]:
    users, items = model.embedding_matrices(PREFERENCE)
    return ranking_metrics(users, items, train, test, ks=ks)


def fit(
    config: TrainConfig,
    train: sp.csr_matrix,
    validation: sp.csr_matrix | None = None,
    *,
    run_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> FitResult:
    """Train ``config.model`` with ``config.loss`` on ``train`` (n_users, n_items) CSR.

    With ``validation`` (same shape) the model is validated every ``eval_every`` epochs,
    training stops after ``patience`` validations without improvement of
    ``early_stop_metric``, and the best weights are returned. With ``run_dir`` a
    checkpoint is written atomically after every epoch; ``resume`` continues from it.
    """
    train = sp.csr_matrix(train)
    n_users, n_items = train.shape
    device = torch.device(config.device)
    model = fuse(new_model(config, n_users, n_items, train), optimizer=config.optimizer, lr=config.lr, device=device)
    dense = dense_parameters(model)
    dense_optimizer = torch.optim.Adam(dense, lr=config.lr) if dense else None
    objective = config.objective()
    sampler = build_sampler(
        config.sampler, train, n_negatives=config.n_negatives, pld_pool_size=config.pld_pool_size,
        pld_temperature=config.pld_temperature, pld_warmup_epochs=config.pld_warmup_epochs,
    )
    rng = np.random.default_rng(config.seed)

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:  # no-gradient scores for the sampler
        return model.score(torch.from_numpy(users).to(device), torch.from_numpy(items).to(device)).cpu().numpy()

    history: list[dict] = []
    start_epoch, step, elapsed = 0, 0, 0.0
    best_value, best_epoch, best_state, stale = -math.inf, None, None, 0
    ckpt_path = Path(run_dir) / CHECKPOINT_FILE if run_dir is not None else None
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = checkpoint.load_torch(ckpt_path)
        if state["config"] != config.to_dict():
            raise ValueError(f"{ckpt_path} was written by a different configuration; refusing to resume")
        model.load_state_dict(state["model"])
        load_optimizer_state(model, state["optimizer"])
        rng.bit_generator.state = state["rng"]
        start_epoch, step, elapsed = state["epoch"], state["step"], state["train_seconds"]
        history, best_value, best_epoch, best_state, stale = (
            state["history"], state["best_value"], state["best_epoch"], state["best_state"], state["stale"],
        )
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)

    n_batches = sampler.n_batches(config.batch_size)
    kernel = KernelEngine(model, config, train) if resolve_engine(config) == "kernel" else None
    epoch = start_epoch
    for epoch in range(start_epoch + 1, config.epochs + 1):
        if stale >= config.patience and validation is not None:
            epoch -= 1
            break
        tic = time.perf_counter()
        model.train()
        total = 0.0
        if kernel is not None:  # the fused CPU kernel (robustrec.engines): the whole epoch in compiled code
            total = kernel.run_epoch(epoch, rng, step, progress=progress)
            step += n_batches
        else:
            batches = sampler.epoch(config.batch_size, rng, epoch=epoch, score_fn=score_fn)
            bar = tqdm(batches, total=n_batches, desc=f"epoch {epoch}/{config.epochs}", disable=not progress,
                       leave=False)
            for users, items in bar:
                output = model(torch.from_numpy(users).to(device), torch.from_numpy(items).to(device))
                loss = objective_loss(output, objective, step=step)
                value = loss.item()
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"loss became {value} at epoch {epoch}, step {step}; lower --lr or raise --l2"
                    )
                if dense_optimizer is not None:
                    dense_optimizer.zero_grad()
                loss.backward()
                if dense_optimizer is not None:
                    dense_optimizer.step()
                total += value
                step += 1
        elapsed += time.perf_counter() - tic
        record = {"epoch": epoch, "loss": total / n_batches, "train_seconds": elapsed}
        if validation is not None and config.eval_every and epoch % config.eval_every == 0:
            model.eval()
            metrics = evaluate_model(model, train, validation, config.ks)
            record.update({f"valid_{k}": v for k, v in metrics.items()})
            current = metrics[config.early_stop_metric]
            if current > best_value:
                best_value, best_epoch, stale = current, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        history.append(record)
        if progress:
            shown = {k: round(v, 4) for k, v in record.items() if k in ("loss", f"valid_{config.early_stop_metric}")}
            tqdm.write(f"epoch {epoch}: {shown}")
        if ckpt_path is not None:
            checkpoint.save_torch(
                {
                    "config": config.to_dict(), "model": model.state_dict(), "optimizer": optimizer_state(model),
                    "rng": rng.bit_generator.state, "epoch": epoch, "step": step, "train_seconds": elapsed,
                    "history": history, "best_value": best_value, "best_epoch": best_epoch,
                    "best_state": best_state, "stale": stale,
                },
                ckpt_path,
            )
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(model=model, history=history, epochs=epoch, train_seconds=elapsed, best_epoch=best_epoch)
