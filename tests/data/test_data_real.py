"""The loaders on the real data sets in ../shared/data (skipped when absent), against published counts."""

import numpy as np
import pytest

from robustrec.data import Split, deca_noise_mask, load

pytestmark = pytest.mark.shared_data


def _disjoint(a, b):
    ka = a.coo()[0] * a.n_items + a.coo()[1]
    kb = b.coo()[0] * b.n_items + b.coo()[1]
    return not np.isin(kb, ka).any()


def test_gowalla_lightgcn_split(shared_data):
    split = load(shared_data / "gowalla")
    assert isinstance(split, Split) and split.report.format == "lightgcn"
    assert (split.n_users, split.n_items) == (29_858, 40_981)
    assert split.train.n_interactions == 810_128
    assert split.test.n_interactions == 217_242
    assert split.report.n_dropped == 0
    assert _disjoint(split.train, split.test)


def test_amazon_electronics_nbpo_split(shared_data):
    split = load(shared_data / "amazon-electronics-nbpo")
    assert split.report.format == "nbpo-json"
    assert (split.n_users, split.n_items) == (1_435, 1_522)
    assert split.train.n_interactions == 31_887
    assert split.validation.n_interactions == 4_044 and split.test.n_interactions == 4_044
    assert _disjoint(split.train, split.test) and _disjoint(split.train, split.validation)


def test_ml100k_deca_split_and_real_noise(shared_data):
    split = load(shared_data / "ml-100k-deca")
    assert split.report.format == "deca"
    assert (split.n_users, split.n_items) == (943, 1_611)
    assert split.train.n_interactions == 79_619
    noisy = deca_noise_mask(split)
    assert noisy.shape == (79_619,) and noisy.sum() == 34_015
    assert split.test.n_interactions == 3_594 and split.validation.n_interactions == 1_707
    assert np.all(split.test.ratings.data == 5)  # DeCA's clean test: rating 5 only
    assert split.user_ids.min() == 1  # DeCA user ids are 1-based; raw ids are kept
