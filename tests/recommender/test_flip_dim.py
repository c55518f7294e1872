"""NBPO's flip model can be smaller than the preference model (``flip_dim``)."""

import pytest
import torch

from robustrec import data
from robustrec.training import TrainConfig, fit, new_model


@pytest.mark.parametrize("model", ["mf", "lightgcn"])
def test_flip_tables_take_flip_dim_and_train(model):
    split = data.generate(n_users=200, n_items=150, seed=2)
    config = TrainConfig(model=model, loss="nbpo", dim=16, flip_dim=8, epochs=2, eval_every=0)
    initial = new_model(config, split.n_users, split.n_items, split.train.matrix)
    trained = fit(config, split.train.matrix, progress=False).model
    for side in ("user_tables", "item_tables"):
        tables = getattr(trained, side)
        assert tables.weights("flip").shape[1] == 8 and tables.weights("preference").shape[1] == 16
        assert not torch.allclose(tables.weights("flip"), getattr(initial, side).weights("flip"))


@pytest.mark.parametrize("flip_dim", [6, -4])
def test_flip_dim_must_be_a_multiple_of_4(flip_dim):
    with pytest.raises(ValueError, match="flip_dim"):
        TrainConfig(loss="nbpo", flip_dim=flip_dim)
