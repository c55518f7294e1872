"""RobustDPOConfig validation: loss names, flip-rate range, the TRL mapping."""

import pytest

from alignment.config import RobustDPOConfig
from alignment.losses import FLIP_RATE_LOSSES, PREFERENCE_LOSSES, TRL_LOSS_TYPE, trl_label_smoothing


def make(tmp_path, **kwargs):
    return RobustDPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **kwargs)


@pytest.mark.parametrize("loss", PREFERENCE_LOSSES)
def test_every_loss_maps_to_trl(tmp_path, loss):
    flip_rate = 0.2 if loss in FLIP_RATE_LOSSES else 0.0
    config = make(tmp_path, loss=loss, flip_rate=flip_rate)
    assert config.loss_type == [TRL_LOSS_TYPE[loss]]
    assert config.label_smoothing == pytest.approx(trl_label_smoothing(loss, flip_rate))


def test_unknown_loss_lists_the_losses(tmp_path):
    with pytest.raises(ValueError, match="unknown loss 'sigmoid'; choose one of " + ", ".join(PREFERENCE_LOSSES)):
        make(tmp_path, loss="sigmoid")


@pytest.mark.parametrize("bad", [0.5, 0.7, -0.1, 1.0, "often"])
def test_flip_rate_outside_range_raises_before_training(tmp_path, bad):
    with pytest.raises(ValueError, match=r"\[0, 0\.5\)"):
        make(tmp_path, loss="rdpo", flip_rate=bad)


def test_auto_and_edge_values(tmp_path):
    assert make(tmp_path, loss="rdpo", flip_rate="auto").flip_rate == "auto"
    assert make(tmp_path, loss="cdpo", flip_rate="AUTO").flip_rate == "auto"
    assert make(tmp_path, loss="rdpo", flip_rate=0.49).label_smoothing == pytest.approx(0.49)
    assert make(tmp_path, loss="rdpo", flip_rate="0.25").flip_rate == 0.25


def test_flip_rate_on_a_loss_that_ignores_it_raises(tmp_path):
    with pytest.raises(ValueError, match="no effect on loss 'dpo'"):
        make(tmp_path, loss="dpo", flip_rate=0.1)


def test_trl_fields_are_derived_not_set(tmp_path):
    with pytest.raises(ValueError, match="rather than label_smoothing"):
        make(tmp_path, loss="rdpo", flip_rate=0.1, label_smoothing=0.1)
    with pytest.raises(ValueError, match="rather than loss_type"):
        make(tmp_path, loss="rdpo", loss_type="hinge")


def test_fields_carry_help(tmp_path):
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(RobustDPOConfig)}
    assert all(name in fields["loss"].metadata["help"] for name in PREFERENCE_LOSSES)
    assert "auto" in fields["flip_rate"].metadata["help"]
