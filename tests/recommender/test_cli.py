"""One tiny end-to-end run per CLI command, through ``python -m robustrec``."""

import json
import subprocess
import sys

import pytest

from robustrec.cli import main


def test_train_then_evaluate_on_the_embedded_default(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["-q", "train", "--epochs", "2", "--dim", "8", "--synthetic-users", "300", "--synthetic-items", "200",
            "--validation-fraction", "0.1", "--eval-every", "1", "--out", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("recall@20", "ndcg@20", "precision@20", "hit@20", "mrr@20", "train_seconds", "epochs"):
        assert key in metrics
    assert metrics["epochs"] == 2
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["dim"] == 8 and config["data"]["path"] is None
    assert (out / "model.safetensors").exists() and (out / "checkpoint.pt").exists()
    capsys.readouterr()
    assert main(["evaluate", str(out), "--k", "20", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["recall@20"] == pytest.approx(metrics["recall@20"])


def test_train_on_a_csv_log(tmp_path):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.integers(0, 50, 1500), "item_id": rng.integers(0, 40, 1500)})
    frame.to_csv(tmp_path / "log.csv", index=False)
    assert main(["-q", "train", "--data", str(tmp_path / "log.csv"), "--epochs", "1", "--dim", "4",
                 "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n_users"] == 50


def test_bad_data_is_a_clear_error_without_outputs(tmp_path, capsys):
    bad = tmp_path / "log.csv"
    bad.write_text("user,product\n1,2\n4,3\n")
    assert main(["-q", "train", "--data", str(bad), "--format", "csv", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "log.csv" in err and "item" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "robustrec", "train", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--loss" in done.stdout


def test_old_flip_flags_still_work_with_a_warning(tmp_path):
    from robustrec.cli import build_parser
    from robustrec.cli.options import from_namespace
    from robustrec.config import TrainConfig

    with pytest.warns(FutureWarning, match="--flip-l2 is deprecated; use --phi-l2"):
        args = build_parser().parse_args(["train", "--flip-l2", "0.5", "--flip-dim", "8"])
    config = from_namespace(TrainConfig, args)
    assert config.phi_l2 == 0.5 and config.phi_dim == 8


def test_config_json_of_version_0_1_loads(tmp_path):
    from robustrec.config import TrainConfig

    with pytest.warns(FutureWarning, match="flip_prior"):
        config = TrainConfig.from_dict({"loss": "nbpo", "flip_prior": 0.2})
    assert config.phi_prior == 0.2
    with pytest.raises(ValueError, match="unknown TrainConfig fields: \\['nope'\\]"):
        TrainConfig.from_dict({"nope": 1})


def test_validation_errors_name_the_flag(capsys):
    assert main(["-q", "train", "--phi-prior", "1.5", "--out", "unused"]) == 2
    assert "--phi-prior must be in (0, 1), got 1.5" in capsys.readouterr().err


def test_the_load_counts_and_the_data_summary_are_shown(tmp_path, capsys):
    """INFO and WARNING lines of the robustrec loggers reach stderr although fbgemm_gpu configured logging first."""
    import logging

    assert logging.getLogger().handlers, "importing the CLI (torchrec, fbgemm_gpu) installs a root handler"
    rows = ["user,item"] + [f"u{u},i{(u * 7 + k) % 30}" for u in range(40) for k in range(6)] + ["u1,i7", "u1,i7"]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    assert main(["train", "--data", str(tmp_path / "log.csv"), "--epochs", "1", "--dim", "4",
                 "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "duplicates merged all 2" in err  # u1,i7 is in the generated rows once and added twice
    assert "data: Split(n_users=40" in err  # an INFO message
    assert main(["-q", "train", "--data", str(tmp_path / "log.csv"), "--epochs", "1", "--dim", "4",
                 "--out", str(tmp_path / "run2")]) == 0
    err = capsys.readouterr().err
    assert "duplicates merged all 2" in err and "data: Split" not in err  # -q keeps warnings, drops INFO


def test_a_pld_warmup_as_long_as_the_run_is_a_warning(tmp_path, capsys):
    import warnings

    from robustrec.config import TrainConfig

    with pytest.warns(UserWarning, match=r"pld_warmup_epochs \(5\) is not below epochs \(3\)"):
        TrainConfig(sampler="pld", epochs=3).warn_schedule()
    with pytest.warns(UserWarning, match="pld sampler never runs"):
        TrainConfig(sampler="pld", epochs=4, pld_warmup_epochs=4).warn_schedule()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig(sampler="pld", epochs=6).warn_schedule()  # warm-up 5 < 6 epochs: pld runs in the last one
        TrainConfig(sampler="uniform", epochs=3).warn_schedule()
        TrainConfig.from_dict({"sampler": "pld", "epochs": 2})  # reading a saved config does not warn
    with pytest.warns(UserWarning, match=r"pld_warmup_epochs \(5\) is not below epochs \(2\)"):
        assert main(["-q", "compare", "--losses", "bpr", "--samplers", "uniform", "pld", "--epochs", "2",
                     "--dim", "4", "--synthetic-users", "100", "--synthetic-items", "60",
                     "--out", str(tmp_path / "cmp")]) == 0
