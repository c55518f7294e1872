"""The rDPO paper's claim in miniature: under flipped labels rDPO keeps the reward gain that DPO loses.

Runs DPO, cDPO(ε), rDPO(true ε) and rDPO(ε estimated, "auto") on the controlled stories experiment
(:mod:`alignment.experiment`) at ε ∈ {0, 0.1, 0.2, 0.3, 0.4} for several seeds, and writes ``results.json``,
``results.md`` (tables: metrics mean ± std over seeds, estimated against true ε) and
``reward_vs_flip_rate.png`` to the output folder. With ``--jobs N`` the (seed × ε) cells are shared among N
processes of one thread each (``python -m alignment experiment --shard J N``), whose partial results are
merged at the end. One process alone is the plain CLI:

    python -m alignment experiment --flip-rate 0 0.1 0.2 0.3 0.4 --seeds 3 --out benchmarks/results/rdpo

Cost: one run (40 steps × 16 pairs, then evaluation) takes ≈ 20 s on an idle core and 40–100 s on the shared
2-core machine; the grid is seeds × 5 × 4 runs, plus ≈ 30 s per seed and process to sample the pairs. Measured:
5 seeds with ``--jobs 2`` under load ≈ 45–55 minutes. If a grid is interrupted, ``--merge-only`` writes the
outputs from the whole seeds already finished.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from alignment.experiment import ExperimentSettings, merge_results, results_markdown, write_outputs


def complete_seeds_only(part: dict, parts: list[dict]) -> dict:
    """``part`` without the runs of seeds that not every (flip rate, method) cell of the grid has finished
    (an interrupted grid: report whole seeds only)."""
    methods = part["settings"]["methods"]
    rates = part["flip_rates"]
    done = {(r["seed"], r["flip_rate"], r["method"]) for p in parts for r in p["runs"]}
    seeds = {r["seed"] for p in parts for r in p["runs"]}
    complete = {s for s in seeds if all((s, float(e), m) in done for e in rates for m in methods)}
    dropped = sorted(seeds - complete)
    if dropped:
        print(f"leaving out the unfinished seeds {dropped}", flush=True)
    runs = [r for r in part["runs"] if r["seed"] in complete]
    references = {k: v for k, v in part["reference"]["per_seed"].items() if int(k) in complete}
    return {**part, "runs": runs, "reference": {**part["reference"], "per_seed": references}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flip-rates", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=ExperimentSettings.steps)
    parser.add_argument("--jobs", type=int, default=2, help="processes (one thread each)")
    parser.add_argument("--out", default="benchmarks/results/rdpo")
    parser.add_argument("--merge-only", action="store_true",
                        help="merge the shards already in OUT/shards (e.g. of an interrupted grid) and write outputs")
    args = parser.parse_args()
    out = Path(args.out)
    shard_dirs = [out / "shards" / str(j) for j in range(args.jobs)]
    command = ["python", "benchmarks/rdpo_experiment.py", "--flip-rates", *map(str, args.flip_rates),
               "--seeds", str(args.seeds), "--steps", str(args.steps), "--jobs", str(args.jobs), "--out", str(out)]
    if not args.merge_only:
        started = time.perf_counter()
        processes = []
        for j, folder in enumerate(shard_dirs):
            folder.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "alignment", "experiment", "--flip-rate", *map(str, args.flip_rates),
                   "--seeds", str(args.seeds), "--steps", str(args.steps), "--shard", str(j), str(args.jobs),
                   "--out", str(folder)]
            log = open(folder / "log.txt", "w")
            print(f"shard {j}: {shlex.join(cmd)} (log {folder / 'log.txt'})", flush=True)
            processes.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        codes = []
        for process, log in processes:
            codes.append(process.wait())
            log.close()
        print(f"grid finished in {(time.perf_counter() - started) / 60:.1f} min, exit codes {codes}", flush=True)
    parts = [json.loads((d / "results.json").read_text()) for d in shard_dirs if (d / "results.json").is_file()]
    parts = [complete_seeds_only(part, parts) for part in parts]
    results = merge_results(parts)
    write_outputs(results, out)
    text = results_markdown(results, shlex.join(command))
    (out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
