"""LightGCN: propagation against a dense reference, training through the fused tables."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from robustrec.models import build_model, normalized_adjacency
from robustrec.config import TrainConfig
from robustrec.training import fit


def _graph():
    r = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=np.float32)  # item 3 isolated
    return sp.csr_matrix(r)


def test_adjacency_is_the_symmetric_normalisation():
    r = _graph().toarray()
    a = np.block([[np.zeros((3, 3)), r], [r.T, np.zeros((4, 4))]])
    d = a.sum(1)
    inv = np.where(d > 0, d ** -0.5, 0)
    np.testing.assert_allclose(normalized_adjacency(_graph()).toarray(), inv[:, None] * a * inv[None, :], rtol=1e-6)


def test_propagation_matches_a_dense_reference():
    train = _graph()
    model = build_model("lightgcn", 3, 4, 8, train=train, n_layers=3)
    ego_u, ego_i = model.user_tables.weights("preference"), model.item_tables.weights("preference")
    ego = torch.cat([ego_u, ego_i]).detach().double().numpy()
    a = normalized_adjacency(train).toarray().astype(np.float64)
    layers = [ego]
    for _ in range(3):
        layers.append(a @ layers[-1])
    final = np.mean(layers, axis=0)
    users, items = model.embedding_matrices()
    np.testing.assert_allclose(users.numpy(), final[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(items.numpy(), final[3:], rtol=1e-5, atol=1e-6)
    out = model(torch.tensor([0, 2]), torch.tensor([[0, 3], [1, 2]]))
    expected = np.array([[final[0] @ final[3], final[0] @ final[6]], [final[2] @ final[4], final[2] @ final[5]]])
    np.testing.assert_allclose(out.scores["preference"].detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    # L2 on the batch's ego rows
    sq = (ego[[0, 2]] ** 2).sum() + (ego[[3 + 0, 3 + 3, 3 + 1, 3 + 2]] ** 2).sum()
    assert out.sq_norms["preference"].item() == pytest.approx(sq / 2, rel=1e-5)


def test_lightgcn_needs_the_training_matrix():
    with pytest.raises(ValueError, match="training matrix"):
        build_model("lightgcn", 3, 4, 8)


def test_lightgcn_trains_with_nbpo_and_pld():
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((60, 40)) < 0.2).astype(np.float32))
    config = TrainConfig(model="lightgcn", loss="nbpo", sampler="pld", pld_warmup_epochs=1, epochs=3, dim=8,
                         batch_size=128, eval_every=0)
    result = fit(config, train, progress=False)
    assert len(result.history) == 3 and np.isfinite(result.history[-1]["loss"])
    assert result.history[-1]["loss"] < result.history[0]["loss"]
