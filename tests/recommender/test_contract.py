"""Behaviour contract every recommender (each model × loss) must pass.

Users and items fall into 4 blocks; each user interacted with most items of their own
block and nothing else. The correct top-1 recommendation of every user is therefore an
unseen item of their own block.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from robustrec import Recommender
from robustrec.models import MODELS
from robustrec.objectives import LOSSES

N_BLOCKS, USERS_PER_BLOCK, ITEMS_PER_BLOCK = 4, 30, 20


def block_log(seed=0):
    rng = np.random.default_rng(seed)
    n_users, n_items = N_BLOCKS * USERS_PER_BLOCK, N_BLOCKS * ITEMS_PER_BLOCK
    user_block = np.arange(n_users) // USERS_PER_BLOCK
    item_block = np.arange(n_items) // ITEMS_PER_BLOCK
    same = user_block[:, None] == item_block[None, :]
    observed = same & (rng.random((n_users, n_items)) < 0.7)
    return sp.csr_matrix(observed.astype(np.float32)), user_block, item_block


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("loss", LOSSES)
def test_top1_is_an_unseen_item_of_the_users_block(model, loss):
    train, user_block, item_block = block_log()
    rec = Recommender(model=model, loss=loss, dim=16, epochs=15, batch_size=256, lr=0.1, seed=0, eval_every=0)
    rec.fit(train, show_progress=False)
    ids, scores = rec.recommend(np.arange(train.shape[0]), N=1)
    top1 = ids[:, 0]
    assert not (train.toarray()[np.arange(train.shape[0]), top1] > 0).any(), "recommended a seen item"
    correct = (item_block[top1] == user_block).mean()
    assert correct >= 0.95, f"{model}/{loss}: only {correct:.0%} of users get an item of their block"
