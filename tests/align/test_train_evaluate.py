"""``train`` and ``evaluate`` on tiny local Llama and GPT-2 models: lengths, LoRA, config files, guards, resume.

Every run is a few optimizer steps on a random 2-layer model saved by the fixtures of conftest.py.
"""

import json
import math

import pandas as pd
import pytest
import torch
import yaml

from alignment.cli import main, parse_train
from alignment.data import load_preference_pairs

from .conftest import PAIRS, hh_dialogue_pairs, write_jsonl

QUIET = ["--disable-tqdm", "true", "--gradient-checkpointing", "false", "--logging-steps", "1"]


def train(model, data, out, *extra) -> int:
    return main(["train", "--model", str(model), "--data", str(data), "--steps", "2", "--batch-size", "2",
                 "--lr", "1e-3", "--out", str(out), *QUIET, *extra])


def run_json(run):
    return json.loads((run / "run.json").read_text())


@pytest.fixture(scope="module")
def long_dialogues(tmp_path_factory):
    """20 HH dialogues of 90-300 tokens (GPT-2 fixture: 48 positions), one with an empty response."""
    rows = hh_dialogue_pairs(12, turns=2, words_per_turn=8) + hh_dialogue_pairs(8, turns=5, words_per_turn=12, seed=3)
    rows[5]["chosen"] = rows[5]["chosen"][: rows[5]["chosen"].rindex("Assistant:") + len("Assistant:")]
    return write_jsonl(tmp_path_factory.mktemp("data") / "hh.jsonl", rows)


def test_evaluate_beyond_the_models_positions_cuts_like_training(tiny_gpt2, long_dialogues, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(tiny_gpt2, long_dialogues, run, "--on-invalid", "drop") == 0
    trained = run_json(run)
    assert trained["max_length"] == 48  # the model's context
    data = trained["data"]
    assert data == {"read": 20, "invalid": 1, "dropped_too_long": 0, "truncated": 19, "used": 19}
    assert "read 20 pairs: 1 invalid, 0 dropped as too long, 19 used" in capsys.readouterr().out
    assert yaml.safe_load((run / "config.yaml").read_text())["max_length"] == 48

    assert main(["evaluate", str(run), "--data", str(long_dialogues), "--on-invalid", "drop", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["data"] == data and metrics["n_pairs"] == 19  # cut exactly as in training
    assert 0 <= metrics["pref_accuracy"] <= 1 and math.isfinite(metrics["reward_margin"])
    assert metrics["reward_margin"] == pytest.approx(metrics["chosen_reward"] - metrics["rejected_reward"])
    assert json.loads((run / "eval.json").read_text())["n_pairs"] == 19
    # padding must not change a pair's score: one pair per batch gives the same numbers
    assert main(["evaluate", str(run), "--data", str(long_dialogues), "--on-invalid", "drop", "--json",
                 "--batch-size", "1"]) == 0
    single = json.loads(capsys.readouterr().out)
    assert single["reward_margin"] == pytest.approx(metrics["reward_margin"], rel=1e-5, abs=1e-7)
    assert single["pref_accuracy"] == metrics["pref_accuracy"]


def test_lora_trains_only_adapters_and_the_reference_is_the_base(tiny_llama, tmp_path):
    from peft import LoraConfig

    from alignment.config import RobustDPOConfig
    from alignment.models import load_model
    from alignment.policy import build_trainer

    base, tokenizer = load_model(tiny_llama)
    before = {name: p.detach().clone() for name, p in base.named_parameters()}
    config = RobustDPOConfig(output_dir=str(tmp_path), loss="rdpo", flip_rate=0.1, max_steps=3, learning_rate=0.05,
                             per_device_train_batch_size=4, report_to="none", save_strategy="no",
                             gradient_checkpointing=False, disable_tqdm=True, bf16=False)  # exact comparisons
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = build_trainer(PAIRS, config, tiny_llama, peft_config=lora)
    assert trainer.ref_model is None  # no second copy: the reference is the base with adapters disabled
    trainer.train()
    policy = trainer.model
    changed = {name for name, p in policy.named_parameters() if "lora_" in name
               and not torch.equal(p, torch.zeros_like(p)) and "lora_B" in name}
    assert changed, "the adapters did not train"
    for name, p in policy.named_parameters():
        if "lora_" not in name:
            original = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(p, before[original]), name
    batch = tokenizer(["Once upon a time there was a cat"], return_tensors="pt")
    with torch.no_grad(), policy.disable_adapter():
        disabled = policy(**batch).logits
    with torch.no_grad():
        assert torch.equal(disabled, base.__class__.from_pretrained(tiny_llama)(**batch).logits)
        assert not torch.allclose(policy(**batch).logits, disabled)


def test_lora_run_saves_the_adapter_and_evaluates_it(tiny_llama, tmp_path, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS.to_dict("records"))
    run = tmp_path / "run"
    assert train(tiny_llama, data, run, "--use-peft", "--lora-r", "4", "--lora-alpha", "8",
                 "--lora-target-modules", "q_proj", "v_proj") == 0
    files = {p.name for p in (run / "model").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files and "model.safetensors" not in files
    assert run_json(run)["adapter"] is True
    assert main(["evaluate", str(run), "--data", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n_pairs"] == len(PAIRS)


def test_config_file_round_trip_reproduces_the_run(tiny_llama, tmp_path, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS.to_dict("records"))
    first = tmp_path / "first"
    assert train(tiny_llama, data, first, "--loss", "rdpo", "--flip-rate", "0.2", "--beta", "0.3",
                 "--max-prompt-length", "20", "--seed", "7") == 0
    recorded = first / "config.yaml"
    _, config, model_args, _ = parse_train(["--config", str(recorded)])
    assert (config.loss, config.flip_rate, config.beta, config.seed) == ("rdpo", 0.2, 0.3, 7)
    assert (config.max_length, config.max_prompt_length, config.max_steps) == (64, 20, 2)
    assert model_args.model_name_or_path == str(tiny_llama)
    _, overridden, _, _ = parse_train(["--config", str(recorded), "--beta", "0.5", "--out", "elsewhere"])
    assert (overridden.beta, overridden.flip_rate, overridden.output_dir) == (0.5, 0.2, "elsewhere")

    second = tmp_path / "second"
    assert main(["train", "--config", str(recorded), "--out", str(second)]) == 0
    losses = [[e["loss"] for e in run_json(run)["log_history"] if "loss" in e] for run in (first, second)]
    assert len(losses[0]) == 2 and losses[0] == losses[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text("beta: 0.1\nbetta: 0.2\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "bad.yaml: unknown options --betta" in capsys.readouterr().err


def test_a_diverging_run_stops_and_writes_no_model(tiny_llama, tmp_path, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS.to_dict("records"))
    run = tmp_path / "run"
    assert train(tiny_llama, data, run, "--lr", "1e9", "--steps", "6", "--bf16", "false") == 2
    err = capsys.readouterr().err
    assert "training diverged at step" in err and "Lower the learning rate (it is 1e+09)" in err
    assert not (run / "model").exists() and not (run / "run.json").exists()


def test_evaluate_refuses_non_finite_weights(tiny_llama, tmp_path, capsys):
    from alignment.io import save_pretrained_atomic
    from alignment.models import load_model

    model, tokenizer = load_model(tiny_llama)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
    run = tmp_path / "run"
    save_pretrained_atomic(model, tokenizer, run / "model")
    (run / "run.json").write_text(json.dumps({"model": str(tiny_llama), "beta": 0.1, "max_length": 64}))
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS.to_dict("records"))
    assert main(["evaluate", str(run), "--data", str(data)]) == 2
    assert "the weights are not finite (1 NaN/inf values in model.layers.0.mlp.up_proj.weight)" \
        in capsys.readouterr().err
    assert not (run / "eval.json").exists()


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0"], "nothing to train: max_steps=0"),
    (["--num-train-epochs", "0"], "nothing to train"),
    (["--batch-size", "0"], "per_device_train_batch_size must be at least 1"),
])
def test_empty_runs_are_refused_before_any_work(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "missing.jsonl"), "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err  # not the missing file: refused before reading anything
    assert not out.exists()


def test_a_run_whose_pairs_all_drop_is_refused(tiny_gpt2, long_dialogues, tmp_path, capsys):
    assert train(tiny_gpt2, long_dialogues, tmp_path / "run", "--on-invalid", "drop", "--truncation-mode",
                 "keep_start") == 2
    assert "no train pair fits max_length=48" in capsys.readouterr().err


def test_hub_names_fail_with_an_offline_message(tmp_path, capsys):
    assert main(["train", "--model", "openai-community/gpt2", "--out", str(tmp_path / "r")]) == 2
    assert "is not a local folder. Nothing is downloaded (this toolkit runs offline)" in capsys.readouterr().err


def test_pad_token_is_set_when_missing(tiny_gpt2):
    from transformers import AutoTokenizer

    from alignment.models import load_model

    assert AutoTokenizer.from_pretrained(tiny_gpt2).pad_token is None
    model, tokenizer = load_model(tiny_gpt2)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    assert model.config.pad_token_id == tokenizer.eos_token_id


def test_checkpoints_resume_and_eval_split(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS.to_dict("records"))
    run = tmp_path / "run"
    assert train(tiny_llama, data, run, "--steps", "4", "--save-steps", "2", "--eval-fraction", "0.25",
                 "--eval-steps", "2") == 0
    assert {p.name for p in run.glob("checkpoint-*")} == {"checkpoint-2", "checkpoint-4"}
    first = run_json(run)
    assert first["split"] == {"train": 6, "eval": 2} and first["data"]["used"] == 8
    assert any("eval_loss" in entry for entry in first["log_history"])
    assert main(["train", "--config", str(run / "config.yaml"), "--steps", "6", "--resume", "last"]) == 0
    resumed = run_json(run)
    assert resumed["steps"] == 6
    steps = [e["step"] for e in resumed["log_history"] if "loss" in e]
    assert steps == [1, 2, 3, 4, 5, 6]  # the first four come from checkpoint-4's history


def test_flip_rate_estimate_is_the_first_entry_of_the_history(tiny_llama, tmp_path):
    from alignment.config import RobustDPOConfig
    from alignment.policy import build_trainer
    from robustrec.noise import Estimate

    seen = {}

    def estimator(pairs, clean_pairs):
        seen["columns"] = list(pairs.columns)
        return Estimate(value=0.15, ci_low=0.1, ci_high=0.2, method="stub", n=len(pairs))

    config = RobustDPOConfig(output_dir=str(tmp_path), loss="rdpo", flip_rate="auto", max_steps=1,
                             report_to="none", save_strategy="no", disable_tqdm=True, gradient_checkpointing=False)
    trainer = build_trainer(PAIRS, config, tiny_llama, flip_rate_estimator=estimator)
    trainer.train()
    first = trainer.state.log_history[0]
    assert (first["flip_rate"], first["flip_rate_ci_low"], first["flip_rate_ci_high"]) == (0.15, 0.1, 0.2)
    assert trainer.label_smoothing == 0.15 and seen["columns"][:3] == ["prompt", "chosen", "rejected"]


INVALID = {"prompt": "A story.", "chosen": "", "rejected": " It ended."}


@pytest.mark.parametrize("command", ["train --data", "train --clean-data", "train --eval-data", "evaluate --data",
                                     "estimate-flip-rate --data", "estimate-flip-rate --clean-data"])
def test_on_invalid_on_every_command_that_reads_pairs(tiny_llama, tmp_path, capsys, command):
    good = write_jsonl(tmp_path / "good.jsonl", PAIRS.to_dict("records"))
    bad = write_jsonl(tmp_path / "bad.jsonl", [*PAIRS.to_dict("records")[:4], INVALID, *PAIRS.to_dict("records")[4:]])
    name, flag = command.split()
    run = tmp_path / "run"
    if name == "evaluate":
        assert train(tiny_llama, good, run, "--steps", "1") == 0
    capsys.readouterr()

    def call(on_invalid):
        if name == "train":
            sources = {"--data": good, flag: bad}
            args = ["train", "--model", str(tiny_llama), "--steps", "1", "--out", str(run), *QUIET,
                    *[str(x) for item in sources.items() for x in item]]
        elif name == "evaluate":
            args = ["evaluate", str(run), "--data", str(bad)]
        else:
            sources = {"--data": good, flag: bad}
            args = ["estimate-flip-rate", *[str(x) for item in sources.items() for x in item]]
        return main([*args, "--on-invalid", on_invalid])

    assert call("raise") == 2
    assert "bad.jsonl, row 5: empty 'chosen' response" in capsys.readouterr().err
    if name == "estimate-flip-rate":  # dropping works; the estimate itself needs far more pairs than 8
        call("drop")
        assert "bad.jsonl: read 9 rows, kept 8, dropped 1" in capsys.readouterr().out
        return
    assert call("drop") == 0
    out = capsys.readouterr().out
    assert "bad.jsonl: read 9 rows, kept 8, dropped 1" in out
    if command == "train --data":
        assert run_json(run)["data"]["invalid"] == 1
    if name == "evaluate":
        assert json.loads((run / "eval.json").read_text())["data"] == {
            "read": 9, "invalid": 1, "dropped_too_long": 0, "truncated": 0, "used": 8}


def test_chat_model_trains_on_hh_dialogues_as_messages(chat_llama, tmp_path):
    data = write_jsonl(tmp_path / "hh.jsonl", hh_dialogue_pairs(6, turns=2, words_per_turn=5))
    run = tmp_path / "run"
    assert train(chat_llama, data, run) == 0
    assert load_preference_pairs(data, hh_as_messages=True).conversational
    assert run_json(run)["data"]["used"] == 6


def test_dataset_dict_folder_needs_a_split(tmp_path):
    from datasets import Dataset, DatasetDict

    folder = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_pandas(PAIRS), "test": Dataset.from_pandas(PAIRS.iloc[:3])}).save_to_disk(folder)
    with pytest.raises(ValueError, match="has splits train, test: choose one"):
        load_preference_pairs(folder)
    pairs = load_preference_pairs(folder, split="test")
    assert len(pairs) == 3 and pairs.source.endswith("saved[test]")
    Dataset.from_pandas(pd.DataFrame(PAIRS)).save_to_disk(tmp_path / "single")
    assert len(load_preference_pairs(tmp_path / "single")) == len(PAIRS)


@pytest.mark.slow
def test_two_processes_with_accelerate_launch(tiny_llama, tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2`` on a CPU-only machine: two gloo processes (DDP)."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS.to_dict("records"))
    run = tmp_path / "run"
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(port), "-m", "alignment", "train", "--model", str(tiny_llama),
               "--data", str(data), "--steps", "2", "--batch-size", "2", "--lr", "1e-3", "--out", str(run), *QUIET]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    trained = run_json(run)
    assert trained["world_size"] == 2 and trained["steps"] == 2
    assert done.stdout.count("saved ") == 1  # the main process alone writes and reports
    # each step saw 2 pairs per process: 4 pairs a step, so 2 steps cover 8 pairs = one epoch
    assert [e["epoch"] for e in trained["log_history"] if "loss" in e] == [0.5, 1.0]
    assert (run / "model" / "model.safetensors").is_file()


def test_dtype_accumulation_and_checkpointing_options(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS.to_dict("records"))
    run = tmp_path / "run"
    assert main(["train", "--model", str(tiny_llama), "--data", str(data), "--steps", "2", "--batch-size", "2",
                 "--gradient-accumulation-steps", "2", "--gradient-checkpointing", "true", "--torch-dtype",
                 "bfloat16", "--attn-implementation", "eager", "--bf16", "false", "--disable-tqdm", "true",
                 "--logging-steps", "1", "--out", str(run)]) == 0
    trained = run_json(run)
    assert trained["dtype"] == "bfloat16"
    assert json.loads((run / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    # 2 pairs x 2 accumulated micro-batches per step: 2 steps are one pass over the 8 pairs
    assert [e["epoch"] for e in trained["log_history"] if "loss" in e] == [0.5, 1.0]
