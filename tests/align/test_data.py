"""Preference data: formats, HH-RLHF splitting, validation errors, drop counts, the real HH file."""

import gzip
import json

import pandas as pd
import pytest

from alignment.data import PreferenceDataError, load_preference_pairs, split_hh_dialogues
from alignment.sequences import tokenize_pair

ROWS = [
    {"prompt": "Once upon a time", "chosen": " she smiled.", "rejected": " she cried."},
    {"prompt": "Tom saw a dog.", "chosen": " It was happy.", "rejected": " It was sad."},
]


def write_jsonl(path, rows, *, compress=False):
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "json", "parquet", "frame", "dataset"])
def test_explicit_form_from_every_source(tmp_path, kind):
    if kind == "jsonl":
        source = write_jsonl(tmp_path / "p.jsonl", ROWS)
    elif kind == "jsonl.gz":
        source = write_jsonl(tmp_path / "p.jsonl.gz", ROWS, compress=True)
    elif kind == "json":
        source = tmp_path / "p.json"
        source.write_text(json.dumps(ROWS))
    elif kind == "parquet":
        source = tmp_path / "p.parquet"
        pd.DataFrame(ROWS).to_parquet(source)
    elif kind == "frame":
        source = pd.DataFrame(ROWS)
    else:
        from datasets import Dataset

        source = Dataset.from_list(ROWS)
    pairs = load_preference_pairs(source)
    assert len(pairs) == 2 and pairs.n_read == 2 and pairs.invalid == ()
    assert list(pairs.pairs["chosen"]) == [" she smiled.", " It was happy."]
    assert pairs.to_dataset().column_names == ["prompt", "chosen", "rejected"]


def test_hh_form_splits_at_last_shared_assistant_turn():
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: Sure, here is one."
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: No."
    prompt, c, r = split_hh_dialogues(chosen, rejected)
    assert prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant:"
    assert (c, r) == (" Sure, here is one.", " No.")
    pairs = load_preference_pairs(pd.DataFrame([{"chosen": chosen, "rejected": rejected}]))
    assert pairs.pairs.loc[0, "prompt"] == prompt


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"prompt": "p", "chosen": "", "rejected": "x"}, "empty 'chosen'"),
        ({"prompt": "p", "chosen": "same", "rejected": "same"}, "identical"),
        ({"prompt": "p", "chosen": "x"}, "missing key 'rejected'"),
        ({"prompt": "p", "chosen": 3, "rejected": "x"}, "'chosen' is int, expected text"),
        ({"prompt": "p", "chosen": ["x"], "rejected": "y"}, "'chosen' is list"),
    ],
)
def test_invalid_row_names_file_and_line(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "pairs.jsonl", [ROWS[0], bad, ROWS[1]])
    with pytest.raises(PreferenceDataError, match=rf"pairs\.jsonl, row 2: .*{message}"):
        load_preference_pairs(path)
    dropped = load_preference_pairs(path, on_invalid="drop")
    assert len(dropped) == 2 and dropped.n_read == 3
    assert [item.row for item in dropped.invalid] == [2]
    assert "dropped 1" in dropped.summary()


def test_hh_pair_without_shared_assistant_turn_is_an_error():
    frame = pd.DataFrame([{"chosen": "A story.", "rejected": "Another story."}])
    with pytest.raises(PreferenceDataError, match="DataFrame, row 1: .*Assistant"):
        load_preference_pairs(frame)


def test_bad_options_and_sources(tmp_path):
    with pytest.raises(ValueError, match="on_invalid"):
        load_preference_pairs(pd.DataFrame(ROWS), on_invalid="skip")
    with pytest.raises(FileNotFoundError):
        load_preference_pairs(tmp_path / "missing.jsonl")
    with pytest.raises(PreferenceDataError, match="needs columns 'chosen' and 'rejected'"):
        load_preference_pairs(pd.DataFrame({"text": ["a"]}))
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(PreferenceDataError, match="broken.jsonl, row 2: not valid JSON"):
        load_preference_pairs(broken)


def test_tokenize_pairs_with_default_tokenizer():
    from alignment.models import load_model

    _, tokenizer = load_model()
    tokens = [tokenize_pair(pair, tokenizer) for pair in load_preference_pairs(pd.DataFrame(ROWS)).to_dataset()]
    assert all(len(t["chosen_ids"]) > 1 and len(t["prompt_ids"]) > 1 for t in tokens)
    assert tokens[0]["prompt_ids"][0] == tokenizer.bos_token_id
    assert all(t["chosen_ids"][-1] == t["rejected_ids"][-1] == tokenizer.eos_token_id for t in tokens)


@pytest.mark.shared_data
def test_hh_rlhf_harmless_end_to_end(shared_data):
    from alignment.models import load_model

    path = shared_data / "hh-rlhf-harmless-base" / "test.jsonl.gz"
    with pytest.raises(PreferenceDataError, match=r"test\.jsonl\.gz, row 87: empty 'chosen' response"):
        load_preference_pairs(path)
    pairs = load_preference_pairs(path, on_invalid="drop")
    assert pairs.n_read == 2312 and len(pairs) == 2308
    assert sorted(item.row for item in pairs.invalid) == [87, 517, 926, 1104]
    assert pairs.pairs["prompt"].str.endswith("\n\nAssistant:").all()
    _, tokenizer = load_model()
    tokens = [tokenize_pair(pair, tokenizer) for pair in pairs.pairs.iloc[:200].to_dict("records")]
    assert all(len(t["chosen_ids"]) > 1 and len(t["rejected_ids"]) > 1 for t in tokens)
    # the byte-fallback vocabulary round-trips the dialogue text
    text = pairs.pairs.loc[0, "prompt"]
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True).strip() == text.strip()
