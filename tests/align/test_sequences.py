"""Pairs as token sequences: TRL's tokenisation, counted truncation of long dialogues, chat templates."""

import pandas as pd
import pytest

from alignment.data import load_preference_pairs
from alignment.models import load_tokenizer
from alignment.sequences import (
    TRUNCATION_MODES,
    DataCounts,
    LengthLimits,
    fit_pair,
    prepare_pairs,
    tokenize_pair,
)

from .conftest import hh_dialogue_pairs


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def ids(n_prompt, n_chosen, n_rejected):
    return {"prompt_ids": list(range(100, 100 + n_prompt)), "chosen_ids": [1] * (n_chosen - 1) + [2],
            "rejected_ids": [3] * (n_rejected - 1) + [2]}


def test_keep_end_cuts_the_start_of_the_prompt_then_the_end_of_completions():
    limits = LengthLimits(max_length=20)
    fitted, cut = fit_pair(ids(12, 5, 3), limits)
    assert not cut and len(fitted["prompt_ids"]) == 12
    fitted, cut = fit_pair(ids(30, 5, 3), limits)  # the prompt makes room for the longer completion
    assert cut and fitted["prompt_ids"] == list(range(115, 130)) and len(fitted["chosen_ids"]) == 5
    fitted, cut = fit_pair(ids(30, 18, 3), limits)  # the prompt keeps half of max_length, completions are cut
    assert cut and fitted["prompt_ids"] == list(range(120, 130))
    assert len(fitted["chosen_ids"]) == 10 and fitted["rejected_ids"] == [3, 3, 2]
    fitted, cut = fit_pair(ids(12, 5, 3), LengthLimits(max_length=20, max_prompt_length=4))
    assert cut and fitted["prompt_ids"] == list(range(108, 112))


def test_keep_start_drops_pairs_whose_prompt_fills_max_length():
    limits = LengthLimits(max_length=20, truncation_mode="keep_start")
    assert fit_pair(ids(20, 5, 3), limits) == (None, True)
    fitted, cut = fit_pair(ids(16, 5, 3), limits)
    assert cut and fitted["prompt_ids"] == list(range(100, 116)) and fitted["chosen_ids"] == [1] * 4


def test_completions_identical_once_cut_are_dropped():
    pair = {"prompt_ids": [9] * 18, "chosen_ids": [1, 1, 1, 5], "rejected_ids": [1, 1, 1, 6]}
    assert fit_pair(pair, LengthLimits(max_length=20, truncation_mode="keep_start")) == (None, True)


@pytest.mark.parametrize("bad", [dict(max_length=1), dict(max_length=10, max_prompt_length=10),
                                 dict(max_length=10, truncation_mode="keep_middle")])
def test_bad_limits_are_errors(bad):
    with pytest.raises(ValueError):
        LengthLimits(**bad)


@pytest.mark.parametrize("mode", TRUNCATION_MODES)
def test_long_dialogues_are_counted(tokenizer, mode):
    rows = hh_dialogue_pairs(12, turns=2, words_per_turn=4) + hh_dialogue_pairs(18, turns=8, words_per_turn=25, seed=1)
    pairs = load_preference_pairs(pd.DataFrame(rows)).pairs
    limits = LengthLimits(max_length=128, truncation_mode=mode)
    full = [tokenize_pair(pair, tokenizer) for pair in pairs.to_dict("records")]
    too_long = sum(len(t["prompt_ids"]) + max(len(t["chosen_ids"]), len(t["rejected_ids"])) > 128 for t in full)
    assert too_long == 18  # every long dialogue, no short one

    prepared, counts = prepare_pairs(pairs, tokenizer, limits)
    assert counts.n_in == 30 and counts.used == len(prepared) == counts.n_in - counts.dropped_too_long
    lengths = [len(p) + max(len(c), len(r)) for p, c, r in
               zip(prepared["prompt_ids"], prepared["chosen_ids"], prepared["rejected_ids"])]
    assert max(lengths) <= 128
    if mode == "keep_end":  # nothing dropped: the prompts lose their first turns and keep their end
        assert (counts.dropped_too_long, counts.truncated) == (0, 18)
        for original, kept in zip(full, prepared["prompt_ids"]):
            assert original["prompt_ids"][len(original["prompt_ids"]) - len(kept):] == kept
        ends = [tokenizer.decode(p[-12:]) for p in prepared["prompt_ids"]]
        assert all(end.endswith("Assistant:") for end in ends)
    else:  # TRL's rule: the long prompts fill max_length, so those pairs go
        assert (counts.dropped_too_long, counts.truncated) == (18, 0)
    data = DataCounts.of(read=31, invalid=1, lengths=counts)
    assert data.read == data.invalid + data.dropped_too_long + data.used


def test_data_counts_must_add_up():
    with pytest.raises(ValueError, match="inconsistent"):
        DataCounts(read=10, invalid=1, dropped_too_long=2, truncated=0, used=6)


def test_tokenisation_equals_trls_preprocessing(tiny_llama, chat_llama):
    """Without truncation our pairs are token for token what TRL's DPOTrainer builds, text and chat alike."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from alignment.models import load_model

    text_rows = [{"prompt": "Once upon a time", "chosen": " she smiled.", "rejected": " she cried a lot."},
                 {"prompt": "Tom saw a dog.", "chosen": " It was happy.", "rejected": " It ran."}]
    chat_rows = [{"prompt": [{"role": "user", "content": "Tell a story."}],
                  "chosen": [{"role": "assistant", "content": "Once there was a cat."}],
                  "rejected": [{"role": "assistant", "content": "No."}]}]
    for folder, rows in ((tiny_llama, text_rows), (chat_llama, chat_rows)):
        policy, tokenizer = load_model(folder)
        reference, _ = load_model(folder)
        trainer = DPOTrainer(model=policy, ref_model=reference, processing_class=tokenizer,
                             train_dataset=Dataset.from_list(rows),
                             args=DPOConfig(output_dir="unused", max_length=None, use_cpu=True, report_to="none"))
        theirs = trainer.train_dataset
        ours, counts = prepare_pairs(rows, tokenizer, LengthLimits(max_length=64))
        assert counts.truncated == 0
        for key in ("prompt_ids", "chosen_ids", "rejected_ids"):
            assert ours[key] == theirs[key], key


def test_chat_template_applies_to_message_pairs(chat_llama, tiny_llama):
    tokenizer = load_tokenizer(chat_llama)
    pair = {"prompt": [{"role": "user", "content": "Hi there."}, {"role": "assistant", "content": "Hello."},
                       {"role": "user", "content": "A joke?"}],
            "chosen": [{"role": "assistant", "content": "Sure, a short one."}],
            "rejected": [{"role": "assistant", "content": "No."}]}
    tokens = tokenize_pair(pair, tokenizer)
    prompt = tokenizer.decode(tokens["prompt_ids"])
    assert prompt.count("<|user|>") == 2 and prompt.rstrip().endswith("<|assistant|>")
    assert tokenizer.decode(tokens["chosen_ids"]).startswith("Sure, a short one.")
    assert tokenizer.eos_token_id in tokens["chosen_ids"]  # the template closes the turn
    with pytest.raises(ValueError, match="no chat template"):
        tokenize_pair(pair, load_tokenizer(tiny_llama))


def test_hh_dialogues_become_messages_for_a_chat_model(chat_llama):
    rows = hh_dialogue_pairs(3, turns=2, words_per_turn=5)
    pairs = load_preference_pairs(pd.DataFrame(rows), hh_as_messages=True)
    assert pairs.conversational
    first = pairs.pairs.iloc[0]
    assert [m["role"] for m in first["prompt"]] == ["user", "assistant", "user"]
    assert [m["role"] for m in first["chosen"]] == ["assistant"] and first["chosen"][0]["content"].endswith(".")
    prepared, counts = prepare_pairs(pairs.pairs, load_tokenizer(chat_llama), LengthLimits(max_length=256))
    assert counts.used == 3
