"""Memory and time of a LoRA run and of a 2-process run beside a full fine-tune, on a local Llama.

Builds a random Llama (default: 8 layers, hidden 512, about 27M parameters, with the shipped model's 512-piece
tokenizer) into a temporary folder, then runs ``python -m alignment train`` on the same synthetic preference
pairs as separate processes:

- ``full``: full fine-tune; a frozen second copy is the reference;
- ``lora``: ``--use-peft`` (r 16 on q_proj, v_proj); the reference is the base with the adapters disabled;
- ``full x2``: the full fine-tune under ``accelerate launch --multi_gpu --num_processes 2`` (two gloo
  processes on CPU, each with one thread and its own copy of model, reference and optimizer state).

Reported per configuration (median of ``--repeats``): the training loop's seconds (run.json ``seconds``: after
loading, before saving), the wall time and the CPU time (user + system, all processes) of the whole command,
and the peak resident memory of the largest process (``/usr/bin/time``'s maximum RSS), with ratios to the full
fine-tune measured in the same run. On a shared machine the CPU time is the steadier measure of cost. The
2-process run does the same number of optimizer steps on twice the pairs per step.

    python benchmarks/align_scale.py --repeats 3 --steps 10 --out benchmarks/results/align_scale.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the cat sat on a mat and then it ran to the park where a dog was happy to play with a red ball "
         "but the sky turned dark and rain fell so they went home to eat warm soup by the fire").split()


def build_model(folder: Path, *, layers: int, hidden: int) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(REPO))
    from alignment.models import load_tokenizer

    tokenizer = load_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=int(hidden * 2.6875),
                         num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                         max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def write_pairs(path: Path, n: int) -> None:
    rng = random.Random(0)

    def sentence(k):
        return " ".join(rng.choice(WORDS) for _ in range(k)) + "."

    with path.open("w") as handle:
        for _ in range(n):
            handle.write(json.dumps({"prompt": sentence(40), "chosen": " " + sentence(30),
                                     "rejected": " " + sentence(25)}) + "\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(name: str, model: Path, data: Path, out: Path, steps: int) -> dict:
    train = ["-m", "alignment", "train", "--model", str(model), "--data", str(data), "--steps", str(steps),
             "--batch-size", "4", "--lr", "1e-4", "--num-threads", "1", "--gradient-checkpointing", "false",
             "--bf16", "false", "--save-strategy", "no", "--disable-tqdm", "true", "--out", str(out)]
    if name.startswith("lora"):
        train += ["--use-peft", "--lora-r", "16", "--lora-alpha", "32", "--lora-target-modules", "q_proj", "v_proj"]
    if name.endswith("x2"):
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(free_port()), *train]
    else:
        command = [sys.executable, *train]
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "MAXRSS_KB %M CPU_S %U %S", *command], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    fields = next(line for line in done.stderr.splitlines() if line.startswith("MAXRSS_KB")).split()
    record = json.loads((out / "run.json").read_text())
    return {"train_s": record["seconds"], "wall_s": wall, "cpu_s": float(fields[3]) + float(fields[4]),
            "peak_rss_mb": int(fields[1]) / 1024, "world_size": record["world_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=["full", "lora", "full x2"])
    parser.add_argument("--out", help="write the Markdown table here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        n_params = build_model(scratch / "model", layers=args.layers, hidden=args.hidden)
        write_pairs(scratch / "pairs.jsonl", 64)
        results: dict[str, list[dict]] = {name: [] for name in args.configs}
        for repeat in range(args.repeats):  # interleaved, so load changes hit every configuration alike
            for name in args.configs:
                record = run(name, scratch / "model", scratch / "pairs.jsonl", scratch / f"run-{repeat}-{name}",
                             args.steps)
                results[name].append(record)
                print(f"repeat {repeat} {name}: {record}", flush=True)
    median = {name: {key: statistics.median(r[key] for r in runs)
                     for key in ("train_s", "wall_s", "cpu_s", "peak_rss_mb")} for name, runs in results.items()}
    base = median[args.configs[0]]
    lines = [f"Random Llama, {args.layers} layers, hidden {args.hidden}, {n_params / 1e6:.1f}M parameters (float32), "
             f"{args.steps} steps × batch 4 per process, sequences ≈ 100 tokens, 1 thread per process, median of "
             f"{args.repeats} interleaved repeats; CPU, shared machine.", "",
             "| run | train loop s | whole command s | CPU s (all processes) | ratio | peak RSS of the largest "
             "process MB | ratio |", "|---|---|---|---|---|---|---|"]
    for name, m in median.items():
        lines.append(f"| {name} | {m['train_s']:.1f} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | "
                     f"{m['cpu_s'] / base['cpu_s']:.2f} | {m['peak_rss_mb']:.0f} | "
                     f"{m['peak_rss_mb'] / base['peak_rss_mb']:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
        Path(args.out).write_text(f"# alignment: LoRA and 2 processes beside a full fine-tune\n\n```\n{command}\n```\n\n"
                                  f"{table}\n")


if __name__ == "__main__":
    main()
