"""Noise-rate estimation and noise injection, shared by ``robustrec`` and ``alignment``.

Imports numpy only: no torchrec, no transformers, no pandas (cheap to import). Pure functions of arrays,
options keyword-only; every estimator returns an :class:`Estimate` (value, interval, method, n, whether the
data identify it and why not).

- :mod:`.confident_learning`: Northcutt et al. (JAIR 2021) thresholds, confident joint, joint, noise matrix.
- :mod:`.flip_rate`: flip rate ε of preference pairs (agreement, scorer, confident learning) and the decision
  rule :func:`precise_enough`; :mod:`.dawid_skene`: from repeated annotations, with each pair's flip probability.
- :mod:`.implicit_feedback`: noisy share of observed positives (Storey's π0 on p-values; per-user loss mixture), PU label
  frequency.
- :mod:`.inject`: flips and PLD-style added interactions with the injected mask kept.
"""

from .confident_learning import (
    ConfidentLearningResult,
    class_prior,
    class_thresholds,
    confident_joint,
    estimate_confident_learning,
    estimate_joint,
    inverse_noise_matrix,
    joint_to_inverse_noise_matrix,
    joint_to_noise_matrix,
    noise_matrix,
)
from .estimate import DEFAULT_N_RESAMPLES, Estimate, Interval, bootstrap_ci, bootstrap_estimate
from .dawid_skene import DAWID_SKENE_CONFUSIONS, DawidSkeneResult, dawid_skene_flip_rate_bounds, flip_rate_dawid_skene
from .flip_rate import (
    DEFAULT_MAX_CI_WIDTH,
    FIRST_BETTER,
    FLIP_RATE_METHODS,
    MISSING,
    SCORE_KINDS,
    SECOND_BETTER,
    TIE,
    TIE_POLICIES,
    FlipRateBounds,
    SampleSizes,
    agreement_flip_rate_bounds,
    agreement_to_flip_rate,
    binary_confident_learning_rate,
    confident_learning_flip_rate_bounds,
    flip_posterior,
    flip_rate_confident_learning,
    flip_rate_from_agreement,
    flip_rate_from_scorer,
    pairwise_agreement,
    precise_enough,
    preference_codes,
    scorer_flip_rate_bounds,
    scorer_sample_sizes,
    wilson_interval,
)
from .implicit_feedback import (
    STOREY_LAMBDAS,
    VALUE_KINDS,
    LossMixture,
    fit_loss_mixture,
    hidden_positive_share,
    label_frequency,
    noise_scores,
    noise_scores_from_pvalues,
    noisy_share,
    noisy_share_from_pvalues,
)
from .inject import (
    FlippedLabels,
    InjectedInteractions,
    add_random_interactions,
    apply_flips,
    flip_labels,
    flip_pairs,
)

__all__ = [
    # results and bootstrap
    "Estimate",
    "Interval",
    "bootstrap_ci",
    "bootstrap_estimate",
    "DEFAULT_N_RESAMPLES",
    # confident learning
    "ConfidentLearningResult",
    "class_thresholds",
    "confident_joint",
    "estimate_joint",
    "estimate_confident_learning",
    "noise_matrix",
    "inverse_noise_matrix",
    "class_prior",
    "joint_to_noise_matrix",
    "joint_to_inverse_noise_matrix",
    # flip rate of preference pairs
    "FIRST_BETTER",
    "SECOND_BETTER",
    "TIE",
    "MISSING",
    "TIE_POLICIES",
    "DAWID_SKENE_CONFUSIONS",
    "SCORE_KINDS",
    "FLIP_RATE_METHODS",
    "DawidSkeneResult",
    "preference_codes",
    "agreement_to_flip_rate",
    "pairwise_agreement",
    "flip_rate_from_agreement",
    "flip_rate_dawid_skene",
    "flip_rate_from_scorer",
    "flip_rate_confident_learning",
    "flip_posterior",
    "DEFAULT_MAX_CI_WIDTH",
    "FlipRateBounds",
    "SampleSizes",
    "wilson_interval",
    "agreement_flip_rate_bounds",
    "scorer_flip_rate_bounds",
    "binary_confident_learning_rate",
    "confident_learning_flip_rate_bounds",
    "dawid_skene_flip_rate_bounds",
    "precise_enough",
    "scorer_sample_sizes",
    # implicit feedback
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
    # injection
    "FlippedLabels",
    "InjectedInteractions",
    "flip_pairs",
    "apply_flips",
    "flip_labels",
    "add_random_interactions",
]
