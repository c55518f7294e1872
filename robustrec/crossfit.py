"""Out-of-sample scores of every interaction of a log by cross-fitting, and the noisy share they imply.

Every interaction gets an *out-of-sample* score: each user's interactions are dealt into ``n_folds`` folds
(:func:`fold_assignment`); for each fold an MF-BPR model (:func:`robustrec.training.fit`) trains on the other
folds and scores the held-out fold. An interaction (u, i) is compared with ``n_negatives`` uniformly drawn items
j the user never interacted with (:class:`robustrec.samplers.UniformNegativeSampler`): its p-value is the
randomised share of them scored above it, ``(k + U)/(m + 1)`` — exactly Uniform(0, 1) for a random injected item
(exchangeable with the sampled ones), near 0 for genuine ones (:func:`interaction_losses`).

:func:`analyse_noise` turns them into the noisy share with its interval and per-interaction noise scores:

- ``storey`` (default): the null proportion π0 of the p-values, :func:`robustrec.noise.noisy_share_from_pvalues`
  (Storey 2002, λ by bootstrap MSE, users resampled whole for the interval; conservative by the share of
  genuine interactions with p > λ, small for a well-trained model);
  :func:`robustrec.noise.noise_scores_from_pvalues` (local false discovery rate) ranks the interactions.
- ``mixture``: :func:`robustrec.noise.noisy_share` fits its per-user clean/noisy mixture (PLD, WWW 2025,
  section 3) to per-interaction losses — ``rank`` = Φ⁻¹(p), ``bpr`` = mean ``softplus(s_uj − s_ui)`` — and
  :func:`robustrec.noise.noise_scores` ranks.

Only noise exchangeable with unobserved items is identified: real noise on on-taste items (DeCA's low ratings)
looks genuine and is not counted.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import ndtri

from robustrec.config import TrainConfig
from robustrec.data import PreparedData
from robustrec.diagnostics import auc
from robustrec.noise import noise_scores, noise_scores_from_pvalues, noisy_share, noisy_share_from_pvalues
from robustrec.samplers import UniformNegativeSampler
from robustrec.training import fit

log = logging.getLogger(__name__)

LOSS_KINDS = ("rank", "bpr")
"""Per-interaction losses: ``rank`` (default) = probit of the randomised share of sampled unobserved items scored
above the interaction; ``bpr`` = mean softplus(s_uj − s_ui) over the sampled items."""

PVALUE = "pvalue"
"""The kind of :func:`interaction_losses` that gives the p-value itself: the randomised share of sampled unobserved
items scored above the interaction, ``(k + U) / (m + 1)``; ``rank`` is its probit."""

NOISY_SHARE_METHODS = ("storey", "mixture")
"""Estimators of :func:`analyse_noise`: ``storey`` (default) = :func:`robustrec.noise.noisy_share_from_pvalues` on
the p-values; ``mixture`` = :func:`robustrec.noise.noisy_share`, the per-user loss mixture, on ``loss`` losses."""


@dataclass(frozen=True)
class CrossFitSettings:
    """The cross-fitted MF-BPR models: folds, epochs per fold, size, sampled items per interaction, optimizer."""

    n_folds: int = field(default=5, metadata={"help": "cross-fitting folds (>= 2)"})
    epochs: int = field(default=20, metadata={"help": "training epochs per fold"})
    dim: int = field(default=64, metadata={"help": "embedding dimension (multiple of 4)"})
    n_negatives: int = field(default=100, metadata={"help": "sampled unobserved items per interaction in its loss"})
    batch_size: int | None = field(
        default=None, metadata={"help": "training batch size (default: about 1/100 of a fold's interactions, "
                                        "128..4096)"})
    lr: float = field(default=0.05, metadata={"help": "learning rate of the fused row-wise Adagrad"})
    l2: float = field(default=3e-4, metadata={"help": "L2 weight on the batch's embeddings"})
    seed: int = field(default=0, metadata={"help": "seed of folds, negatives and training"})

    def __post_init__(self) -> None:
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be >= 2 (cross-fitting needs a held-out fold), got {self.n_folds}")
        if self.n_negatives < 1:
            raise ValueError(f"n_negatives must be >= 1, got {self.n_negatives}")
        self.train_config(1)  # validates epochs, dim, batch size and lr where TrainConfig does

    def train_config(self, n_interactions: int, **overrides) -> TrainConfig:
        """The fold models' TrainConfig; small logs get small batches (~100 optimizer steps per epoch)."""
        batch_size = self.batch_size or int(
            min(4096, max(128, 2 ** math.floor(math.log2(max(n_interactions, 1) / 100))))
        )
        settings = dict(model="mf", loss="bpr", sampler="uniform", dim=self.dim, epochs=self.epochs, eval_every=0,
                        seed=self.seed, batch_size=batch_size, lr=self.lr, l2=self.l2)
        return TrainConfig(**{**settings, **overrides})


def fold_assignment(users: np.ndarray, n_folds: int, *, seed: int = 0) -> np.ndarray:
    """(n,) fold of each interaction: each user's interactions shuffled and dealt round-robin into ``n_folds``.

    Every user with at least ``n_folds`` interactions has some in every fold, hence training data for every
    held-out fold; a user's folds differ in size by at most one. ``users`` must be grouped (CSR order).
    """
    users = np.asarray(users)
    n = len(users)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n), users))  # shuffled within each user, users ascending
    starts = np.searchsorted(users[order], users[order], side="left")
    rank = np.arange(n) - starts
    offset = rng.integers(0, n_folds, size=int(users.max()) + 1 if n else 0)  # spread the extra ones over folds
    fold = np.empty(n, dtype=np.int64)
    fold[order] = (rank + offset[users[order]]) % n_folds
    return fold


def interaction_losses(
    user_factors: np.ndarray, item_factors: np.ndarray, users: np.ndarray, items: np.ndarray, negatives: np.ndarray,
    *, kind: str = "rank", rng: np.random.Generator | None = None, chunk: int = 4096,
) -> np.ndarray:
    """(n,) loss of each interaction (u, i) against its (n, m) sampled unobserved items j; high = suspicious.

    ``kind="pvalue"``: with k = #{j : s_uj > s_ui} (ties split at random), ``p = (k + U) / (m + 1)``,
    U ~ U(0, 1). An injected interaction is a uniformly random unobserved item, exchangeable with the sampled
    ones, so its k is uniform on {0..m} and its p is exactly Uniform(0, 1) whatever the model (a randomised
    probability integral transform); genuine interactions sit lower. ``kind="rank"``: ``Φ⁻¹(p)``, exactly
    N(0, 1) for a random item. ``kind="bpr"``: mean over j of softplus(s_uj − s_ui).
    """
    if kind not in (*LOSS_KINDS, PVALUE):
        raise ValueError(f"loss kind must be one of {(*LOSS_KINDS, PVALUE)}; got {kind!r}")
    rng = rng if rng is not None else np.random.default_rng(0)
    m = negatives.shape[1]
    out = np.empty(len(users))
    for start in range(0, len(users), chunk):
        sl = slice(start, start + chunk)
        u = user_factors[users[sl]]
        s_pos = np.einsum("nd,nd->n", u, item_factors[items[sl]])
        s_neg = np.einsum("nd,nkd->nk", u, item_factors[negatives[sl]])
        diff = s_neg - s_pos[:, None]
        if kind == "bpr":
            out[sl] = np.logaddexp(0.0, diff.astype(np.float64)).mean(axis=1)
        else:
            above = (diff > 0).sum(axis=1) + rng.binomial((diff == 0).sum(axis=1), 0.5)
            p = (above + rng.random(len(above))) / (m + 1)
            out[sl] = p if kind == PVALUE else ndtri(p)
    return out


def sampled_unobserved(matrix: sp.csr_matrix, users: np.ndarray, n_negatives: int, rng: np.random.Generator, *,
                       chunk: int = 1 << 16) -> np.ndarray:
    """(n, n_negatives) int32 uniform items each of ``users`` (n,) never interacted with in ``matrix``, drawn by
    :class:`~robustrec.samplers.UniformNegativeSampler` in chunks (int32 halves the memory of a large log)."""
    sampler = UniformNegativeSampler(matrix)
    out = np.empty((len(users), n_negatives), dtype=np.int32)
    for start in range(0, len(users), chunk):
        out[start : start + chunk] = sampler.sample(users[start : start + chunk], n_negatives, rng)
    return out


def cross_fitted_losses(
    matrix: sp.csr_matrix,
    settings: CrossFitSettings = CrossFitSettings(),
    *,
    kinds: tuple[str, ...] = ("rank",),
    progress: bool = False,
    config_overrides: dict | None = None,
) -> dict[str, np.ndarray]:
    """kind -> (n,) out-of-sample loss of every interaction of ``matrix`` (n_users, n_items) CSR, in CSR order.

    For each fold (:func:`fold_assignment`) an MF-BPR model trains on the other folds for ``settings.epochs``
    epochs (no validation) and the held-out fold's interactions are scored against ``settings.n_negatives`` items
    unobserved in the *whole* log; each of ``kinds`` (:data:`LOSS_KINDS` or :data:`PVALUE`) comes from the same
    models and negatives (:func:`interaction_losses`). ``config_overrides`` override fields of the fold models'
    :class:`~robustrec.config.TrainConfig`.
    """
    import torch

    for kind in kinds:
        if kind not in (*LOSS_KINDS, PVALUE):
            raise ValueError(f"loss kind must be one of {(*LOSS_KINDS, PVALUE)}; got {kind!r}")
    matrix = sp.csr_matrix(matrix)
    n_users, n_items = matrix.shape
    users = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(matrix.indptr))
    items = matrix.indices.astype(np.int64)
    fold = fold_assignment(users, settings.n_folds, seed=settings.seed)
    rng = np.random.default_rng(settings.seed + 1)
    negatives = sampled_unobserved(matrix, users, settings.n_negatives, rng)
    losses = {kind: np.empty(len(users)) for kind in kinds}
    for k in range(settings.n_folds):
        held = fold == k
        keep = ~held
        train = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (users[keep], items[keep])), shape=(n_users, n_items)
        )
        config = settings.train_config(len(users), **{**(config_overrides or {}), "seed": settings.seed + k})
        tic = time.perf_counter()
        if progress:
            print(f"fold {k + 1}/{settings.n_folds}: training on {train.nnz:,} interactions", file=sys.stderr)
        model = fit(config, train, progress=progress).model
        uf, itf = (t.detach().cpu().to(torch.float32).numpy() for t in model.embedding_matrices())
        for kind in kinds:
            losses[kind][held] = interaction_losses(
                uf, itf, users[held], items[held], negatives[held], kind=kind, rng=rng
            )
        log.info("fold %d/%d: %.1fs", k + 1, settings.n_folds, time.perf_counter() - tic)
    return losses


@dataclass
class NoiseAnalysis:
    """The noisy share of a log and the noise score of each of its interactions.

    Attributes:
        data: the prepared data; the log is ``data.split.train``.
        losses: (n,) out-of-sample losses in CSR order (``rank`` losses Φ⁻¹(p) for ``storey``).
        scores: (n,) noise scores (probability of being noise), higher = more suspicious.
        estimate: the noisy share, a :class:`robustrec.noise.Estimate`.
        seconds: wall time of the analysis.
        settings: what was run (for the summary).
    """

    data: PreparedData
    losses: np.ndarray
    scores: np.ndarray
    estimate: object
    seconds: float
    settings: dict

    def summary(self) -> dict:
        """JSON-ready summary: the estimate, sizes, settings, and the known noise's share and AUC when known."""
        e = self.estimate
        users, _ = self.data.split.train.coo()
        out = {
            "noisy_share": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "confidence": e.confidence,
            "method": e.method, "n_interactions": int(len(self.losses)),
            "n_users": int(len(np.unique(users))), "data": self.data.source,
            "seconds": round(self.seconds, 2), **self.settings,
        }
        injected, known = self.data.injected, self.data.known_noise
        if injected is not None:
            out["injected_share"] = float(injected.mean())
            out["n_injected"] = int(injected.sum())
            out["injected_auc"] = _finite(auc(self.scores, injected))
        if known is not None:
            out["known_noisy_share"] = float(known.mean())
            out["known_noise_auc"] = _finite(auc(self.scores, known))
        return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def analyse_noise(
    data: PreparedData,
    settings: CrossFitSettings = CrossFitSettings(),
    *,
    method: str = "storey",
    loss: str = "rank",
    n_resamples: int = 200,
    progress: bool = False,
) -> NoiseAnalysis:
    """Cross-fitted p-values or losses of ``data.split.train`` → the noisy share with its interval, and
    per-interaction noise scores (see the module docstring for ``method``; ``loss`` is used by ``mixture``)."""
    if method not in NOISY_SHARE_METHODS:
        raise ValueError(f"method must be one of {NOISY_SHARE_METHODS}; got {method!r}")
    if loss not in LOSS_KINDS:
        raise ValueError(f"loss must be one of {LOSS_KINDS}; got {loss!r}")
    tic = time.perf_counter()
    matrix = data.split.train.matrix
    users, _ = data.split.train.coo()
    if method == "storey":
        p = cross_fitted_losses(matrix, settings, kinds=(PVALUE,), progress=progress)[PVALUE]
        est = noisy_share_from_pvalues(p, users=users, n_resamples=n_resamples, seed=settings.seed)
        scores = noise_scores_from_pvalues(p, pi0=est.value)
        losses, loss = ndtri(p), "rank"
    else:
        losses = cross_fitted_losses(matrix, settings, kinds=(loss,), progress=progress)[loss]
        est = noisy_share(losses, users, n_resamples=n_resamples, seed=settings.seed)
        scores = noise_scores(losses, users)
    summary = dict(folds=settings.n_folds, epochs=settings.epochs, dim=settings.dim, negatives=settings.n_negatives,
                   loss=loss, estimator=method, lr=settings.lr, l2=settings.l2, seed=settings.seed)
    return NoiseAnalysis(data, losses, scores, est, time.perf_counter() - tic, summary)


def ranking(analysis: NoiseAnalysis) -> np.ndarray:
    """(n,) interaction indices, most suspicious first: by noise score, ties by the loss, then CSR order."""
    return np.lexsort((np.arange(len(analysis.scores)), -analysis.losses, -analysis.scores))


def flag_frame(analysis: NoiseAnalysis) -> pd.DataFrame:
    """Interactions ranked by noise score (rank 1 = most suspicious), raw ids, with the known truth if any."""
    log_ = analysis.data.split.train
    users, items = log_.coo()
    order = ranking(analysis)
    cols = {
        "user": log_.user_ids[users[order]], "item": log_.item_ids[items[order]],
        "noise_score": analysis.scores[order], "rank": np.arange(1, len(order) + 1),
    }
    if analysis.data.injected is not None:
        cols["is_injected"] = analysis.data.injected[order].astype(int)
    if analysis.data.known_noise is not None:
        cols["is_known_noise"] = analysis.data.known_noise[order].astype(int)
    return pd.DataFrame(cols)


def cleaned_log(analysis: NoiseAnalysis, n_drop: int) -> pd.DataFrame:
    """The log (raw ids, CSR order) without its ``n_drop`` most suspicious interactions: columns user, item."""
    log_ = analysis.data.split.train
    users, items = log_.coo()
    keep = np.ones(len(users), dtype=bool)
    keep[ranking(analysis)[:n_drop]] = False
    return pd.DataFrame({"user": log_.user_ids[users[keep]], "item": log_.item_ids[items[keep]]})
