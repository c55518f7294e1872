"""``TrainConfig``: everything that determines a training run, declared and validated once.

Every field carries its help text; the CLI generates its flags from these fields
(:mod:`robustrec.cli.options`), ``RUN_DIR/config.json`` stores them, and the objective and the samplers
read their settings from the same object. Defaults come from the papers (see ``docs/algorithms.md``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, fields

from robustrec.engines import ENGINES, resolve_engine
from robustrec.evaluate import DEFAULT_KS, METRICS
from robustrec.models import MODELS
from robustrec.objectives import LOSSES
from robustrec.optim import OPTIMIZERS
from robustrec.samplers import SAMPLERS

#: Names of 0.1 kept for one release: NBPO's φ head was called "flip" (``--flip-l2`` etc.).
DEPRECATED_NAMES: dict[str, str] = {"flip_l2": "phi_l2", "flip_prior": "phi_prior", "flip_dim": "phi_dim"}


@dataclass(frozen=True)
class Search:
    """Where ``python -m robustrec tune`` searches a setting (the ``"search"`` metadata of a TrainConfig field).

    low, high: the range, bounds included; log: search on a log scale; integer: integer values only.
    used_by: the losses, samplers or models whose runs use the setting (empty: every run).
    """

    low: float
    high: float
    log: bool = False
    integer: bool = False
    used_by: tuple[str, ...] = ()


#: Sampled unobserved items per observed one where a loss's paper sets it (default 1 for the others): NBPO's
#: point-wise likelihood samples 4 (Yu et al. 2020), and with 1 it trails BPR on dense logs (README, NBPO).
LOSS_NEGATIVES = {"nbpo": 4}


@dataclass
class TrainConfig:
    """Everything that determines a training run (written to RUN_DIR/config.json)."""

    model: str = field(default="mf", metadata={"help": "backbone", "choices": MODELS})
    loss: str = field(default="bpr", metadata={"help": "objective", "choices": LOSSES})
    sampler: str = field(default="uniform", metadata={"help": "batch sampler", "choices": SAMPLERS})
    dim: int = field(default=64, metadata={"help": "embedding dimension"})
    epochs: int = field(default=30, metadata={"help": "maximum number of passes over the training interactions"})
    batch_size: int = field(default=4096, metadata={"help": "observed interactions per batch (1: per-sample SGD, the "
                                                            "CPU kernel's fastest; it wants its own --lr)"})
    lr: float = field(default=0.05, metadata={"help": "learning rate of the fused table optimizer",
                                              "search": Search(0.005, 0.5, log=True)})
    optimizer: str = field(default="rowwise_adagrad", metadata={"help": "fused table optimizer",
                                                                "choices": OPTIMIZERS})
    l2: float = field(default=1e-4, metadata={"help": "L2 weight on the batch's preference embeddings "
                                                      "(NBPO: lambda_r)",
                                              "search": Search(1e-6, 0.1, log=True)})
    n_negatives: int | None = field(default=None, metadata={
        "help": "sampled unobserved items per observed one (default: 4 for nbpo, as in its paper; 1 otherwise)"})
    init_std: float = field(default=0.1, metadata={"help": "std of the normal initialisation of the tables"})
    phi_l2: float = field(default=0.1, metadata={"help": "nbpo: L2 weight on the phi factors (lambda_phi); keep it "
                                                         "~1000x l2 or phi learns the interaction pattern itself",
                                                 "search": Search(1e-3, 10.0, log=True, used_by=("nbpo",))})
    phi_dim: int = field(default=4, metadata={"help": "nbpo: dimension of the phi factors (0: same as --dim); "
                                                      "with the default phi_l2 they shrink to 0 (phi = phi_prior), so "
                                                      "a small phi model costs least"})
    phi_prior: float = field(default=0.01, metadata={"help": "nbpo: phi where the phi factors are 0 (its start "
                                                             "value; with the default phi_l2, phi itself), in (0, 1)",
                                                    "search": Search(0.005, 0.5, log=True, used_by=("nbpo",))})
    tce_max_drop: float = field(default=0.2, metadata={"help": "tce: final share of each batch's positives "
                                                               "dropped, in [0, 1)",
                                                       "search": Search(0.05, 0.5, used_by=("tce",))})
    tce_warmup_epochs: float = field(default=10.0, metadata={
        "help": "tce: epochs for the drop rate to grow from 0 to tce_max_drop (the paper's 30,000 steps were 9.2 "
                "epochs of its Yelp data); converted to steps with the run's steps per epoch",
        "search": Search(0.0, 20.0, used_by=("tce",))})
    tce_warmup_steps: int | None = field(default=None, metadata={
        "help": "tce: the warm-up as a fixed number of steps instead (overrides tce_warmup_epochs)"})
    rce_beta: float = field(default=0.25, metadata={"help": "rce: exponent of the detached sigma(s)^beta weights",
                                                    "search": Search(0.01, 1.0, log=True, used_by=("rce",))})
    pld_pool_size: int = field(default=5, metadata={"help": "pld: observed candidates per row (k)",
                                                    "search": Search(2, 10, integer=True, used_by=("pld",))})
    pld_temperature: float = field(default=0.1, metadata={"help": "pld: softmax temperature tau of the selection",
                                                          "search": Search(0.02, 1.0, log=True, used_by=("pld",))})
    pld_warmup_epochs: int = field(default=5, metadata={"help": "pld: epochs of plain uniform sampling first"})
    n_layers: int = field(default=3, metadata={"help": "lightgcn: propagation layers"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation and sampling"})
    eval_every: int = field(default=5, metadata={"help": "validate every this many epochs (0: never)"})
    early_stop_metric: str = field(default="recall@20", metadata={"help": "validation metric to maximise"})
    patience: int = field(default=3, metadata={"help": "validations without improvement before stopping"})
    ks: tuple[int, ...] = field(default=DEFAULT_KS, metadata={"help": "cut-offs of the ranking metrics"})
    device: str = field(default="cpu", metadata={"help": "torch device"})
    engine: str = field(default="auto", metadata={"help": "training engine: 'kernel' the fused CPU kernel (MF on "
                                                          "CPU), 'autograd' the torchrec/FBGEMM step per batch, "
                                                          "'auto' the kernel where it applies",
                                                  "choices": ENGINES})
    deterministic: bool = field(default=False, metadata={"help": "kernel engine: one thread, bit-identical reruns "
                                                                 "(default: every thread, each training whole "
                                                                 "mini-batches that update the tables without "
                                                                 "locks, so reruns differ slightly)"})

    def __post_init__(self) -> None:
        from robustrec.optim import check_optimizer

        self.ks = tuple(int(k) for k in self.ks)
        check_choices(self)
        for name in ("dim", "epochs", "batch_size", "n_negatives", "pld_pool_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dim", "phi_dim"):
            if getattr(self, name) % 4 or getattr(self, name) < 0:
                raise ValueError(
                    f"{name} must be a multiple of 4 (FBGEMM's fused embedding kernels), got {getattr(self, name)}"
                )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        for name in ("l2", "phi_l2", "rce_beta"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.phi_prior < 1:
            raise ValueError(f"phi_prior must be in (0, 1), got {self.phi_prior}")
        if not 0 <= self.tce_max_drop < 1:
            raise ValueError(f"tce_max_drop must be in [0, 1), got {self.tce_max_drop}")
        if self.loss == "tce" and self.tce_max_drop > 0 and int(self.tce_max_drop * self.batch_size) == 0:
            least = math.ceil(1 / self.tce_max_drop)
            while int(self.tce_max_drop * least) == 0:
                least += 1
            raise ValueError(f"loss 'tce' would never drop a positive: it drops int(tce_max_drop x batch_size) = "
                             f"int({self.tce_max_drop:g} x {self.batch_size}) = 0 per batch; use a batch_size of at "
                             f"least {least}")
        if not (self.tce_warmup_epochs >= 0 and math.isfinite(self.tce_warmup_epochs)):
            raise ValueError(f"tce_warmup_epochs must be a finite number >= 0, got {self.tce_warmup_epochs}")
        if self.tce_warmup_steps is not None and self.tce_warmup_steps < 0:
            raise ValueError(f"tce_warmup_steps must be >= 0, got {self.tce_warmup_steps}")
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be cut-offs >= 1, got {' '.join(map(str, self.ks))}")
        metric, _, k = self.early_stop_metric.partition("@")
        if metric not in METRICS or not k.isdigit() or int(k) < 1:
            raise ValueError(
                f"early_stop_metric {self.early_stop_metric!r} must look like METRIC@K with METRIC in {METRICS} "
                "and K >= 1"
            )
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if not (self.init_std > 0 and math.isfinite(self.init_std)):
            raise ValueError(f"init_std must be a positive number, got {self.init_std}")
        if int(k) not in self.ks:
            self.ks = tuple(sorted(set(self.ks) | {int(k)}))
        if self.pld_temperature <= 0 or self.pld_warmup_epochs < 0 or self.n_layers < 0:
            raise ValueError("need pld_temperature > 0, pld_warmup_epochs >= 0 and n_layers >= 0")
        check_optimizer(self.optimizer, check_device(self.device))
        resolve_engine(self)  # validates the engine for this model and device

    @property
    def sampled_items(self) -> int:
        """Sampled unobserved items per observed one: ``n_negatives``, or when unset the loss's default
        (:data:`LOSS_NEGATIVES`, else 1) — unset rather than filled in, so ``dataclasses.replace(config,
        loss=...)`` gets the new loss's default."""
        return self.n_negatives if self.n_negatives is not None else LOSS_NEGATIVES.get(self.loss, 1)

    def warn_schedule(self) -> None:
        """Warn about settings that make part of the configuration a no-op over ``epochs`` (called before training,
        not when a saved configuration is only read): a pld warm-up as long as the run never leaves uniform
        sampling."""
        if self.sampler == "pld" and self.pld_warmup_epochs >= self.epochs:
            warnings.warn(f"pld_warmup_epochs ({self.pld_warmup_epochs}) is not below epochs ({self.epochs}): the "
                          f"pld sampler never runs and every epoch samples uniformly; lower pld_warmup_epochs",
                          UserWarning, stacklevel=2)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """The config of ``data`` (e.g. config.json's ``"train"``); names of 0.1 are accepted with a warning."""
        return cls(**upgrade_names(data, known={f.name for f in fields(cls)}, what="TrainConfig fields"))


def search_space(config: TrainConfig) -> dict[str, Search]:
    """The settings ``tune`` searches for ``config``'s method: field name -> :class:`Search`, for every field whose
    ``"search"`` metadata is used by every run or by the config's model, loss or sampler."""
    method = {config.model, config.loss, config.sampler}
    space = {}
    for f in fields(config):
        search = f.metadata.get("search")
        if search is not None and (not search.used_by or method & set(search.used_by)):
            space[f.name] = search
    return space


def check_device(name: str):
    """The ``torch.device`` called ``name``; a ValueError when it is malformed or not available here."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise ValueError(f"device {name!r} is not available: this torch build has no CUDA support "
                             "(install a CUDA build of torch, see README)")
        if not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} is not available: no such GPU is visible")
    elif device.type != "cpu":
        raise ValueError(f"device {name!r} is not supported; use cpu or cuda")
    return device


def check_choices(config) -> None:
    """ValueError for a field whose value is not one of its ``metadata["choices"]``."""
    for f in fields(config):
        allowed = f.metadata.get("choices")
        if allowed is not None and getattr(config, f.name) not in allowed:
            raise ValueError(f"unknown {f.name} {getattr(config, f.name)!r}; expected one of {allowed}")


def config_differences(old: dict, new: dict, *, allowed: tuple[str, ...] = ()) -> list[str]:
    """``"name OLD -> NEW"`` for every key whose value differs between two config dicts (except ``allowed``)."""
    keys = [k for k in dict.fromkeys([*old, *new]) if k not in allowed]
    return [f"{k} {_show(old.get(k))} -> {_show(new.get(k))}" for k in keys
            if _normalised(old.get(k)) != _normalised(new.get(k))]


def _normalised(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def upgrade_names(values: dict, *, known: set[str], what: str) -> dict:
    """``values`` with deprecated keys (:data:`DEPRECATED_NAMES`) renamed; a ValueError for unknown keys."""
    out = {}
    for key, value in values.items():
        if key in DEPRECATED_NAMES:
            warnings.warn(f"{key!r} is deprecated; use {DEPRECATED_NAMES[key]!r}", FutureWarning, stacklevel=3)
            key = DEPRECATED_NAMES[key]
        out[key] = value
    unknown = set(out) - known
    if unknown:
        raise ValueError(f"unknown {what}: {sorted(unknown)}")
    return out
