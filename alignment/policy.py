"""Training a policy on preference pairs and scoring it: the library side of ``train`` and ``evaluate``.

**Training** (:func:`build_trainer`): a :class:`~alignment.trainer.RobustDPOTrainer` on a local model. With a
``peft_config`` (LoRA) only the adapters train and the reference is the same model with its adapters disabled:
one copy of the weights in memory. Otherwise a second, frozen copy is the reference (none with
``precompute_ref_log_probs``: TRL then scores the pairs once before training).

**Scoring** (:func:`evaluate_pairs`): pairs are tokenised and cut exactly as for training
(:func:`alignment.sequences.prepare_pairs`), then scored in batches. For a pair (x, y_w, y_l) the implicit
reward of a completion is ``r(y) = β·[log π(y|x) − log π_ref(y|x)]`` (log-probabilities summed over the
completion's tokens, EOS included as in training); the metrics are

- ``pref_accuracy``: share of pairs with r(y_w) > r(y_l) (TRL's ``rewards/accuracies``; ties count as wrong,
  so an untrained policy scores 0);
- ``reward_margin``: mean of r(y_w) − r(y_l); ``chosen_reward`` and ``rejected_reward``: means of each.
"""

from __future__ import annotations

import logging
import tempfile

import numpy as np
import pandas as pd
import torch

from .sequences import LengthCounts, LengthLimits, prepare_pairs

logger = logging.getLogger(__name__)


def build_trainer(
    train_pairs,
    config,
    model_path=None,
    *,
    model_kwargs: dict | None = None,
    peft_config=None,
    eval_pairs=None,
    clean_pairs: pd.DataFrame | None = None,
    flip_rate_estimator=None,
):
    """A :class:`RobustDPOTrainer` on a fresh copy of the local model ``model_path``.

    Args:
        train_pairs, eval_pairs: ``datasets.Dataset`` (or DataFrame) with ``prompt``, ``chosen``, ``rejected``.
        config: a :class:`~alignment.config.RobustDPOConfig`.
        model_kwargs: keyword arguments of :func:`alignment.models.load_model` (``dtype``, ...).
        peft_config: a ``peft.PeftConfig`` (e.g. ``LoraConfig``) to train adapters only.
    """
    from datasets import Dataset

    from .data import COLUMNS, PAIR_FLIP_RATE
    from .models import load_model
    from .trainer import RobustDPOTrainer

    def dataset(pairs):
        if pairs is None or isinstance(pairs, Dataset):
            return pairs
        columns = [c for c in (*COLUMNS, PAIR_FLIP_RATE) if c in pairs.columns]
        return Dataset.from_list(pairs[columns].to_dict("records"))

    torch.manual_seed(config.seed)
    policy, tokenizer = load_model(model_path, **(model_kwargs or {}))
    reference = None
    if peft_config is None and not config.precompute_ref_log_probs:
        reference, _ = load_model(model_path, **(model_kwargs or {}))
    return RobustDPOTrainer(
        model=policy, ref_model=reference, args=config, train_dataset=dataset(train_pairs),
        eval_dataset=dataset(eval_pairs), processing_class=tokenizer, peft_config=peft_config,
        clean_pairs=clean_pairs, flip_rate_estimator=flip_rate_estimator,
    )


def train_policy(
    pairs: pd.DataFrame,
    *,
    loss: str,
    flip_rate: float | str,
    steps: int,
    batch_size: int,
    learning_rate: float,
    beta: float,
    seed: int,
    model_path=None,
    clean_pairs: pd.DataFrame | None = None,
    output_dir: str | None = None,
    show_progress: bool = False,
):
    """Fine-tune a fresh copy of the model on ``pairs`` with a constant learning rate and no checkpoints.

    The controlled experiment's training run. Returns ``(trainer, policy, reference, tokenizer)``.
    """
    from .config import RobustDPOConfig

    with tempfile.TemporaryDirectory() as scratch:
        config = RobustDPOConfig(
            output_dir=output_dir or scratch, loss=loss, flip_rate=flip_rate, beta=beta, max_steps=steps,
            per_device_train_batch_size=batch_size, learning_rate=learning_rate, lr_scheduler_type="constant",
            warmup_steps=0, seed=seed, data_seed=seed, report_to="none", save_strategy="no",
            logging_steps=max(1, steps // 10), disable_tqdm=not show_progress,
        )
        trainer = build_trainer(pairs, config, model_path, clean_pairs=clean_pairs)
        trainer.train()
    return trainer, trainer.model, trainer.ref_model, trainer.processing_class


def load_trained(model_dir, base_model, *, adapter: bool, dtype: str | None = None):
    """``(policy, reference, tokenizer)`` of a trained run, on the accelerator's device.

    Args:
        model_dir: the run's ``model`` folder: a whole model, or a peft adapter (``adapter=True``).
        base_model: the model the run started from (its reference).
    The reference is None for an adapter: the policy with its adapters disabled is the reference.
    """
    from accelerate import PartialState

    from .models import load_model, load_tokenizer

    device = PartialState().device
    tokenizer = load_tokenizer(model_dir)
    if adapter:
        from peft import PeftModel

        base, _ = load_model(base_model, dtype=dtype)
        return PeftModel.from_pretrained(base, model_dir).to(device), None, tokenizer
    policy, _ = load_model(model_dir, dtype=dtype)
    reference, _ = load_model(base_model, dtype=dtype)
    return policy.to(device), reference.to(device), tokenizer


@torch.no_grad()
def score_pairs(policy, tokenizer, prepared, *, reference=None, batch_size: int = 8, progress: bool = False):
    """Completion log-probabilities of every prepared pair under the policy and the reference.

    Args:
        prepared: the dataset of :func:`alignment.sequences.prepare_pairs` (n pairs of token ids).
        reference: the reference model; None when ``policy`` is a peft model, whose reference is itself with
            the adapters disabled.
        batch_size: pairs per forward pass (2·batch_size sequences).
    Returns:
        dict of (n,) float64 arrays: ``policy_chosen``, ``policy_rejected``, ``reference_chosen``,
        ``reference_rejected``.
    """
    from tqdm.auto import tqdm

    if reference is None and not hasattr(policy, "disable_adapter"):
        raise ValueError("score_pairs needs a reference model unless the policy is a peft model")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [(p, c, r) for p, c, r in zip(prepared["prompt_ids"], prepared["chosen_ids"], prepared["rejected_ids"],
                                         strict=True)]
    # Longest first, so each batch pads little and a too-large batch fails at once.
    order = sorted(range(len(rows)), key=lambda i: -(len(rows[i][0]) + max(len(rows[i][1]), len(rows[i][2]))))
    out = {key: np.zeros(len(rows)) for key in
           ("policy_chosen", "policy_rejected", "reference_chosen", "reference_rejected")}
    models = [(policy, "policy"), (reference, "reference")]
    was_training = policy.training
    policy.eval()
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="scoring pairs", disable=not progress,
                          unit="batch"):
            index = order[start:start + batch_size]
            sequences = [rows[i][0] + rows[i][1] for i in index] + [rows[i][0] + rows[i][2] for i in index]
            starts = [len(rows[i][0]) for i in index] * 2
            for model, name in models:
                if model is None:
                    with policy.disable_adapter():
                        logps = _completion_logps(policy, sequences, starts, pad)
                else:
                    logps = _completion_logps(model, sequences, starts, pad)
                out[f"{name}_chosen"][index] = logps[: len(index)]
                out[f"{name}_rejected"][index] = logps[len(index):]
    finally:
        policy.train(was_training)
    return out


def preference_metrics(scores: dict[str, np.ndarray], *, beta: float) -> dict[str, float]:
    """``pref_accuracy``, ``reward_margin``, ``chosen_reward``, ``rejected_reward`` (see the module docstring)."""
    chosen = beta * (scores["policy_chosen"] - scores["reference_chosen"])
    rejected = beta * (scores["policy_rejected"] - scores["reference_rejected"])
    margin = chosen - rejected
    if not (np.isfinite(chosen).all() and np.isfinite(rejected).all()):
        raise ValueError("the implicit rewards are not finite: the model gives some completion an infinite "
                         "log-probability (diverged weights?)")
    return {"pref_accuracy": float((margin > 0).mean()), "reward_margin": float(margin.mean()),
            "chosen_reward": float(chosen.mean()), "rejected_reward": float(rejected.mean())}


def evaluate_pairs(policy, tokenizer, pairs, limits: LengthLimits, *, beta: float, reference=None,
                   batch_size: int = 8, progress: bool = False) -> tuple[dict[str, float], LengthCounts]:
    """Metrics of ``policy`` on ``pairs`` (texts or messages), cut to ``limits`` as in training.

    Returns ``(metrics, counts)``: :func:`preference_metrics` plus ``n_pairs`` (pairs scored), and what fitting
    the pairs to the limits dropped and cut.
    """
    prepared, counts = prepare_pairs(pairs, tokenizer, limits)
    if counts.used == 0:
        raise ValueError(f"no pair fits max_length={limits.max_length} (all {counts.n_in} dropped)")
    scores = score_pairs(policy, tokenizer, prepared, reference=reference, batch_size=batch_size,
                         progress=progress)
    return {**preference_metrics(scores, beta=beta), "n_pairs": counts.used}, counts


def _completion_logps(model, sequences: list[list[int]], starts: list[int], pad: int) -> np.ndarray:
    """Σ log π(token) over the tokens of each sequence from ``starts[i]`` on: (len(sequences),) float64."""
    device = next(model.parameters()).device
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, ids in enumerate(sequences):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
    logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False).logits
    out = np.zeros(len(sequences))
    for i, (ids, start) in enumerate(zip(sequences, starts, strict=True)):
        start = max(start, 1)  # the first token of a sequence is not predicted (as in training)
        # token t is predicted by the logits at t − 1; one row at a time keeps a float32 copy small
        rows = logits[i, start - 1: len(ids) - 1].float().log_softmax(-1)
        targets = torch.tensor(ids[start:], device=rows.device)
        out[i] = rows.gather(-1, targets[:, None]).sum().item()
    return out
