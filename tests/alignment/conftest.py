"""Fixtures of the alignment tests: the shipped default model, small preference pairs, a TRL batch."""

import copy

import pandas as pd
import pytest
import torch

from alignment.stories import STORY_OPENINGS

PAIRS = pd.DataFrame(
    {
        "prompt": list(STORY_OPENINGS[:8]),
        "chosen": [" was very happy and smiled.", " loved the fun day.", " hugged her friend.", " felt glad.",
                   " laughed with joy.", " was kind and nice.", " had a great time.", " said thank you."],
        "rejected": [" was sad and cried.", " was scared of the dark.", " felt angry.", " lost the toy.",
                     " was hurt and upset.", " shouted at the dog.", " was lonely.", " broke the cup."],
    }
)


@pytest.fixture(scope="session")
def default_model():
    from alignment.models import load_model

    return load_model()


@pytest.fixture
def pairs():
    return PAIRS.copy()


@pytest.fixture
def models(default_model):
    """(policy, reference, tokenizer): the policy is the default model with slightly perturbed weights."""
    reference, tokenizer = default_model
    policy = copy.deepcopy(reference)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return policy, copy.deepcopy(reference), tokenizer


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny models here run fastest on one thread, and far faster than on two on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
