"""The fault catalogue: hostile input and faults, tried as a new user would.

Every case asserts the exit code, that stderr is one line naming the problem (no traceback), and that nothing
half-written is left behind. ``python -m pytest tests/test_faults.py -v`` lists the catalogue; each case id says
what it tries.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from robustrec.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = ["--synthetic-users", "200", "--synthetic-items", "120", "--dim", "8", "--batch-size", "256"]


def tiny_train(out: Path, *extra: str, epochs: int = 1) -> list[str]:
    return ["-q", "train", *TINY, "--epochs", str(epochs), "--eval-every", "0", "--out", str(out), *extra]


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    """Exit code and the non-empty stderr lines of ``robustrec ARGV`` run in this process."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse
        code = stop.code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, lines


def leftovers(folder: Path) -> list[str]:
    """Temporary or staging files an interrupted write would leave."""
    if not folder.exists():
        return []
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or ".staging-" in p.name]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny run (1 epoch), copied by the cases that damage or reuse one."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(tiny_train(out)) == 0
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


@dataclass
class Case:
    """One catalogue entry: ``setup(tmp_path, finished_run) -> argv``, the exit code, text the one-line message
    must contain, and an optional check of what is left on disk."""

    id: str
    setup: Callable[[Path, Path], list[str]]
    code: int
    message: tuple[str, ...]
    after: Callable[[Path], None] | None = field(default=None)


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _no_new_run(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists(), "a failed new run left its directory behind"


OUT = "out"


def train_case(id: str, extra: list[str], code: int, *message: str) -> Case:
    return Case(id, lambda tmp, run: tiny_train(tmp / OUT, *extra), code, message, _no_new_run)


CASES = [
    # -- options, validated before any work
    train_case("epochs-0", ["--epochs", "0"], 2, "--epochs must be >= 1"),
    train_case("dim-not-multiple-of-4", ["--dim", "30"], 2, "--dim must be a multiple of 4"),
    train_case("lr-negative", ["--lr", "-1"], 2, "--lr must be a positive number"),
    train_case("lr-nan", ["--lr", "nan"], 2, "--lr must be a positive number"),
    train_case("ks-0", ["--ks", "0"], 2, "--ks must be cut-offs >= 1"),
    train_case("early-stop-at-0", ["--early-stop-metric", "recall@0"], 2, "--early-stop-metric", "K >= 1"),
    train_case("early-stop-unknown-metric", ["--early-stop-metric", "auc@10"], 2, "--early-stop-metric 'auc@10'"),
    train_case("loss-unknown", ["--loss", "hinge"], 2, "--loss", "invalid choice: 'hinge'"),
    train_case("seed-not-a-number", ["--seed", "abc"], 2, "--seed", "invalid int value"),
    train_case("device-cuda-on-cpu-build", ["--device", "cuda"], 2, "device 'cuda' is not available"),
    train_case("device-malformed", ["--device", "gpu7"], 2, "device 'gpu7' is not a torch device"),
    train_case("optimizer-adam-on-cpu", ["--optimizer", "adam"], 2, "no fused FBGEMM kernel on CPU"),
    train_case("test-fraction-0", ["--test-fraction", "0"], 2, "--test-fraction must be in (0, 1)"),
    train_case("validation-fraction-1", ["--validation-fraction", "1"], 2, "--validation-fraction must be in [0, 1)"),
    train_case("inject-noise-negative", ["--inject-noise", "-0.5"], 2, "--inject-noise must be a finite number >= 0"),
    train_case("max-users-0", ["--max-users", "0"], 2, "--max-users must be >= 1"),
    train_case("batch-size-0", ["--batch-size", "0"], 2, "--batch-size must be >= 1"),
    train_case("negatives-0", ["--n-negatives", "0"], 2, "--n-negatives must be >= 1"),
    train_case("phi-prior-1", ["--phi-prior", "1"], 2, "--phi-prior must be in (0, 1)"),
    train_case("tce-max-drop-1", ["--tce-max-drop", "1"], 2, "--tce-max-drop must be in [0, 1)"),
    train_case("rce-beta-negative", ["--rce-beta", "-1"], 2, "--rce-beta must be >= 0"),
    train_case("pld-temperature-0", ["--pld-temperature", "0"], 2, "--pld-temperature > 0"),
    train_case("patience-0", ["--patience", "0"], 2, "--patience must be >= 1"),
    train_case("eval-every-negative", ["--eval-every", "-1"], 2, "--eval-every must be >= 0"),
    train_case("init-std-0", ["--init-std", "0"], 2, "--init-std must be a positive number"),
    train_case("resume-and-overwrite", ["--resume", "--overwrite"], 2, "--resume and --overwrite exclude each other"),
    # -- data
    Case("data-missing-file", lambda tmp, run: tiny_train(tmp / OUT, "--data", str(tmp / "nope.csv")), 2,
         ("nope.csv",), _no_new_run),
    Case("data-binary-file", lambda tmp, run: tiny_train(
        tmp / OUT, "--data", str(_write(tmp / "log.csv", b"user,item\n1,2\n" + bytes(range(128, 256)))),
        "--format", "csv"), 2, ("log.csv, line 3", "not UTF-8 text"), _no_new_run),
    Case("data-empty-csv", lambda tmp, run: tiny_train(tmp / OUT, "--data", str(_write(tmp / "e.csv", ""))), 2,
         ("e.csv", "empty file"), _no_new_run),
    Case("data-no-item-column", lambda tmp, run: tiny_train(
        tmp / OUT, "--data", str(_write(tmp / "l.csv", "user,product\n1,2\n"))), 2, ("l.csv", "item"), _no_new_run),
    Case("data-nan-user", lambda tmp, run: tiny_train(
        tmp / OUT, "--data", str(_write(tmp / "l.csv", "user,item\n1,2\n,3\n4,5\n"))), 2, ("l.csv", "line 3"),
         _no_new_run),
    Case("data-lightgcn-folder-without-test", lambda tmp, run: tiny_train(
        tmp / OUT, "--data", str(_write((tmp / "g").mkdir() or tmp / "g" / "train.txt", "0 1 2\n").parent),
        "--format", "lightgcn"), 2, ("lacks", "test.txt"), _no_new_run),
    Case("data-folder-of-unknown-format", lambda tmp, run: tiny_train(
        tmp / OUT, "--data", str((tmp / "empty").mkdir() or tmp / "empty")), 2, ("empty",), _no_new_run),
    Case("data-parquet-corrupt", lambda tmp, run: tiny_train(
        tmp / OUT, "--data", str(_write(tmp / "l.parquet", b"PAR1 not really"))), 2, ("l.parquet", "parquet"),
         _no_new_run),
    # -- the output folder
    Case("out-is-a-file", lambda tmp, run: tiny_train(_write(tmp / "afile", "x")), 2, ("afile is a file",)),
    Case("out-unwritable", lambda tmp, run: tiny_train(Path("/proc/1/robustrec-run")), 2,
         ("cannot create the lock",)),
    Case("retrain-into-finished-run", lambda tmp, run: tiny_train(copy_of(run, tmp)), 2,
         ("holds a finished run", "--overwrite"), None),
    Case("failed-overwrite-keeps-finished-run", lambda tmp, run: tiny_train(
        copy_of(run, tmp), "--overwrite", "--lr", "1e9"), 2, ("training diverged",), None),
    Case("resume-a-new-folder", lambda tmp, run: tiny_train(tmp / OUT, "--resume"), 2, ("holds no run to resume",),
         _no_new_run),
    Case("resume-with-changed-setting", lambda tmp, run: tiny_train(copy_of(run, tmp), "--resume", "--lr", "0.1",
                                                                    epochs=2),
         2, ("different configuration", "lr 0.05 -> 0.1"), None),
    Case("resume-with-changed-data", lambda tmp, run: tiny_train(copy_of(run, tmp), "--resume", "--test-fraction",
                                                                 "0.3", epochs=2),
         2, ("data settings differ", "test_fraction 0.2 -> 0.3"), None),
    Case("resume-truncated-checkpoint", lambda tmp, run: tiny_train(_truncate(copy_of(run, tmp), "checkpoint.pt"),
                                                                    "--resume", epochs=2),
         2, ("checkpoint.pt is truncated or corrupt", "--overwrite"), None),
    # -- numerics
    train_case("diverges-rowwise-adagrad", ["--lr", "1e9"], 2, "training diverged", "lower --lr"),
    train_case("diverges-sgd", ["--lr", "1e9", "--optimizer", "sgd"], 2, "training diverged"),
    # -- evaluate
    Case("evaluate-k-0", lambda tmp, run: ["evaluate", str(copy_of(run, tmp)), "--k", "0"], 2, ("--k must be",)),
    Case("evaluate-not-a-run", lambda tmp, run: ["evaluate", str(tmp)], 2, ("config.json is missing",)),
    Case("evaluate-truncated-model", lambda tmp, run: ["evaluate", str(_truncate(copy_of(run, tmp),
                                                                                 "model.safetensors"))],
         2, ("model.safetensors is truncated or corrupt", "retrain")),
    Case("recommend-truncated-ids", lambda tmp, run: ["recommend", str(_truncate(copy_of(run, tmp),
                                                                                 "model_ids.json"))],
         2, ("model_ids.json is truncated or corrupt", "retrain")),
    Case("evaluate-corrupt-config", lambda tmp, run: ["evaluate", str(_corrupt_json(copy_of(run, tmp)))], 2,
         ("config.json is truncated or corrupt: not valid JSON",)),
    # -- noise and compare
    Case("noise-folds-1", lambda tmp, run: ["noise", "estimate", "--folds", "1"], 2, ("--folds must be >= 2",)),
    Case("noise-flag-out-is-a-folder", lambda tmp, run: ["noise", "flag", "--out", str(tmp)], 2,
         ("--out", "is a folder")),
    Case("noise-binary-data", lambda tmp, run: ["noise", "estimate", "--format", "csv", "--data",
                                                str(_write(tmp / "b.csv", b"user,item\n" + bytes(range(128, 256))))], 2,
         ("b.csv, line 2", "not UTF-8")),
    Case("compare-epochs-0", lambda tmp, run: ["-q", "compare", "--epochs", "0", "--out", str(tmp / OUT)], 2,
         ("--epochs must be >= 1",), _no_new_run),
    Case("compare-unknown-configuration", lambda tmp, run: ["-q", "compare", "--configs", "mf/hinge",
                                                            "--out", str(tmp / OUT)], 2,
         ("unknown loss 'hinge'",), _no_new_run),
]


def _truncate(run: Path, name: str) -> Path:
    data = (run / name).read_bytes()
    (run / name).write_bytes(data[: len(data) // 2])
    return run


def _corrupt_json(run: Path) -> Path:
    (run / "config.json").write_text('{"train": {"dim": 8,')
    return run


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, tmp_path, finished_run, capsys, fault_record):
    argv = case.setup(tmp_path, finished_run)
    before = json.loads((tmp_path / "run" / "metrics.json").read_text()) if (tmp_path / "run").exists() else None
    code, lines = run_cli(argv, capsys)
    assert code == case.code, lines
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    for text in case.message:
        assert text in lines[0], (text, lines[0])
    assert not leftovers(tmp_path), leftovers(tmp_path)
    if before is not None:  # a finished run the case reused must be intact
        assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == before
    if case.after is not None:
        case.after(tmp_path)
    fault_record("robustrec", case.id, argv, code, lines[0])


def test_debug_shows_the_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "robustrec", "--debug", "train", "--epochs", "0"],
                          capture_output=True, text=True, cwd=tmp_path, env=_env())
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_extending_a_finished_run_by_more_epochs(finished_run, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    code, lines = run_cli(tiny_train(run, "--resume", epochs=3), capsys)
    assert code == 0, lines
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 3


def test_overwrite_replaces_a_finished_run(finished_run, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    code, _ = run_cli(tiny_train(run, "--overwrite", epochs=2), capsys)
    assert code == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2 and not leftovers(tmp_path)


def test_files_follow_the_umask(finished_run):
    mask = os.umask(0)
    os.umask(mask)
    for path in [finished_run, *finished_run.iterdir()]:
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


# -- faults that need real processes: signals and two runs at once ---------------------------------------------------

def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def _default_sigint() -> None:
    # a suite started in the background (`cmd &` in a script) inherits SIGINT ignored, and Python then never
    # raises KeyboardInterrupt: give the child the default disposition a terminal's Ctrl-C meets
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "robustrec", *argv], cwd=cwd, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.05)


LONG = [*TINY, "--epochs", "2000", "--eval-every", "0"]


def test_two_runs_into_one_folder(tmp_path):
    first = _start(["-q", "train", *LONG, "--out", "run"], tmp_path)
    try:
        _wait_for(tmp_path / "run" / "config.json", first)
        second = subprocess.run([sys.executable, "-m", "robustrec", "-q", "train", *TINY, "--out", "run"],
                                cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "is in use by" in lines[0] and f'"pid": {first.pid}' in lines[0], lines
    finally:
        first.kill()
        first.wait()


def test_ctrl_c_keeps_the_checkpoint_and_says_how_to_resume(tmp_path):
    proc = _start(["-q", "train", *LONG, "--out", "run"], tmp_path)
    _wait_for(tmp_path / "run" / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "is intact; continue with: robustrec -q train" in lines[0] and "--resume" in lines[0]
    assert not (tmp_path / "run" / "metrics.json").exists() and not leftovers(tmp_path)


def test_kill_9_then_resume_finishes_like_an_uninterrupted_run(tmp_path):
    argv = ["-q", "train", *TINY, "--epochs", "6", "--eval-every", "0", "--seed", "3", "--deterministic"]
    assert subprocess.run([sys.executable, "-m", "robustrec", *argv, "--out", "whole"], cwd=tmp_path,
                          env=_env(), capture_output=True).returncode == 0
    proc = _start([*argv, "--out", "cut"], tmp_path)
    _wait_for(tmp_path / "cut" / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "metrics.json").exists()
    again = subprocess.run([sys.executable, "-m", "robustrec", *argv, "--out", "cut", "--resume"], cwd=tmp_path,
                           env=_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert cut["epochs"] == whole["epochs"] == 6
    for key in ("recall@20", "ndcg@20"):
        assert cut[key] == whole[key]


# -- the Python API validates like the CLI --------------------------------------------------------------------------

@pytest.mark.parametrize("matrix, message", [
    (np.zeros((0, 4)), "needs at least one user and one item"),
    (np.zeros((3, 4)), "holds no interactions"),
    (np.array([[np.nan, 1.0]]), "NaN or infinite"),
    (np.array([[-1.0, 1.0]]), "negative values"),
], ids=["empty", "all-zero", "nan", "negative"])
def test_fit_rejects_unusable_matrices(matrix, message):
    import scipy.sparse as sp

    from robustrec import Recommender

    with pytest.raises(ValueError, match=message):
        Recommender(epochs=1, dim=4).fit(sp.csr_matrix(matrix), show_progress=False)


def test_ctrl_c_just_after_the_temporary_file_is_created_leaves_nothing(tmp_path, monkeypatch):
    """Ctrl-C can land inside tempfile.mkstemp after it has created the file and before its name is returned; the
    write must still leave only the finished target."""
    import tempfile

    from robustrec.atomic import atomic_write

    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"the finished checkpoint")
    create = tempfile.mkstemp

    def create_then_interrupt(*args, **kwargs):
        fd, _ = create(*args, **kwargs)
        os.close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(tempfile, "mkstemp", create_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, lambda handle: handle.write(b"new"))
    assert target.read_bytes() == b"the finished checkpoint" and os.listdir(tmp_path) == ["checkpoint.pt"]


def test_ctrl_c_just_after_a_model_folders_temporary_is_created_leaves_nothing(tmp_path, monkeypatch):
    """The same for alignment's model folders, written through a temporary folder (tempfile.mkdtemp)."""
    import tempfile

    from alignment.io import save_pretrained_atomic

    (tmp_path / "model").mkdir()
    create = tempfile.mkdtemp

    def create_then_interrupt(*args, **kwargs):
        create(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(tempfile, "mkdtemp", create_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained_atomic(object(), object(), tmp_path / "model")
    assert os.listdir(tmp_path) == ["model"]


def test_ctrl_c_inside_a_writer_whose_cleanup_fails_stays_an_interrupt(tmp_path):
    """torch.save's zip writer raises RuntimeError("unexpected pos ...") on exit when Ctrl-C lands mid-write; that
    error must not replace the interrupt (a traceback and exit 1 instead of the one-line exit 130)."""
    from robustrec.atomic import atomic_write

    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"the finished checkpoint")

    def writer(handle):
        try:
            handle.write(b"half")
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("unexpected pos 3008 vs 2902")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, writer)
    assert target.read_bytes() == b"the finished checkpoint" and os.listdir(tmp_path) == ["checkpoint.pt"]
    with pytest.raises(RuntimeError, match="unexpected pos"):  # without an interrupt, the writer's error stands
        atomic_write(target, lambda handle: (_ for _ in ()).throw(RuntimeError("unexpected pos")))
