"""Loss parity through the trainer: rDPO(0) = cDPO(0) = DPO; every loss equals the reference formula."""

import math

import pytest
import torch
from datasets import Dataset

from alignment.config import RobustDPOConfig
from alignment.losses import FLIP_RATE_LOSSES, PREFERENCE_LOSSES, preference_loss, trl_label_smoothing
from alignment.trainer import RobustDPOTrainer


def batch_loss_and_grads(models, pairs, tmp_path, loss, flip_rate, batch=None):
    policy, reference, tokenizer = models
    config = RobustDPOConfig(
        output_dir=str(tmp_path), loss=loss, flip_rate=flip_rate, beta=0.5, use_cpu=True, report_to="none",
        per_device_train_batch_size=len(pairs), seed=0, data_seed=0,
    )
    trainer = RobustDPOTrainer(model=policy, ref_model=reference, args=config, processing_class=tokenizer,
                               train_dataset=Dataset.from_pandas(pairs, preserve_index=False))
    if batch is None:
        batch = next(iter(trainer.get_train_dataloader()))
    policy.zero_grad()
    value = trainer.compute_loss(policy, {key: value.clone() for key, value in batch.items()})
    value.backward()
    grads = [p.grad.detach().clone() for p in policy.parameters()]
    policy.zero_grad()
    return value.detach(), grads, batch


def logratios(models, batch):
    """Per-sequence log π/π_ref summed over completion tokens: (chosen, rejected, chosen_len, rejected_len)."""
    policy, reference, _ = models
    ids, mask, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]

    def logps(model):
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        token = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        return (token * completion[:, 1:]).sum(1)

    ratio = logps(policy) - logps(reference)
    lengths = completion.sum(1).float()
    n = ids.shape[0] // 2
    return ratio[:n], ratio[n:], lengths[:n], lengths[n:]


@pytest.mark.parametrize("loss", ["rdpo", "cdpo"])
def test_zero_flip_rate_equals_dpo_loss_and_gradients(models, pairs, tmp_path, loss):
    # The first trainer built on a fresh model differs from later ones in the 4th digit (TRL/accelerate set
    # model state on first use); compare trainers built after that.
    _, _, batch = batch_loss_and_grads(models, pairs, tmp_path, "dpo", 0.0)
    dpo, dpo_grads, _ = batch_loss_and_grads(models, pairs, tmp_path, "dpo", 0.0, batch)
    other, other_grads, _ = batch_loss_and_grads(models, pairs, tmp_path, loss, 0.0, batch)
    assert dpo.item() > 0.01
    torch.testing.assert_close(other, dpo)
    for a, b in zip(other_grads, dpo_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("loss", PREFERENCE_LOSSES)
def test_trainer_loss_equals_reference_formula(models, pairs, tmp_path, loss):
    flip_rate = 0.2 if loss in FLIP_RATE_LOSSES else 0.0
    value, _, batch = batch_loss_and_grads(models, pairs, tmp_path, loss, flip_rate)
    chosen, rejected, chosen_len, rejected_len = logratios(models, batch)
    expected = preference_loss(loss, chosen, rejected, beta=0.5, flip_rate=flip_rate,
                               chosen_lengths=chosen_len, rejected_lengths=rejected_len).mean()
    torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-5)


def test_flip_rate_changes_the_loss(models, pairs, tmp_path):
    dpo, _, batch = batch_loss_and_grads(models, pairs, tmp_path, "dpo", 0.0)
    rdpo, _, _ = batch_loss_and_grads(models, pairs, tmp_path, "rdpo", 0.3, batch)
    cdpo, _, _ = batch_loss_and_grads(models, pairs, tmp_path, "cdpo", 0.3, batch)
    assert not torch.isclose(rdpo, dpo) and not torch.isclose(cdpo, dpo) and not torch.isclose(rdpo, cdpo)


def test_rdpo_hand_computed():
    # z = β·h = 0.5·2 = 1, ε = 0.2: [(0.8)·log(1+e^-1) − 0.2·log(1+e^1)] / 0.6
    value = preference_loss("rdpo", torch.tensor([3.0]), torch.tensor([1.0]), beta=0.5, flip_rate=0.2)
    expected = (0.8 * math.log1p(math.exp(-1)) - 0.2 * math.log1p(math.exp(1))) / 0.6
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(-0.020072, abs=1e-5)  # rDPO losses can be negative
    cdpo = preference_loss("cdpo", torch.tensor([3.0]), torch.tensor([1.0]), beta=0.5, flip_rate=0.2)
    assert cdpo.item() == pytest.approx(0.8 * math.log1p(math.exp(-1)) + 0.2 * math.log1p(math.exp(1)), rel=1e-6)


def test_rdpo_is_unbiased_under_flips():
    # E over a flip with probability ε of the rDPO loss = the clean DPO loss (Chowdhury et al., Lemma 3.1).
    chosen, rejected, eps = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.3]), 0.3
    kept = preference_loss("rdpo", chosen, rejected, beta=1.0, flip_rate=eps)
    flipped = preference_loss("rdpo", rejected, chosen, beta=1.0, flip_rate=eps)
    clean = preference_loss("dpo", chosen, rejected, beta=1.0)
    torch.testing.assert_close((1 - eps) * kept + eps * flipped, clean)


def test_cdpo_smoothing_identity():
    assert trl_label_smoothing("cdpo", 0.0) == 0.0
    assert trl_label_smoothing("cdpo", 0.25) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match=r"\[0, 0\.5\)"):
        trl_label_smoothing("rdpo", 0.5)


def test_auto_flip_rate_is_estimated_before_training(models, pairs, tmp_path):
    from robustrec.noise.estimate import Estimate

    policy, reference, tokenizer = models
    seen = {}

    def estimator(frame, clean):
        seen["n"] = len(frame)
        return Estimate(value=0.6, ci_low=0.5, ci_high=0.7, method="stub", n=len(frame))

    config = RobustDPOConfig(output_dir=str(tmp_path), loss="rdpo", flip_rate="auto", use_cpu=True,
                             report_to="none")
    trainer = RobustDPOTrainer(model=policy, ref_model=reference, args=config, processing_class=tokenizer,
                               train_dataset=Dataset.from_pandas(pairs, preserve_index=False),
                               flip_rate_estimator=estimator)
    assert seen["n"] == len(pairs)
    assert trainer.flip_rate == pytest.approx(0.45)  # clipped below 1/2
    assert trainer.label_smoothing == pytest.approx(0.45)
