"""NBPO's phi model can be smaller than the preference model (``phi_dim``)."""

import pytest
import torch

from robustrec import data
from robustrec.config import TrainConfig
from robustrec.training import fit, new_model


@pytest.mark.parametrize("model", ["mf", "lightgcn"])
def test_phi_tables_take_phi_dim_and_train(model):
    split = data.generate(n_users=200, n_items=150, seed=2)
    config = TrainConfig(model=model, loss="nbpo", dim=16, phi_dim=8, epochs=2, eval_every=0)
    initial = new_model(config, split.n_users, split.n_items, split.train.matrix)
    trained = fit(config, split.train.matrix, progress=False).model
    for side in ("user_tables", "item_tables"):
        tables = getattr(trained, side)
        assert tables.weights("phi").shape[1] == 8 and tables.weights("preference").shape[1] == 16
        assert not torch.allclose(tables.weights("phi"), getattr(initial, side).weights("phi"))


@pytest.mark.parametrize("phi_dim", [6, -4])
def test_phi_dim_must_be_a_multiple_of_4(phi_dim):
    with pytest.raises(ValueError, match="phi_dim"):
        TrainConfig(loss="nbpo", phi_dim=phi_dim)
