"""The fault catalogue of ``python -m alignment``: hostile input and faults, tried as a new user would.

Every case asserts the exit code, that stderr is one line naming the problem (no traceback), and that nothing
half-written is left (no staging folder, no new run directory after a failure, a finished run untouched). The
same rules as robustrec's catalogue (tests/test_faults.py); runs are a couple of steps of a tiny random Llama.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from alignment.cli import main
from robustrec.rundir import RunDirectory

from .conftest import PAIRS, write_jsonl

QUIET = ["--disable-tqdm", "true", "--gradient-checkpointing", "false", "--logging-steps", "1"]


def train_argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "train", "--model", str(model), "--data", str(data), "--steps", "2", "--batch-size", "2", "--lr", "1e-3",
            "--out", str(out), *QUIET, *extra]


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", PAIRS.to_dict("records"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_llama, pairs_file) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(train_argv(tiny_llama, pairs_file, out)) == 0
    return out


@dataclass
class Case:
    """``argv(tmp_path, fixtures) -> argv``, the exit code, and text the one-line message must contain."""

    id: str
    argv: Callable[[Path, dict], list[str]]
    code: int
    message: tuple[str, ...]


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _copy(run: Path, tmp: Path) -> Path:
    shutil.copytree(run, tmp / "run")
    return tmp / "run"


def _damage(run: Path, name: str, how: str) -> Path:
    path = run / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncate" else b'{"model": ')
    return run


def _train(*extra: str, data=None, out="out"):
    return lambda tmp, f: train_argv(f["model"], data(tmp) if data else f["pairs"], tmp / out, *extra)


CASES = [
    Case("train-steps-0", _train("--steps", "0"), 2, ("nothing to train: max_steps=0",)),
    Case("train-lr-diverges", _train("--lr", "1e9"), 2, ("training diverged at step", "Lower the learning rate")),
    Case("train-flip-rate-0.5", _train("--loss", "rdpo", "--flip-rate", "0.5"), 2, ("flip rate must lie in [0, 0.5)",)),
    Case("train-flip-rate-not-a-number", _train("--loss", "rdpo", "--flip-rate", "half"), 2, ("flip rate",)),
    Case("train-unknown-loss", _train("--loss", "hinge"), 2, ("hinge",)),
    Case("train-missing-data", _train(data=lambda tmp: tmp / "nope.jsonl"), 2, ("nope.jsonl",)),
    Case("train-binary-data", _train(data=lambda tmp: _write(tmp / "b.jsonl", b'{"a": 1}\n' + bytes(range(128, 256)))),
         2, ("b.jsonl, row 2", "not UTF-8 text")),
    Case("train-broken-gzip", _train(data=lambda tmp: _write(tmp / "p.jsonl.gz", b"not gzip at all")), 2,
         ("p.jsonl.gz", "not a readable gzip file")),
    Case("train-corrupt-parquet", _train(data=lambda tmp: _write(tmp / "p.parquet", b"PAR1garbage")), 2,
         ("p.parquet: cannot read Parquet",)),
    Case("train-folder-not-a-dataset", _train(data=lambda tmp: (tmp / "d").mkdir() or tmp / "d"), 2,
         ("not one written by datasets' save_to_disk",)),
    Case("train-empty-response", _train(data=lambda tmp: write_jsonl(
        tmp / "bad.jsonl", [{"prompt": "Once", "chosen": " ", "rejected": " no"}])), 2,
         ("bad.jsonl, row 1: empty 'chosen' response",)),
    Case("train-missing-model", lambda tmp, f: train_argv(tmp / "nomodel", f["pairs"], tmp / "out"), 2,
         ("nomodel",)),
    Case("train-hub-model-name", lambda tmp, f: train_argv("meta-llama/Llama-3-8B", f["pairs"], tmp / "out"), 2,
         ("Nothing is downloaded",)),
    Case("train-config-file-missing", _train("--config", "/nonexistent.yaml"), 2, ("config file not found",)),
    Case("train-into-finished-run", lambda tmp, f: train_argv(f["model"], f["pairs"], _copy(f["finished"], tmp)), 2,
         ("holds a finished run", "--overwrite")),
    Case("train-overwrite-that-diverges", lambda tmp, f: train_argv(
        f["model"], f["pairs"], _copy(f["finished"], tmp), "--overwrite", "--lr", "1e9"), 2, ("training diverged",)),
    Case("train-resume-nothing", _train("--resume", "last"), 2, ("holds no run to resume",)),
    Case("evaluate-not-a-run", lambda tmp, f: ["evaluate", str(tmp)], 2, ("not a finished run directory",)),
    Case("evaluate-truncated-weights", lambda tmp, f: ["evaluate", str(_damage(
        _copy(f["finished"], tmp), "model/model.safetensors", "truncate")), "--data", str(f["pairs"])], 2,
         ("model weights are truncated or corrupt",)),
    Case("evaluate-corrupt-run-json", lambda tmp, f: ["evaluate", str(_damage(
        _copy(f["finished"], tmp), "run.json", "corrupt")), "--data", str(f["pairs"])], 2,
         ("run.json is truncated or corrupt",)),
    Case("evaluate-all-pairs-invalid", lambda tmp, f: ["evaluate", str(f["finished"]), "--data", str(write_jsonl(
        tmp / "bad.jsonl", [{"prompt": "a", "chosen": "", "rejected": "b"}])), "--on-invalid", "drop"], 2,
         ("all 1 rows are invalid",)),
    Case("estimate-missing-data", lambda tmp, f: ["estimate-flip-rate", "--data", str(tmp / "x.json")], 2,
         ("x.json",)),
    Case("estimate-one-annotator", lambda tmp, f: ["estimate-flip-rate", "--data", str(_write(
        tmp / "a.json", json.dumps([{"annotator1": 1}, {"annotator1": 2}])))], 2,
         ("one annotator column (annotator1)",)),
    Case("experiment-flip-rate-0.6", lambda tmp, f: ["experiment", "--flip-rate", "0.6", "--out", str(tmp / "e")], 2,
         ("flip rate must lie in [0, 0.5)",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case, tmp_path, tiny_llama, pairs_file, finished, capsys, fault_record):
    fixtures = {"model": tiny_llama, "pairs": pairs_file, "finished": finished}
    argv = case.argv(tmp_path, fixtures)
    before = (tmp_path / "run" / "run.json").read_bytes() if (tmp_path / "run" / "run.json").is_file() else None
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == case.code, lines
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    for text in case.message:
        assert text in lines[0], (text, lines[0])
    assert not (tmp_path / "out").exists(), "a failed new run left its directory behind"
    assert not [p for p in tmp_path.rglob("*") if ".staging" in p.name], "a staging folder was left behind"
    if before is not None:
        assert (tmp_path / "run" / "run.json").read_bytes() == before, "the finished run was changed"
    fault_record("alignment", case.id, argv, code, lines[0])


def test_a_run_directory_in_use_is_refused_at_once(tmp_path, tiny_llama, pairs_file, capsys):
    with RunDirectory(tmp_path / "run", finished="run.json"):  # another run holds it
        assert main(train_argv(tiny_llama, pairs_file, tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is in use by" in err[0], err


def test_overwrite_replaces_a_finished_run(tmp_path, tiny_llama, pairs_file, finished):
    run = _copy(finished, tmp_path)
    assert main(train_argv(tiny_llama, pairs_file, run, "--overwrite", "--steps", "1")) == 0
    assert json.loads((run / "run.json").read_text())["steps"] == 1
    assert not [p for p in tmp_path.rglob("*") if ".staging" in p.name or ".replaced" in p.name]
