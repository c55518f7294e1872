import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from robustrec.models import ModelOutput
from robustrec.config import TrainConfig
from robustrec.objectives import LOSSES, PHI, objective_loss
from robustrec.samplers import UniformNegativeSampler, is_observed, positive_batches, positive_keys


def test_negatives_are_never_training_positives():
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((50, 30)) < 0.8).astype(np.float32))  # dense: many rejections
    sampler = UniformNegativeSampler(train)
    users = rng.integers(0, 50, size=5000)
    negatives = sampler.sample(users, 4, rng)
    assert negatives.shape == (5000, 4)
    dense = train.toarray() > 0
    assert not dense[users[:, None], negatives].any()
    # and they are spread over the user's unobserved items
    u = users[0]
    assert set(negatives[users == u].ravel()) == set(np.flatnonzero(~dense[u]))


def test_user_with_every_item_is_an_error():
    train = sp.csr_matrix(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="every item"):
        UniformNegativeSampler(train)


def test_positive_batches_cover_each_interaction_once():
    rng = np.random.default_rng(1)
    train = sp.csr_matrix((rng.random((20, 15)) < 0.3).astype(np.float32))
    pairs = [(u, i) for users, items in positive_batches(train, 7, rng) for u, i in zip(users, items)]
    assert sorted(pairs) == sorted(zip(*train.nonzero()))
    keys = positive_keys(train)
    assert is_observed(keys, np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), 15).all()


def _output(scores, sq=0.0):
    # every head a loss may read (NBPO's phi with zero factors: g = 0, no phi L2)
    return ModelOutput({"preference": scores, PHI: torch.zeros_like(scores)},
                       {"preference": torch.tensor(sq), PHI: torch.tensor(0.0)})


def test_bpr_and_bce_values():
    scores = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    bpr = objective_loss(_output(scores), TrainConfig(loss="bpr", l2=0.0))
    assert bpr.item() == pytest.approx(F.softplus(scores[:, 1:] - scores[:, :1]).mean().item())
    bce = objective_loss(_output(scores), TrainConfig(loss="bce", l2=0.0))
    expected = (-F.logsigmoid(scores[:, 0]) - F.logsigmoid(-scores[:, 1:]).sum(1)).mean()
    assert bce.item() == pytest.approx(expected.item())


@pytest.mark.parametrize("loss", LOSSES)
def test_l2_adds_to_every_loss(loss):
    scores = torch.randn(4, 3)
    plain = objective_loss(_output(scores, 0.0), TrainConfig(loss=loss, l2=0.1))
    regularised = objective_loss(_output(scores, 2.0), TrainConfig(loss=loss, l2=0.1))
    assert (regularised - plain).item() == pytest.approx(0.2)


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match="bpr"):
        TrainConfig(loss="hinge")


def test_exact_complement_draw_is_uniform_over_unobserved_items():
    train = sp.csr_matrix(np.array([[1, 0, 1, 1, 0, 0, 1, 0]], dtype=np.float32))
    sampler = UniformNegativeSampler(train, rejection_rounds=0)  # exact draw only
    rng = np.random.default_rng(3)
    drawn = sampler.sample(np.zeros(8000, dtype=np.int64), 1, rng).ravel()
    values, counts = np.unique(drawn, return_counts=True)
    assert values.tolist() == [1, 4, 5, 7]
    assert counts.min() > 1800 and counts.max() < 2200
