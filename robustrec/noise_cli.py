"""``python -m robustrec noise {estimate,flag}``: how much of a log is noise, and which interactions.

    python -m robustrec noise estimate --data ../shared/data/gowalla --inject-noise 0.1 --json
    python -m robustrec noise flag --data ../shared/data/ml-100k-deca --out flagged.csv --drop-share auto

The training part of the split is "the log" (with no ``--data``, the embedded synthetic default). With
``--inject-noise R`` PLD's protocol (:func:`robustrec.noise.add_random_interactions`) first adds
``floor(R·|log_u|)`` random unobserved items per user and keeps the mask, so the estimate can be checked.

Every interaction gets an *out-of-sample* score by cross-fitting (:func:`cross_fitted_losses`): each user's
interactions are dealt into ``--folds`` folds (default 5); for each fold an MF-BPR model
(:func:`robustrec.training.fit`: dim 64, fused row-wise Adagrad lr 0.05, l2 3e-4, 20 epochs by default) trains
on the other folds and scores the held-out fold. An interaction (u, i) is compared with ``--negatives`` uniformly
drawn items j the user never interacted with: its p-value is the randomised share of them scored above it,
``(k + U)/(m + 1)`` — exactly Uniform(0, 1) for a random injected item (exchangeable with the sampled ones),
near 0 for genuine ones (:func:`interaction_losses`).

``--method storey`` (default): the noisy share is the null proportion π0 of these p-values,
:func:`robustrec.noise.noisy_share_from_pvalues` (Storey 2002, λ by bootstrap MSE, users resampled whole for
the interval; conservative by the share of genuine interactions with p > λ, small for a well-trained model);
:func:`robustrec.noise.noise_scores_from_pvalues` (local false discovery rate) ranks the interactions for ``flag``.
``--method mixture``: :func:`robustrec.noise.noisy_share` fits its per-user clean/noisy mixture (PLD, WWW 2025,
section 3) to per-interaction losses — ``--loss rank`` = Φ⁻¹(p), ``--loss bpr`` = mean ``softplus(s_uj − s_ui)``
— and :func:`robustrec.noise.noise_scores` ranks. Only noise exchangeable with unobserved items is identified:
real noise on on-taste items (DeCA's low ratings) looks genuine and is not counted.

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
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

log = logging.getLogger(__name__)

DEFAULT_FOLDS = 5
DEFAULT_EPOCHS = 20
DEFAULT_NEGATIVES = 100
DEFAULT_DIM = 64
DEFAULT_LR = 0.05
DEFAULT_L2 = 3e-4


# ====================================================================== data
@dataclass(frozen=True)
class NoiseLog:
    """The log whose noise is estimated.

    Attributes:
        log: the training part of the split (with injected interactions when asked), an ``Interactions``.
        users, items: (n,) int64 indices in CSR order (``log.coo()``).
        is_injected: (n,) bool mask of the injected interactions, or None without ``--inject-noise``.
        known_noise: (n,) bool known real noise (DeCA: rating < 4), or None when the data has none.
        source: a short description of where the log came from.
    """

    log: object
    users: np.ndarray
    items: np.ndarray
    is_injected: np.ndarray | None
    known_noise: np.ndarray | None
    source: str

    @property
    def truth(self) -> np.ndarray | None:
        """The known noise mask: injected interactions, else the data's own noise, else None."""
        return self.is_injected if self.is_injected is not None else self.known_noise


def load_noise_log(
    path: str | Path | None,
    *,
    format: str = "auto",
    inject_noise: float = 0.0,
    seed: int = 0,
    max_users: int | None = None,
    synthetic_users: int = 5000,
    synthetic_items: int = 3000,
) -> NoiseLog:
    """Load the training part of ``path`` (or the synthetic default), optionally subsample users and inject noise.

    ``max_users`` keeps a seeded uniform sample of that many users (with all their interactions), for speed.

    Raises:
        FileNotFoundError, DataError: unreadable data. ValueError: bad options, or an empty log.
    """
    from robustrec import data
    from robustrec.data import Interactions
    from robustrec.noise import add_random_interactions

    if not inject_noise >= 0 or not math.isfinite(inject_noise):
        raise ValueError(f"--inject-noise must be a finite number >= 0, got {inject_noise}")
    if max_users is not None and max_users < 1:
        raise ValueError(f"--max-users must be >= 1, got {max_users}")
    if path is None:
        split = data.generate(n_users=synthetic_users, n_items=synthetic_items, seed=seed)
        source = f"synthetic default ({synthetic_users} users, {synthetic_items} items, seed {seed})"
        fmt = "synthetic"
    else:
        if format not in data.FORMATS:
            raise ValueError(f"unknown format {format!r}; expected one of {list(data.FORMATS)}")
        fmt = data.detect_format(path) if format == "auto" else format
        split = data.load_split(path, format=fmt, seed=seed)
        source = str(path)
    train = split.train
    known = None
    if fmt == "deca" and train.ratings is not None:
        known = data.deca_noise_mask(train)
    if max_users is not None and max_users < train.n_users:
        users, _ = train.coo()
        active = np.flatnonzero(train.user_counts() > 0)
        keep_users = np.zeros(train.n_users, bool)
        keep_users[np.random.default_rng(seed).choice(active, size=min(max_users, len(active)), replace=False)] = True
        keep = keep_users[users]
        train = train.select(keep)
        known = None if known is None else known[keep]
        source += f", {int(keep_users.sum())} sampled users"
    if train.n_interactions == 0:
        raise ValueError(f"{source}: the training part holds no interactions")
    users, items = train.coo()
    injected = None
    if inject_noise > 0:
        inj = add_random_interactions(users, items, train.n_items, inject_noise, seed=seed)
        # inj is sorted by (user, item) = CSR order; the original interactions keep their relative order.
        new = Interactions.from_indices(
            inj.users, inj.items, n_users=train.n_users, n_items=train.n_items,
            user_ids=train.user_ids, item_ids=train.item_ids,
        )
        if known is not None:
            full = np.zeros(len(inj.is_noise), bool)
            full[~inj.is_noise] = known
            known = full
        train, injected = new, np.asarray(inj.is_noise, bool)
        users, items = train.coo()
    return NoiseLog(train, users, items, injected, known, source)


# ====================================================================== cross-fitting
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


def sample_unobserved(
    matrix: sp.csr_matrix, users: np.ndarray, n_negatives: int, rng: np.random.Generator, *, rounds: int = 20,
    chunk: int = 1 << 16,
) -> np.ndarray:
    """(n, n_negatives) int32 uniform items each user has not interacted with in ``matrix`` (rejection sampling).

    A user who interacted with (nearly) every item keeps uniform draws after ``rounds`` rejection rounds.
    """
    m = sp.csr_matrix(matrix)
    n_items = m.shape[1]
    mu, mi = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr)), m.indices.astype(np.int64)
    taken = np.sort(mu * n_items + mi)
    out = np.empty((len(users), n_negatives), dtype=np.int32)
    for start in range(0, len(users), chunk):
        u = np.asarray(users[start : start + chunk], np.int64)[:, None]
        draw = rng.integers(0, n_items, size=(len(u), n_negatives))
        for _ in range(rounds):
            keys = u * n_items + draw
            pos = np.minimum(np.searchsorted(taken, keys), max(len(taken) - 1, 0))
            todo = taken[pos] == keys if len(taken) else np.zeros(draw.shape, bool)
            if not todo.any():
                break
            draw[todo] = rng.integers(0, n_items, size=int(todo.sum()))
        out[start : start + chunk] = draw
    return out


LOSS_KINDS = ("rank", "bpr")
"""Per-interaction losses: ``rank`` (default) = probit of the randomised share of sampled unobserved items scored
above the interaction; ``bpr`` = mean softplus(s_uj − s_ui) over the sampled items."""

PVALUE = "pvalue"
"""The kind of :func:`interaction_losses` that gives the p-value itself: the randomised share of sampled unobserved
items scored above the interaction, ``(k + U) / (m + 1)``; ``rank`` is its probit."""

METHODS = ("storey", "mixture")
"""Estimators: ``storey`` (default) = :func:`robustrec.noise.noisy_share_from_pvalues` on the p-values;
``mixture`` = :func:`robustrec.noise.noisy_share`, the per-user loss mixture, on ``--loss`` losses."""


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
    from scipy.special import ndtri

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


def cross_fitted_losses(matrix: sp.csr_matrix, *, loss: str = "rank", **options) -> np.ndarray:
    """(n,) out-of-sample loss of every interaction of ``matrix`` (n_users, n_items) CSR, in CSR order.

    For each of ``n_folds`` folds (:func:`fold_assignment`) an MF-BPR model trains on the other folds for
    ``epochs`` epochs (no validation) and the held-out fold's interactions are scored against ``n_negatives``
    items unobserved in the *whole* log (:func:`sample_unobserved`); ``loss`` is one of :data:`LOSS_KINDS`
    (:func:`interaction_losses`). Options: ``n_folds, epochs, dim, n_negatives, seed, progress,
    config_overrides`` (see :func:`cross_fitted_loss_kinds`).
    """
    return cross_fitted_loss_kinds(matrix, kinds=(loss,), **options)[loss]


def cross_fitted_loss_kinds(
    matrix: sp.csr_matrix,
    *,
    n_folds: int = DEFAULT_FOLDS,
    epochs: int = DEFAULT_EPOCHS,
    dim: int = DEFAULT_DIM,
    n_negatives: int = DEFAULT_NEGATIVES,
    kinds: tuple[str, ...] = ("rank",),
    batch_size: int | None = None,
    lr: float = DEFAULT_LR,
    l2: float = DEFAULT_L2,
    seed: int = 0,
    progress: bool = False,
    config_overrides: dict | None = None,
) -> dict[str, np.ndarray]:
    """Like :func:`cross_fitted_losses` for several loss kinds from the same cross-fitted models and negatives.

    ``kinds`` may include ``"pvalue"`` (:data:`PVALUE`); ``lr``, ``l2`` go to the fused row-wise Adagrad of
    :class:`robustrec.training.TrainConfig`; ``config_overrides`` override any other ``TrainConfig`` field.
    """
    import torch

    from robustrec.training import TrainConfig, fit

    if n_folds < 2:
        raise ValueError(f"--folds must be >= 2 (cross-fitting needs a held-out fold), got {n_folds}")
    if n_negatives < 1:
        raise ValueError(f"--negatives must be >= 1, got {n_negatives}")
    for loss in kinds:
        if loss not in (*LOSS_KINDS, PVALUE):
            raise ValueError(f"loss kind must be one of {(*LOSS_KINDS, PVALUE)}; got {loss!r}")
    matrix = sp.csr_matrix(matrix)
    n_users, n_items = matrix.shape
    users = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(matrix.indptr))
    items = matrix.indices.astype(np.int64)
    fold = fold_assignment(users, n_folds, seed=seed)
    rng = np.random.default_rng(seed + 1)
    negatives = sample_unobserved(matrix, users, n_negatives, rng)
    losses = {kind: np.empty(len(users)) for kind in kinds}
    # At least ~100 optimizer steps per epoch: small logs get small batches (TrainConfig's 4096 is for big ones).
    if batch_size is None:
        batch_size = int(min(4096, max(128, 2 ** math.floor(math.log2(max(len(users), 1) / 100)))))
    settings = dict(model="mf", loss="bpr", sampler="uniform", dim=dim, epochs=epochs, eval_every=0, seed=seed,
                    batch_size=batch_size, lr=lr, l2=l2)
    settings.update(config_overrides or {})
    for k in range(n_folds):
        held = fold == k
        keep = ~held
        train = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (users[keep], items[keep])), shape=(n_users, n_items)
        )
        config = TrainConfig(**{**settings, "seed": seed + k})
        tic = time.perf_counter()
        if progress:
            print(f"fold {k + 1}/{n_folds}: training on {train.nnz:,} interactions", file=sys.stderr)
        model = fit(config, train, progress=progress).model
        uf, itf = (t.detach().cpu().to(torch.float32).numpy() for t in model.embedding_matrices())
        for kind in kinds:
            losses[kind][held] = interaction_losses(
                uf, itf, users[held], items[held], negatives[held], kind=kind, rng=rng
            )
        log.info("fold %d/%d: %.1fs", k + 1, n_folds, time.perf_counter() - tic)
    return losses


# ====================================================================== results
@dataclass
class NoiseAnalysis:
    """Everything ``estimate`` and ``flag`` report."""

    data: NoiseLog
    losses: np.ndarray
    scores: np.ndarray
    estimate: object  # robustrec.noise.Estimate
    seconds: float
    settings: dict

    def summary(self) -> dict:
        from robustrec.runs import auc

        e = self.estimate
        out = {
            "noisy_share": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "confidence": e.confidence,
            "method": e.method, "n_interactions": int(len(self.losses)),
            "n_users": int(len(np.unique(self.data.users))), "data": self.data.source,
            "seconds": round(self.seconds, 2), **self.settings,
        }
        d = self.data
        if d.is_injected is not None:
            out["injected_share"] = float(d.is_injected.mean())
            out["n_injected"] = int(d.is_injected.sum())
            out["injected_auc"] = _finite(auc(self.scores, d.is_injected))
        if d.known_noise is not None:
            out["known_noisy_share"] = float(d.known_noise.mean())
            out["known_noise_auc"] = _finite(auc(self.scores, d.known_noise))
        return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def analyse(
    data: NoiseLog,
    *,
    n_folds: int = DEFAULT_FOLDS,
    epochs: int = DEFAULT_EPOCHS,
    dim: int = DEFAULT_DIM,
    n_negatives: int = DEFAULT_NEGATIVES,
    loss: str = "rank",
    method: str = "storey",
    batch_size: int | None = None,
    lr: float = DEFAULT_LR,
    l2: float = DEFAULT_L2,
    n_resamples: int = 200,
    seed: int = 0,
    progress: bool = False,
) -> NoiseAnalysis:
    """Cross-fitted p-values or losses → the noisy share with its interval, and per-interaction noise scores.

    ``method="storey"`` (default): p-values (:data:`PVALUE`) → :func:`~robustrec.noise.noisy_share_from_pvalues`
    (users resampled whole for the interval) and :func:`~robustrec.noise.noise_scores_from_pvalues`; the stored
    losses are the ``rank`` losses Φ⁻¹(p) (``loss`` is ignored). ``method="mixture"``: ``loss`` losses →
    :func:`~robustrec.noise.noisy_share` and :func:`~robustrec.noise.noise_scores`.
    """
    from scipy.special import ndtri

    from robustrec.noise import noise_scores, noise_scores_from_pvalues, noisy_share, noisy_share_from_pvalues

    if method not in METHODS:
        raise ValueError(f"--method must be one of {METHODS}; got {method!r}")
    tic = time.perf_counter()
    train = dict(n_folds=n_folds, epochs=epochs, dim=dim, n_negatives=n_negatives, seed=seed, batch_size=batch_size,
                 lr=lr, l2=l2, progress=progress)
    if method == "storey":
        p = cross_fitted_losses(data.log.matrix, loss=PVALUE, **train)
        est = noisy_share_from_pvalues(p, users=data.users, n_resamples=n_resamples, seed=seed)
        scores = noise_scores_from_pvalues(p, pi0=est.value)
        losses = ndtri(p)
        loss = "rank"
    else:
        losses = cross_fitted_losses(data.log.matrix, loss=loss, **train)
        est = noisy_share(losses, data.users, n_resamples=n_resamples, seed=seed)
        scores = noise_scores(losses, data.users)
    settings = dict(folds=n_folds, epochs=epochs, dim=dim, negatives=n_negatives, loss=loss, estimator=method,
                    lr=lr, l2=l2, seed=seed)
    return NoiseAnalysis(data, losses, scores, est, time.perf_counter() - tic, settings)


def ranking(analysis: NoiseAnalysis) -> np.ndarray:
    """(n,) interaction indices, most suspicious first: by noise score, ties by the loss, then CSR order."""
    return np.lexsort((np.arange(len(analysis.scores)), -analysis.losses, -analysis.scores))


def flag_frame(analysis: NoiseAnalysis) -> pd.DataFrame:
    """Interactions ranked by noise score (rank 1 = most suspicious), raw ids, with the known truth if any."""
    d = analysis.data
    order = ranking(analysis)
    cols = {
        "user": d.log.user_ids[d.users[order]], "item": d.log.item_ids[d.items[order]],
        "noise_score": analysis.scores[order], "rank": np.arange(1, len(order) + 1),
    }
    if d.is_injected is not None:
        cols["is_injected"] = d.is_injected[order].astype(int)
    if d.known_noise is not None:
        cols["is_known_noise"] = d.known_noise[order].astype(int)
    return pd.DataFrame(cols)


def _csv_text(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


# ====================================================================== CLI
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _drop_share(text: str) -> str | float:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a share in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a share in [0, 1], got {text!r}")
    return value


def add_parser(commands) -> None:
    from robustrec.data import FORMATS

    parser = commands.add_parser("noise", help="estimate the share of noisy interactions; flag the suspicious ones",
                                 description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="noise_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", type=Path, default=None, help="file or directory; default: the synthetic default")
    common.add_argument("--format", default="auto", choices=FORMATS, help="data format")
    common.add_argument("--inject-noise", type=float, default=0.0, metavar="R",
                        help="add floor(R*|log_u|) random unobserved items per user first (mask kept); 0 = none")
    common.add_argument("--seed", type=int, default=0, help="seed of split, injection, folds, training, bootstrap")
    common.add_argument("--folds", type=int, default=DEFAULT_FOLDS, help="cross-fitting folds (>= 2)")
    common.add_argument("--epochs", type=_positive_int, default=DEFAULT_EPOCHS, help="training epochs per fold")
    common.add_argument("--dim", type=_positive_int, default=DEFAULT_DIM, help="embedding dimension (multiple of 4)")
    common.add_argument("--negatives", type=_positive_int, default=DEFAULT_NEGATIVES,
                        help="sampled unobserved items per interaction in its loss")
    common.add_argument("--method", default="storey", choices=METHODS,
                        help="storey (default): Storey's null proportion of the p-values (share of sampled "
                             "unobserved items scored above each interaction); mixture: per-user loss mixture")
    common.add_argument("--loss", default="rank", choices=LOSS_KINDS,
                        help="--method mixture's per-interaction loss: rank = probit of the share of sampled "
                             "unobserved items scored above it (default); bpr = their mean BPR loss")
    common.add_argument("--lr", type=float, default=DEFAULT_LR, help="learning rate of the fused row-wise Adagrad")
    common.add_argument("--l2", type=float, default=DEFAULT_L2, help="L2 weight on the batch's embeddings")
    common.add_argument("--batch-size", type=_positive_int, default=None,
                        help="training batch size (default: about 1/100 of a fold's interactions, 128..4096)")
    common.add_argument("--resamples", type=_positive_int, default=200, help="bootstrap resamples of the interval")
    common.add_argument("--max-users", type=_positive_int, default=None,
                        help="subsample this many users (all their interactions) for speed")
    common.add_argument("--synthetic-users", type=_positive_int, default=5000, help="users of the synthetic default")
    common.add_argument("--synthetic-items", type=_positive_int, default=3000, help="items of the synthetic default")
    common.add_argument("--json", action="store_true", help="print one JSON object (no progress)")
    common.add_argument("-q", "--quiet", dest="noise_quiet", action="store_true", help="no progress bars")
    est = sub.add_parser("estimate", parents=[common], help="estimated share of noisy interactions with its interval")
    est.set_defaults(run=run)
    flag = sub.add_parser("flag", parents=[common], help="interactions ranked by noise score, and a cleaned log")
    flag.add_argument("--out", type=Path, required=True, help="CSV of the ranked interactions to write")
    flag.add_argument("--clean-out", type=Path, default=None, help="cleaned log (default: OUT with .clean.csv)")
    drop = flag.add_mutually_exclusive_group()
    drop.add_argument("--drop-top", type=_drop_share, default=None, metavar="F",
                      help="drop the top share F in [0, 1] of the ranking from the cleaned log")
    drop.add_argument("--drop-share", type=_drop_share, default="auto", metavar="auto|F",
                      help="'auto' (default): drop the estimated noisy share; or a share like --drop-top")
    flag.set_defaults(run=run)


def _clean_path(out: Path) -> Path:
    name = out.name[:-4] if out.name.lower().endswith(".csv") else out.name
    return out.with_name(name + ".clean.csv")


def run(args: argparse.Namespace) -> int:
    from robustrec import checkpoint

    if args.folds < 2:
        raise ValueError(f"--folds must be >= 2 (cross-fitting needs a held-out fold), got {args.folds}")
    if args.dim % 4:
        raise ValueError(f"--dim must be a multiple of 4 (FBGEMM's fused embedding kernels), got {args.dim}")
    quiet = args.json or args.noise_quiet or getattr(args, "quiet", False)
    if args.json:
        logging.getLogger("robustrec").setLevel(logging.WARNING)
    data = load_noise_log(
        None if args.data is None else args.data, format=args.format, inject_noise=args.inject_noise, seed=args.seed,
        max_users=args.max_users, synthetic_users=args.synthetic_users, synthetic_items=args.synthetic_items,
    )
    if len(data.users) < 20:
        raise ValueError(f"{data.source}: {len(data.users)} interactions are too few to estimate a noisy share (>= 20)")
    analysis = analyse(
        data, n_folds=args.folds, epochs=args.epochs, dim=args.dim, n_negatives=args.negatives,
        loss=args.loss, method=args.method, batch_size=args.batch_size, lr=args.lr, l2=args.l2,
        n_resamples=args.resamples, seed=args.seed, progress=not quiet,
    )
    summary = analysis.summary()
    if args.noise_command == "flag":
        frame = flag_frame(analysis)
        share = args.drop_top if args.drop_top is not None else args.drop_share
        share_value = analysis.estimate.value if share == "auto" else float(share)
        n_drop = int(round(share_value * len(frame)))
        clean_path = args.clean_out or _clean_path(args.out)
        if clean_path.resolve() == args.out.resolve():
            raise ValueError("--clean-out must differ from --out")
        checkpoint.save_text(_csv_text(frame), args.out)
        # the cleaned log keeps the log's own (CSR) order
        order = ranking(analysis)
        mask = np.ones(len(frame), bool)
        mask[order[:n_drop]] = False
        kept = pd.DataFrame({"user": data.log.user_ids[data.users[mask]], "item": data.log.item_ids[data.items[mask]]})
        checkpoint.save_text(_csv_text(kept), clean_path)
        summary.update(
            out=str(args.out), clean_out=str(clean_path), n_dropped=n_drop, n_kept=int(len(kept)),
            drop_share=share_value,
        )
        truth = data.truth
        if truth is not None and n_drop:
            summary["precision_of_dropped"] = float(truth[order[:n_drop]].mean())
    if args.json:
        print(json.dumps(summary, sort_keys=True, allow_nan=False))
        return 0
    e = analysis.estimate
    print(f"data: {data.source}: {summary['n_interactions']:,} interactions of {summary['n_users']:,} users")
    print(f"estimated noisy share: {e.value:.3f}  [{e.ci_low:.3f}, {e.ci_high:.3f}] "
          f"({e.confidence:.0%} interval, {e.method}, {args.folds}-fold cross-fitted MF-BPR "
          f"{'p-values' if args.method == 'storey' else args.loss + ' losses'})")
    if "injected_share" in summary:
        print(f"injected share:        {summary['injected_share']:.3f}  (noise-score AUC {summary['injected_auc']:.3f})")
    if "known_noisy_share" in summary:
        print(f"known noisy share:     {summary['known_noisy_share']:.3f}  (noise-score AUC {summary['known_noise_auc']:.3f})")
    if args.noise_command == "flag":
        print(f"wrote {args.out} ({len(analysis.losses):,} ranked interactions) and {summary['clean_out']} "
              f"({summary['n_kept']:,} kept, {summary['n_dropped']:,} dropped = share {summary['drop_share']:.3f})")
    return 0
