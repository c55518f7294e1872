"""Fixtures of the alignment tests: the shipped default model, small preference pairs, tiny local models.

The tiny models are random (a Llama with the shipped model's tokenizer, a GPT-2 with a byte-level BPE trained
here, without a pad token) and saved with ``save_pretrained`` into a temporary folder: nothing is downloaded.
"""

import copy
import json
import random
from pathlib import Path

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


#: A chat template in the style of Zephyr's, small enough for the shipped tokenizer's 512 pieces.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

WORDS = ("the cat sat on a mat and then it ran to the park where a dog was happy to play with a red ball "
         "but the sky turned dark and rain fell so they went home to eat warm soup by the fire").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def hh_dialogue_pairs(n: int, *, turns: int, words_per_turn: int, seed: int = 0) -> list[dict]:
    """``n`` HH-RLHF-style rows {"chosen", "rejected"}: ``turns`` shared exchanges, then two different answers."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        shared = "".join(f"\n\nHuman: {sentence(rng, words_per_turn)}\n\nAssistant: {sentence(rng, words_per_turn)}"
                         for _ in range(turns - 1))
        shared += f"\n\nHuman: {sentence(rng, words_per_turn)}\n\nAssistant:"
        rows.append({"chosen": shared + " " + sentence(rng, 6), "rejected": shared + " " + sentence(rng, 7)})
    return rows


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A random 2-layer Llama (64 positions) with the shipped model's tokenizer, saved locally."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from alignment.models import load_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = load_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def chat_llama(tmp_path_factory, tiny_llama) -> Path:
    """The tiny Llama with a chat template."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("chat-llama")
    shutil.copytree(tiny_llama, folder, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A random 2-layer GPT-2 with 48 learned positions and a byte-level BPE without a pad token, saved locally."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    rng = random.Random(0)
    bpe.train_from_iterator(
        [sentence(rng, 12) for _ in range(200)] + ["Human: Assistant:"] * 20,
        trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=48, n_embd=16, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
