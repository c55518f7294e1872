"""The preference losses: names, their mapping onto TRL, and a reference implementation.

Notation: for a pair (x, y_w, y_l) with policy π_θ and reference π_ref, the DPO log-ratio margin is
``h = [log π_θ(y_w|x) − log π_ref(y_w|x)] − [log π_θ(y_l|x) − log π_ref(y_l|x)]`` and ``z = β·h``;
ε is the probability that a label was flipped.

============  =============================================================  ==============================
name          per-pair loss                                                  computed by
============  =============================================================  ==============================
``dpo``       −log σ(z)                                                      TRL ``sigmoid``
``rdpo``      [(1−ε)·(−log σ(z)) − ε·(−log σ(−z))] / (1−2ε)                  TRL ``robust``, smoothing ε
``cdpo``      (1−ε)·(−log σ(z)) + ε·(−log σ(−z))                             TRL ``robust``, see below
``ipo``       (h̄ − 1/(2β))², h̄ = the margin of per-token mean log-ratios      TRL ``ipo``
============  =============================================================  ==============================

cDPO on TRL: TRL ≥ 0.29 ignores ``label_smoothing`` for ``sigmoid``, but its ``robust`` loss with smoothing
``s`` is ``[(1−s)·A − s·B] / (1−2s)`` (A = −log σ(z), B = −log σ(−z)), and with ``s = −ε/(1−2ε)`` that is
exactly ``(1−ε)·A + ε·B``: cDPO is TRL's robust loss at a negative smoothing (:func:`trl_label_smoothing`).
The identity is checked against :func:`preference_loss` in the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The loss names, defined once: config validation, errors, CLI choices, docs and tests reuse this tuple.
PREFERENCE_LOSSES: tuple[str, ...] = ("dpo", "rdpo", "cdpo", "ipo")

#: Losses that take a flip rate ε.
FLIP_RATE_LOSSES: tuple[str, ...] = ("rdpo", "cdpo")

#: TRL ``DPOConfig.loss_type`` computing each loss.
TRL_LOSS_TYPE: dict[str, str] = {"dpo": "sigmoid", "rdpo": "robust", "cdpo": "robust", "ipo": "ipo"}

#: Flip rates must lie in [0, MAX_FLIP_RATE): at ε = 1/2 the labels carry no information and rDPO divides by 0.
MAX_FLIP_RATE = 0.5

#: The flip-rate value asking for an estimate from the training pairs instead of a number.
AUTO = "auto"
#: ``flip_rate="per-pair"``: each training pair's own ε_i (a ``flip_rate`` column, e.g. from repeated
#: annotations) weights its rDPO loss.
PER_PAIR = "per-pair"
#: The flip rates that are not a number: estimated from the data before training, or given per pair.
FLIP_RATE_MODES: tuple[str, ...] = (AUTO, PER_PAIR)


def check_loss(loss: str) -> str:
    """Return ``loss`` if it is one of :data:`PREFERENCE_LOSSES`, else raise a ValueError listing them."""
    if loss not in PREFERENCE_LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(PREFERENCE_LOSSES)}")
    return loss


def check_flip_rate(flip_rate, *, allow_modes: bool = False) -> float | str:
    """The one validator of a flip rate ε: return it as a float in [0, 0.5), else raise a ValueError saying why.

    With ``allow_modes``, the texts of :data:`FLIP_RATE_MODES` (``"auto"``, ``"per-pair"``; any case, blanks
    ignored) are returned as they are. Numbers may come as text (command lines, YAML files).
    """
    if allow_modes and isinstance(flip_rate, str) and flip_rate.strip().lower() in FLIP_RATE_MODES:
        return flip_rate.strip().lower()
    expected = "a number in [0, 0.5)" + (f" or one of {', '.join(FLIP_RATE_MODES)}" if allow_modes else "")
    if isinstance(flip_rate, bool):
        raise ValueError(f"flip rate must be {expected}, got {flip_rate!r}")
    try:
        value = float(flip_rate)
    except (TypeError, ValueError):
        raise ValueError(f"flip rate must be {expected}, got {flip_rate!r}") from None
    if not 0.0 <= value < MAX_FLIP_RATE:
        raise ValueError(
            f"flip rate must lie in [0, 0.5), got {value}: at 0.5 or above the labels are no better than coin "
            "flips, and rDPO's 1/(1-2ε) factor is undefined (TRL would only warn and train to NaN weights)"
        )
    return value


def trl_label_smoothing(loss: str, flip_rate: float) -> float:
    """The ``label_smoothing`` that makes TRL's loss for ``loss`` equal ours at flip rate ε."""
    check_loss(loss)
    epsilon = check_flip_rate(flip_rate)
    if loss == "rdpo":
        return epsilon
    if loss == "cdpo":
        return -epsilon / (1.0 - 2.0 * epsilon)
    return 0.0


def preference_loss(
    loss: str,
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    *,
    beta: float,
    flip_rate: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair loss, the reference for what the trainer computes through TRL.

    Args:
        loss: one of :data:`PREFERENCE_LOSSES`.
        chosen_logratios, rejected_logratios: (B,) ``log π_θ(y|x) − log π_ref(y|x)`` summed over the
            completion tokens.
        beta: β, the KL strength (for IPO: τ).
        flip_rate: ε in [0, 0.5), used by ``rdpo`` and ``cdpo``.
        chosen_lengths, rejected_lengths: (B,) completion lengths in tokens; needed by ``ipo`` only.

    Returns:
        (B,) losses.
    """
    check_loss(loss)
    epsilon = check_flip_rate(flip_rate)
    z = beta * (chosen_logratios - rejected_logratios)
    if loss == "dpo":
        # Rafailov et al. 2023, "Direct Preference Optimization", eq. (7).
        return -F.logsigmoid(z)
    if loss == "rdpo":
        # Chowdhury, Kini & Natarajan 2024, "Provably Robust DPO", the de-biased loss of section 3:
        # unbiased for the clean DPO loss under symmetric flips with rate ε < 1/2.
        return ((1 - epsilon) * -F.logsigmoid(z) - epsilon * -F.logsigmoid(-z)) / (1 - 2 * epsilon)
    if loss == "cdpo":
        # Mitchell 2023, "A note on DPO with noisy preferences" (conservative DPO): label smoothing ε.
        return (1 - epsilon) * -F.logsigmoid(z) + epsilon * -F.logsigmoid(-z)
    # ipo: Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences",
    # eq. (17), with per-token mean log-ratios as in TRL.
    if chosen_lengths is None or rejected_lengths is None:
        raise ValueError("the 'ipo' loss needs chosen_lengths and rejected_lengths")
    margin = chosen_logratios / chosen_lengths.clamp(min=1) - rejected_logratios / rejected_lengths.clamp(min=1)
    return (margin - 1 / (2 * beta)) ** 2
