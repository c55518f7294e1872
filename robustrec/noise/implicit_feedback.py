"""Noise in implicit feedback: noisy observed positives, and hidden positives among unobserved items.

Two quantities, two estimators:

- the share of *noisy interactions* among a log's observed positives (clicks that do not reflect a
  preference): :func:`noisy_share` fits a two-component mixture to per-interaction out-of-sample losses,
  standardised within each user. This follows the observation of PLD (Zhang et al., "Personalized Denoising
  Implicit Feedback for Robust Recommender System", WWW 2025, section 3): noisy interactions stand out in
  the user's *own* loss distribution, not in the pooled one, because users' loss levels differ widely;
  the mixture is fitted with a location and a spread per user.
  :func:`noise_scores` gives each interaction's posterior probability of belonging to the noisy component.
- the *label frequency* ``c = P(observed | positive)`` of positive-unlabeled learning (Elkan & Noto,
  "Learning Classifiers from Only Positive and Unlabeled Data", KDD 2008, section 2, estimator e1), from
  which :func:`hidden_positive_share` gives the share of positives among unobserved items — the quantity
  NBPO's φ models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .estimate import Estimate, _check_confidence, _gather_groups, _group_rows, bootstrap_estimate

__all__ = [
    "VALUE_KINDS",
    "LossMixture",
    "fit_loss_mixture",
    "noisy_share",
    "noise_scores",
    "label_frequency",
    "hidden_positive_share",
    "STOREY_LAMBDAS",
    "noisy_share_from_pvalues",
    "noise_scores_from_pvalues",
]

#: What the per-interaction values are: losses (high = suspicious) or scores (low = suspicious).
VALUE_KINDS = ("loss", "score")

_MIN_INTERACTIONS = 20
_MIN_LABELED = 10


@dataclass(frozen=True)
class LossMixture:
    """A per-user two-component mixture of losses (see :func:`fit_loss_mixture`).

    Attributes:
        noise_weight: share π of interactions in the high-loss (noisy) component; 0 when the mixture does not
            beat one Gaussian per user by BIC.
        shift: Δ, the noisy component's offset in units of each user's spread.
        user_location, user_scale: (n_users,) μ_u and σ_u, indexed like ``np.unique(users)``.
        posterior: (n,) per-interaction posterior probability of the noisy component, in input order.
        standardized: (n,) ``(value − μ_u) / σ_u``.
        n_components: 2, or 1 when one Gaussian per user fits better (then ``posterior`` is all 0).
        converged: whether EM met its tolerance.
    """

    noise_weight: float
    shift: float
    user_location: np.ndarray
    user_scale: np.ndarray
    posterior: np.ndarray
    standardized: np.ndarray
    n_components: int
    converged: bool


def _check_values(values: np.ndarray, users: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind not in VALUE_KINDS:
        raise ValueError(f"kind must be one of {VALUE_KINDS}; got {kind!r}")
    v = np.asarray(values, dtype=np.float64)
    u = np.asarray(users)
    if v.ndim != 1 or u.shape != v.shape:
        raise ValueError(f"values and users must be 1-D of equal length; got {v.shape} and {u.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("losses/scores contain NaN or infinite values")
    if len(v) < _MIN_INTERACTIONS:
        raise ValueError(f"too few interactions for a mixture fit: {len(v)} < {_MIN_INTERACTIONS}")
    if np.ptp(v) == 0:
        raise ValueError("all losses/scores are equal: there is no distribution to fit")
    return (v if kind == "loss" else -v), u


_LOG2PI = float(np.log(2 * np.pi))


def _per_user_em(
    v: np.ndarray,
    uidx: np.ndarray,
    n_users: int,
    *,
    shrinkage: float,
    init: tuple[float, float, np.ndarray, np.ndarray] | None,
    max_iter: int = 500,
    tol: float = 1e-8,
) -> LossMixture:
    """EM for  v_ui = μ_u + σ_u·(Δ·z_ui + N(0, 1)),  z_ui ~ Bernoulli(π)  (generalised EM, closed-form steps).

    σ_u² is shrunk towards the pooled variance with ``shrinkage`` pseudo-observations.
    """
    cnt = np.bincount(uidx, minlength=n_users).astype(np.float64)

    def umean(x: np.ndarray) -> np.ndarray:
        return np.bincount(uidx, weights=x, minlength=n_users) / cnt

    # One Gaussian per user: the null model.
    mu1 = umean(v)
    res1 = (v - mu1[uidx]) ** 2
    var1 = (cnt * umean(res1) + shrinkage * res1.mean()) / (cnt + shrinkage)
    var1 = np.maximum(var1, 1e-12)
    ll1 = float(np.sum(-0.5 * res1 / var1[uidx] - 0.5 * np.log(var1[uidx]) - 0.5 * _LOG2PI))

    fits = []
    inits = [init] if init is not None else []
    if init is None:
        sd0 = np.sqrt(var1)
        z0 = (v - mu1[uidx]) / sd0[uidx]
        for p0 in (0.1, 0.3):
            top = z0 >= np.quantile(z0, 1.0 - p0)
            delta0 = max(float(z0[top].mean() - z0[~top].mean()), 1.0)
            inits.append((p0, delta0, umean(np.where(top, v - delta0 * sd0[uidx], v)), sd0))
    for pi, delta, mu, sd in inits:
        mu, sd = mu.copy(), sd.copy()
        prev = -np.inf
        converged = False
        for _ in range(max_iter):
            s = sd[uidx]
            e = (v - mu[uidx]) / s
            l0 = np.log1p(-pi) - 0.5 * e**2
            l1 = np.log(pi) - 0.5 * (e - delta) ** 2
            m = np.maximum(l0, l1)
            lse = m + np.log(np.exp(l0 - m) + np.exp(l1 - m))
            ll = float(np.sum(lse - np.log(s) - 0.5 * _LOG2PI))
            r = np.exp(l1 - lse)
            if abs(ll - prev) <= tol * abs(ll):
                converged = True
                break
            prev = ll
            pi = float(np.clip(r.mean(), 1e-6, 1 - 1e-6))
            mu = umean(v - r * delta * s)
            dev = v - mu[uidx]
            delta = float(np.sum(r * dev / s) / max(float(r.sum()), 1e-12))
            res2 = (1 - r) * dev**2 + r * (dev - delta * s) ** 2
            sd = np.sqrt(np.maximum((cnt * umean(res2) + shrinkage * res2.mean()) / (cnt + shrinkage), 1e-12))
        if delta < 0:  # keep the noisy component as the high-loss one
            pi, delta, r = 1.0 - pi, -delta, 1.0 - r
            mu = mu - delta * sd
        fits.append((ll, pi, delta, mu, sd, r, converged))
    ll, pi, delta, mu, sd, r, converged = max(fits, key=lambda f: f[0])
    z = (v - mu[uidx]) / sd[uidx]
    # BIC: two more parameters (π, Δ) than one Gaussian per user.
    if 2.0 * (ll - ll1) <= 2.0 * np.log(len(v)):
        sd1 = np.sqrt(var1)
        return LossMixture(0.0, 0.0, mu1, sd1, np.zeros(len(v)), (v - mu1[uidx]) / sd1[uidx], 1, True)
    return LossMixture(float(pi), float(delta), mu, sd, r, z, 2, converged)


def fit_loss_mixture(
    losses: np.ndarray, users: np.ndarray, *, kind: str = "loss", shrinkage: float = 5.0
) -> LossMixture:
    """Fit the per-user clean/noisy mixture of :func:`noisy_share` and return all its parameters.

    Model (PLD's observation, WWW 2025 section 3, made parametric): user ``u``'s values are
    ``μ_u + σ_u·(Δ·z + N(0, 1))`` where ``z ~ Bernoulli(π)`` marks a noisy interaction; μ_u, σ_u per user,
    π and Δ shared. EM from two initialisations (top 10% / top 30% of within-user z-scores as noisy), the one
    with the higher likelihood kept; σ_u² shrunk towards the pooled variance with ``shrinkage``
    pseudo-observations so users with few interactions stay stable.
    """
    v, u = _check_values(losses, users, kind)
    uniq, uidx = np.unique(u, return_inverse=True)
    return _per_user_em(v, uidx.reshape(-1), len(uniq), shrinkage=shrinkage, init=None)


def noise_scores(losses: np.ndarray, users: np.ndarray, *, kind: str = "loss", shrinkage: float = 5.0) -> np.ndarray:
    """Per-interaction posterior probability of being noise, for ranking, inspecting or dropping interactions.

    Args:
        losses: (n,) out-of-sample per-interaction losses (``kind="loss"``, higher = more suspicious) or model
            scores of the observed positives (``kind="score"``, lower = more suspicious), from a cross-fitted
            model (each interaction scored by a model that did not train on it).
        users: (n,) user id of each interaction.

    Returns:
        (n,) float array in [0, 1], in input order: the posterior of the noisy component of
        :func:`fit_loss_mixture`. When one Gaussian per user fits better (no detectable noise) the within-user
        z-scores are returned through a logistic map instead, so the ranking stays informative.
    """
    mix = fit_loss_mixture(losses, users, kind=kind, shrinkage=shrinkage)
    if mix.n_components == 1:
        return 1.0 / (1.0 + np.exp(-np.clip(mix.standardized, -50, 50)))
    return mix.posterior


def noisy_share(
    losses: np.ndarray,
    users: np.ndarray,
    *,
    kind: str = "loss",
    shrinkage: float = 5.0,
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Share of noisy interactions among the observed positives of an implicit-feedback log.

    Method: the per-user mixture of :func:`fit_loss_mixture` — each user's losses are Gaussian around the
    user's own level, with a share π shifted up by Δ user-spreads (PLD, WWW 2025, section 3: noise is visible
    relative to the user's own loss distribution) — fitted by EM; the estimate is π. If one Gaussian per user
    fits better by BIC, the share is 0.

    Assumptions: the losses are out-of-sample (cross-fitted: the model that scores an interaction did not train
    on it; in-sample losses of a memorising model hide the noise); within a user, clean and noisy losses are
    roughly Gaussian with a common spread, the noisy ones higher; most of each user's interactions are clean.
    Known bias: with few interactions per user (10-60 in the tests) the per-user parameters absorb part of the
    noise and π is underestimated by up to about 20% of its value (see tests/noise/test_noise_implicit.py).

    Args:
        losses: (n,) per-interaction losses (``kind="loss"``) or scores (``kind="score"``, lower = suspicious).
        users: (n,) user ids.
        kind: one of ``VALUE_KINDS``.
        shrinkage: pseudo-observations pulling each user's variance towards the pooled one.
        n_resamples, confidence, seed: cluster bootstrap over users (a user's interactions are dependent), the
            mixture re-fitted on each resample, warm-started from the full fit.

    Returns:
        :class:`Estimate` with method ``"loss_mixture"``; ``n`` is the number of interactions.

    Raises:
        ValueError: fewer than 20 interactions, NaN values, constant values, mismatched shapes, unknown kind.
    """
    _check_confidence(confidence)
    v, u = _check_values(losses, users, kind)
    uniq, uidx = np.unique(u, return_inverse=True)
    uidx = uidx.reshape(-1)
    n_users = len(uniq)
    mix = _per_user_em(v, uidx, n_users, shrinkage=shrinkage, init=None)
    order, starts, sizes = _group_rows(uidx)
    rng = np.random.default_rng(seed)
    boot = np.empty(n_resamples)
    for b in range(n_resamples):
        chosen = rng.integers(0, n_users, size=n_users)
        rows = _gather_groups(order, starts, sizes, chosen)
        new_idx = np.repeat(np.arange(n_users), sizes[chosen])
        if mix.n_components == 2:
            init = (mix.noise_weight, mix.shift, mix.user_location[chosen], mix.user_scale[chosen])
        else:
            init = None
        boot[b] = _per_user_em(v[rows], new_idx, n_users, shrinkage=shrinkage, init=init, tol=1e-7).noise_weight
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return Estimate(
        value=mix.noise_weight, ci_low=float(low), ci_high=float(high), method="loss_mixture", n=len(v),
        confidence=confidence,
    )


def label_frequency(
    probs_on_labeled_positives: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Label frequency ``c = P(observed | positive)`` (Elkan & Noto, KDD 2008, section 2, estimator e1).

    Train a probabilistic classifier ``g(x) ≈ P(labeled | x)`` to separate labeled (observed) examples from
    unlabeled ones, *without* a held-out set of labeled positives ``P``; then ``c = mean_{x ∈ P} g(x)``.

    Assumptions (Elkan & Noto, section 2): labeled positives are selected completely at random from all
    positives ("SCAR"); ``g`` is calibrated; and the positives are separable from the negatives
    (``P(positive | x) = 1`` on positives), otherwise e1 underestimates ``c``.

    Args:
        probs_on_labeled_positives: (n,) ``g(x)`` on held-out labeled positives, in [0, 1].
        n_resamples, confidence, seed: bootstrap over the held-out positives.

    Returns:
        :class:`Estimate` with method ``"elkan_noto_e1"``.

    Raises:
        ValueError: values outside [0, 1] or NaN, fewer than 10 held-out positives, or a mean of 0.
    """
    g = np.asarray(probs_on_labeled_positives, dtype=np.float64)
    if g.ndim != 1:
        raise ValueError(f"probs_on_labeled_positives must be 1-D; got shape {g.shape}")
    if not np.all(np.isfinite(g)) or (len(g) and (g.min() < 0.0 or g.max() > 1.0)):
        raise ValueError("probs_on_labeled_positives must be probabilities in [0, 1]")
    if len(g) < _MIN_LABELED:
        raise ValueError(f"too few held-out labeled positives: {len(g)} < {_MIN_LABELED}")
    if g.mean() <= 0.0:
        raise ValueError("the classifier gives probability 0 to every labeled positive: c is not identifiable")
    return bootstrap_estimate(
        np.mean, g, method="elkan_noto_e1", n_resamples=n_resamples, confidence=confidence, seed=seed
    )


def hidden_positive_share(c: float, n_labeled: int, n_unlabeled: int) -> float:
    """Share of positives among the unlabeled (unobserved) items, given the label frequency ``c``.

    With ``n_labeled`` observed positives, the expected number of positives is ``n_labeled / c``, so
    ``n_labeled·(1 − c)/c`` of them hide among the ``n_unlabeled`` items (Elkan & Noto 2008, section 2).
    The function is decreasing in ``c``: map an interval ``[c_low, c_high]`` to
    ``[hidden_positive_share(c_high, …), hidden_positive_share(c_low, …)]``.

    Raises:
        ValueError: ``c`` not in (0, 1], negative counts, ``n_unlabeled == 0``, or a share above 1 (``c`` too
            small for these counts: more hidden positives than unlabeled items).
    """
    c = float(c)
    if not 0.0 < c <= 1.0:
        raise ValueError(f"label frequency c must be in (0, 1]; got {c}")
    if n_labeled < 0 or n_unlabeled <= 0:
        raise ValueError(f"need n_labeled >= 0 and n_unlabeled > 0; got {n_labeled}, {n_unlabeled}")
    share = n_labeled * (1.0 - c) / (c * n_unlabeled)
    if share > 1.0:
        raise ValueError(
            f"c = {c:.4g} implies {n_labeled * (1 - c) / c:.0f} hidden positives among only {n_unlabeled} unlabeled "
            "items; c is underestimated (is the classifier calibrated?)"
        )
    return float(share)


# ====================================================================== p-values: Storey's π0
#: The λ grid of Storey's estimator (Storey 2002, section 9; Storey, Taylor & Siegmund 2004, section 6).
STOREY_LAMBDAS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2))
_MIN_PVALUES = 20


def _check_pvalues(p: np.ndarray, users: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be 1-D; got shape {p.shape}")
    if len(p) < _MIN_PVALUES:
        raise ValueError(f"too few p-values to estimate a null proportion: {len(p)} < {_MIN_PVALUES}")
    if not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0:
        raise ValueError("p-values must be finite and in [0, 1]")
    if users is None:
        return p, None
    u = np.asarray(users)
    if u.shape != p.shape:
        raise ValueError(f"users must have one entry per p-value; got {u.shape} and {p.shape}")
    return p, u


def _storey_curve(above: np.ndarray, n: np.ndarray | float, lams: np.ndarray) -> np.ndarray:
    """π0(λ) = #{p > λ} / ((1 − λ)·n), clipped to [0, 1]; ``above`` (..., G), ``n`` broadcastable to (...)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(above / ((1.0 - lams) * np.asarray(n, dtype=np.float64)[..., None]), 0.0, 1.0)


def noisy_share_from_pvalues(
    p: np.ndarray,
    *,
    users: np.ndarray | None = None,
    lam: float | str = "auto",
    lambdas: tuple[float, ...] = STOREY_LAMBDAS,
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Share of noisy interactions as the null proportion π0 of a p-value mixture (Storey's estimator).

    Each observed interaction (u, i) gets ``p`` = the randomised share of m sampled unobserved items that a
    cross-fitted model (one that did not train on (u, i)) scores above it: with k of them above (ties split at
    random), ``p = (k + U) / (m + 1)``, U ~ Uniform(0, 1). A *noisy* interaction in the sense of PLD's
    protocol — a uniformly random unobserved item — is exchangeable with the sampled items, so its k is uniform
    on {0..m} and its p is exactly Uniform(0, 1), whatever the model. Genuine interactions have p near 0 for
    a good model. The log is a mixture ``f(p) = π0·1 + (1 − π0)·f1(p)`` and the noisy share is π0, estimated by

        π0(λ) = #{p > λ} / ((1 − λ)·n)

    (Storey, "A direct approach to false discovery rates", JRSS-B 2002, section 3, eq. 6; Storey &
    Tibshirani, PNAS 2003, remark B). ``lam="auto"`` picks λ from ``lambdas`` by the bootstrap-MSE rule
    (Storey 2002, section 9; Storey, Taylor & Siegmund, JRSS-B 2004, section 6): the λ minimising
    ``mean_b (π0*_b(λ) − min_λ' π0(λ'))²`` over the bootstrap resamples.

    Assumptions and bias: the null p-values are exactly uniform, which holds when the noise is exchangeable
    with the sampled unobserved items (uniform random items; *not* on-taste items a user merely dislikes,
    like DeCA's low ratings — those look genuine and are counted clean). The estimate is conservative:
    ``E π0(λ) = π0 + (1 − π0)·P(p_clean > λ)/(1 − λ)``, i.e. biased up by the share of clean interactions
    with p > λ over (1 − λ) — about 0.02 for a well-trained MF-BPR on Gowalla at λ = 0.8, much more for a weak
    model, which leaves genuine interactions looking random.

    Args:
        p: (n,) p-values in [0, 1], one per interaction.
        users: optional (n,) user of each interaction; then the interval resamples whole users (a cluster
            bootstrap: one user's interactions share a model and are dependent), else single interactions.
        lam: a fixed λ in [0, 1), or ``"auto"`` (bootstrap MSE over ``lambdas``).
        lambdas: the grid for ``"auto"``, values in [0, 1).
        n_resamples, confidence, seed: the bootstrap (used both for choosing λ and for the percentile
            interval of π0(λ) at the chosen λ).

    Returns:
        :class:`Estimate` with method ``"storey_pi0(lambda=…)"``; ``n`` is the number of p-values.

    Raises:
        ValueError: p outside [0, 1] or not finite, fewer than 20 p-values, mismatched ``users``, λ outside
            [0, 1), a bad grid or confidence.
    """
    _check_confidence(confidence)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    p, u = _check_pvalues(p, users)
    if isinstance(lam, str):
        if lam != "auto":
            raise ValueError(f"lam must be a number in [0, 1) or 'auto'; got {lam!r}")
        lams = np.asarray(sorted(set(float(x) for x in lambdas)), dtype=np.float64)
        if len(lams) == 0 or lams.min() < 0.0 or lams.max() >= 1.0:
            raise ValueError(f"lambdas must be a non-empty grid in [0, 1); got {lambdas}")
    else:
        lam = float(lam)
        if not 0.0 <= lam < 1.0:
            raise ValueError(f"lam must be in [0, 1); got {lam}")
        lams = np.asarray([lam])
    n = len(p)
    rng = np.random.default_rng(seed)
    # Sufficient statistics: counts of p > λ per cluster. The bootstrap only reweights clusters (users) or,
    # without users, draws the multinomial counts of the cells between consecutive λ (exactly equivalent to
    # resampling interactions, since π0(λ) depends on the data only through these counts).
    if u is not None:
        _, uidx = np.unique(u, return_inverse=True)
        uidx = uidx.reshape(-1)
        n_users = int(uidx.max()) + 1
        above_u = np.stack([np.bincount(uidx, weights=(p > x), minlength=n_users) for x in lams], axis=1)
        size_u = np.bincount(uidx, minlength=n_users).astype(np.float64)
        weights = np.stack([np.bincount(rng.integers(0, n_users, n_users), minlength=n_users)
                            for _ in range(n_resamples)]).astype(np.float64)
        boot = _storey_curve(weights @ above_u, weights @ size_u, lams)
    else:
        edges = np.concatenate(([-np.inf], lams, [np.inf]))
        # p exactly equal to λ is not "above" λ: count it in the lower cell (histogram bins are [a, b)).
        cells = np.array([np.sum((p > a) & (p <= b)) for a, b in zip(edges[:-1], edges[1:])])
        draws = rng.multinomial(n, cells / n, size=n_resamples)
        boot = _storey_curve(np.cumsum(draws[:, ::-1], axis=1)[:, ::-1][:, 1:], n, lams)
    curve = _storey_curve(np.array([(p > x).sum() for x in lams], dtype=np.float64), n, lams)
    if len(lams) > 1:
        mse = np.mean((boot - curve.min()) ** 2, axis=0)
        j = int(np.argmin(mse))
    else:
        j = 0
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot[:, j], [alpha, 1.0 - alpha])
    return Estimate(
        value=float(curve[j]), ci_low=float(low), ci_high=float(high), method=f"storey_pi0(lambda={lams[j]:.2f})",
        n=n, confidence=confidence,
    )


def noise_scores_from_pvalues(p: np.ndarray, *, pi0: float | None = None, n_bins: int = 50) -> np.ndarray:
    """Per-interaction posterior probability of being noise from its p-value (a local false discovery rate).

    With the mixture ``f(p) = π0 + (1 − π0)·f1(p)`` of :func:`noisy_share_from_pvalues`, an interaction with
    p-value p is noise with probability ``π0 / f(p)`` (Efron, Tibshirani, Storey & Tusher, "Empirical Bayes
    analysis of a microarray experiment", JASA 2001, section 2). ``f`` is estimated by a histogram of
    ``n_bins`` equal bins made non-increasing by pool-adjacent-violators (genuine interactions pile up at
    small p; the Grenander-type monotone estimate keeps the score monotone in p). ``pi0`` defaults to
    :func:`noisy_share_from_pvalues` with a fixed λ = 0.8 (no bootstrap).

    Args:
        p: (n,) p-values in [0, 1].

    Returns:
        (n,) scores in [0, 1], in input order, non-decreasing in p (higher = more likely noise).

    Raises:
        ValueError: as :func:`noisy_share_from_pvalues`; ``pi0`` outside [0, 1]; ``n_bins`` < 1.
    """
    p, _ = _check_pvalues(p, None)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if pi0 is None:
        above = float((p > 0.8).sum())
        pi0 = min(1.0, above / (0.2 * len(p)))
    if not 0.0 <= pi0 <= 1.0:
        raise ValueError(f"pi0 must be in [0, 1]; got {pi0}")
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    dens = np.bincount(bins, minlength=n_bins) * n_bins / len(p)
    # pool adjacent violators for a non-increasing fit (equal bin widths: plain averages)
    vals: list[float] = []
    counts: list[int] = []
    for d in dens:
        vals.append(float(d))
        counts.append(1)
        while len(vals) > 1 and vals[-2] < vals[-1]:
            c = counts[-2] + counts[-1]
            vals[-2] = (vals[-2] * counts[-2] + vals[-1] * counts[-1]) / c
            counts[-2] = c
            vals.pop()
            counts.pop()
    mono = np.repeat(vals, counts)
    with np.errstate(divide="ignore"):
        score = np.where(mono > 0, pi0 / np.maximum(mono, 1e-300), 1.0)
    return np.clip(score, 0.0, 1.0)[bins]
