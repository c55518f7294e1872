"""Options from config files (``--config``) and the data options of the CLI (split, k-core, columns, separator,
RecBole ``.inter``)."""

import json

import numpy as np
import pandas as pd
import pytest

from robustrec import data
from robustrec.cli import main

TINY = ["--synthetic-users", "300", "--synthetic-items", "200", "--dim", "8", "--epochs", "3"]
TIMING = ("train_seconds", "seconds_per_epoch")


def _metrics(run) -> dict:
    return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k not in TIMING}


def _config(run) -> dict:
    return json.loads((run / "config.json").read_text())


# ---------------------------------------------------------------- config files
@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("config") / "run"
    assert main(["-q", "train", *TINY, "--seed", "3", "--lr", "0.1", "--validation-fraction", "0.1",
                 "--eval-every", "1", "--loss", "bce", "--ks", "5", "20", "--out", str(out)]) == 0
    return out


def test_a_runs_config_json_reproduces_its_metrics(first_run, tmp_path, capsys):
    again = tmp_path / "again"
    assert main(["train", "--config", str(first_run / "config.json"), "--out", str(again)]) == 0
    assert f"options from {first_run / 'config.json'}" in capsys.readouterr().err
    assert _config(again) == _config(first_run)
    assert _metrics(again) == _metrics(first_run)  # exactly: same seed, same split


def test_flags_override_the_file(first_run, tmp_path):
    out = tmp_path / "other"
    assert main(["-q", "train", "--config", str(first_run / "config.json"), "--dim", "4", "--no-has-header",
                 "--epochs", "1", "--out", str(out)]) == 2  # has_header applies to logs only: checked, not ignored
    assert main(["-q", "train", "--epochs", "1", "--config", str(first_run / "config.json"), "--dim", "4",
                 "--out", str(out)]) == 0
    got, base = _config(out), _config(first_run)
    assert got["train"]["dim"] == 4 and got["train"]["epochs"] == 1
    assert {k: v for k, v in got["train"].items() if k not in ("dim", "epochs")} == \
        {k: v for k, v in base["train"].items() if k not in ("dim", "epochs")}
    assert got["data"] == base["data"]


def test_yaml_flat_and_sections_and_help_shows_the_files_values(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("loss: nbpo\nphi-l2: 1e-2\nks: [5, 10]\ntrain:\n  dim: 12\n"
                                     "data:\n  synthetic_users: 250\n  test_fraction: 0.3\n")
    with pytest.raises(SystemExit) as done:
        main(["train", "--config", str(tmp_path / "c.yaml"), "--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "embedding dimension (default: 12)" in shown and "(default: [5, 10])" in shown
    assert "users of the synthetic default (default: 250)" in shown
    from robustrec.cli import build_parser
    from robustrec.cli.options import from_namespace
    from robustrec.config import TrainConfig

    args = build_parser().parse_args(["train", "--config", str(tmp_path / "c.yaml"), "--ks", "20"])
    config = from_namespace(TrainConfig, args)
    assert (config.loss, config.phi_l2, config.dim, config.ks) == ("nbpo", 0.01, 12, (20,))
    assert (args.synthetic_users, args.test_fraction, args.path) == (250, 0.3, None)


@pytest.mark.parametrize("text, message", [
    ("lrr: 0.1\n", "c.yaml: unknown key 'lrr' (did you mean 'lr'?)"),
    ("train:\n  dimm: 8\n", "c.yaml: unknown key 'train.dimm' (did you mean 'train.dim'?)"),
    ("epochs: many\n", "c.yaml: epochs: invalid int 'many'"),
    ("epochs: 2.5\n", "c.yaml: epochs: invalid int 2.5"),
    ("loss: nope\n", "c.yaml: loss: 'nope' is not one of"),
    ("lr: null\n", "c.yaml: lr must not be null"),
    ("resume: 3\n", "c.yaml: resume must be true or false"),
    ("ks: []\n", "c.yaml: ks needs at least one value"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("epochs: [1\n", "c.yaml, line 2, column 1: malformed YAML"),
])
def test_bad_config_files_are_one_line_errors(tmp_path, capsys, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(SystemExit) as done:
        main(["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")])
    assert done.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_json_and_missing_files(tmp_path, capsys):
    (tmp_path / "c.json").write_text('{"epochs": 2,\n "dim": }')
    for path, message in ((tmp_path / "c.json", "c.json, line 2, column 9: malformed JSON"),
                          (tmp_path / "none.yaml", "none.yaml: no such config file"),
                          (tmp_path / "c.toml", "must end with one of ['.yaml', '.yml', '.json']")):
        if path.suffix == ".toml":
            path.write_text("x = 1")
        with pytest.raises(SystemExit):
            main(["train", "--config", str(path)])
        assert message in capsys.readouterr().err


def test_compare_and_noise_read_config_files_too(first_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--config", str(first_run / "config.json"), "--losses", "bpr", "--epochs", "1",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    ignored = err.split("ignored, as this command sets them from its own options: ")[1].splitlines()[0]
    assert set(ignored.split(", ")) == {"train.model", "train.loss", "train.sampler", "train.seed", "data.seed",
                                        "data.inject_noise"}
    runs = pd.read_csv(out / "runs.csv")
    run_config = _config(out / "r0" / "seed0" / "mf-bpr-uniform")
    assert run_config["train"]["dim"] == 8 and run_config["train"]["lr"] == 0.1 and len(runs) == 1
    (tmp_path / "n.yaml").write_text("crossfit:\n  n_folds: 3\n  epochs: 2\nresamples: 50\n")
    with pytest.raises(SystemExit):
        main(["noise", "estimate", "--config", str(tmp_path / "n.yaml"), "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "cross-fitting folds (>= 2) (default: 3)" in shown and "(default: 50)" in shown


def test_a_deprecated_key_in_a_config_file_still_works(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"train": {"flip_l2": 0.5}}))
    from robustrec.cli import build_parser

    with pytest.warns(FutureWarning, match="train.flip_l2 is deprecated; use phi_l2"):
        args = build_parser().parse_args(["train", "--config", str(tmp_path / "old.json")])
    assert args.phi_l2 == 0.5


def test_current_phi_keys_in_a_config_file_raise_no_deprecation_warning(tmp_path):
    """A run's config.json holds phi_l2/phi_dim/phi_prior; they are current names, not the deprecated flip_*."""
    import warnings

    (tmp_path / "new.json").write_text(json.dumps({"train": {"phi_l2": 0.5, "phi_dim": 8, "phi_prior": 0.2}}))
    from robustrec.cli import build_parser

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        args = build_parser().parse_args(["train", "--config", str(tmp_path / "new.json")])
    assert (args.phi_l2, args.phi_dim, args.phi_prior) == (0.5, 8, 0.2)


# ---------------------------------------------------------------- data options
@pytest.fixture(scope="module")
def stamped_log(tmp_path_factory):
    """A ';'-separated log with its own column names, string ids and timestamps: 60 users, 50 items."""
    rng = np.random.default_rng(0)
    n = 1500
    users = rng.integers(0, 60, n)
    frame = pd.DataFrame({"who": [f"u{u}" for u in users], "what": [f"i{i}" for i in rng.integers(0, 50, n)],
                          "stars": rng.integers(1, 6, n), "when": rng.permutation(n) + 1_000_000})
    path = tmp_path_factory.mktemp("log") / "events.csv"
    frame.to_csv(path, sep=";", index=False)
    return path, frame


COLUMNS = ["--user-col", "who", "--item-col", "what", "--rating-col", "stars", "--timestamp-col", "when",
           "--sep", ";"]


def _train(tmp_path, path, *options, name="run"):
    out = tmp_path / name
    code = main(["-q", "train", "--data", str(path), *COLUMNS, *options, "--epochs", "1", "--dim", "4",
                 "--out", str(out)])
    return code, out


def _split_of(run):
    return data.prepare_data(data.DataSpec(**_config(run)["data"])).split


def test_leave_last_out_holds_out_each_users_latest_interaction(stamped_log, tmp_path):
    path, frame = stamped_log
    code, out = _train(tmp_path, path, "--split", "leave-last-out")
    assert code == 0
    split = _split_of(out)  # the run directory rebuilds the same split
    test = split.test.to_frame()
    dedup = frame.groupby(["who", "what"], as_index=False)["when"].max()
    latest = dedup.loc[dedup.groupby("who")["when"].idxmax()]
    assert sorted(zip(test.user, test.item)) == sorted(zip(latest.who, latest.what))
    assert _config(out)["data"]["split"] == "leave-last-out"


def test_temporal_split_cuts_the_log_by_time(stamped_log, tmp_path):
    path, _ = stamped_log
    code, out = _train(tmp_path, path, "--split", "temporal", "--test-fraction", "0.25")
    assert code == 0
    split = _split_of(out)
    assert split.train.timestamps.data.max() < split.test.timestamps.data.min()
    assert split.test.n_interactions > 0.2 * (split.train.n_interactions + split.test.n_interactions)


def test_kcore_keeps_users_and_items_with_enough_interactions(stamped_log, tmp_path):
    path, frame = stamped_log
    sparse = frame[frame.who.isin([f"u{u}" for u in range(0, 60, 2)]) | (frame.index % 7 == 0)]
    sparse.to_csv(tmp_path / "sparse.csv", sep=";", index=False)
    code, out = _train(tmp_path, tmp_path / "sparse.csv", "--kcore", "10")
    assert code == 0
    split = _split_of(out)
    counts = split.train.user_counts() + split.test.user_counts()
    items = split.train.item_counts() + split.test.item_counts()
    assert counts.min() >= 10 and items.min() >= 10
    pairs = sparse.drop_duplicates(["who", "what"])
    assert split.n_users < pairs.who.nunique()  # users were dropped


def test_inter_files_train_and_recommend_with_their_token_ids(tmp_path, capsys):
    rng = np.random.default_rng(1)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{100 + u}\t{500 + i}\t{r}\t{t}" for t, (u, i, r) in
              enumerate(zip(rng.integers(0, 40, 900), rng.integers(0, 30, 900), rng.integers(1, 6, 900)))]
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy.inter").write_text("\n".join(lines) + "\n")
    assert main(["-q", "train", "--data", str(folder), "--split", "leave-last-out", "--epochs", "1", "--dim", "4",
                 "--out", str(tmp_path / "run")]) == 0
    assert _config(tmp_path / "run")["data"]["format"] == "auto"
    assert _split_of(tmp_path / "run").report.format == "inter"
    (tmp_path / "users.txt").write_text("100\n139\n")
    capsys.readouterr()
    assert main(["-q", "recommend", str(tmp_path / "run"), "--users", str(tmp_path / "users.txt"), "-N", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "user,item,rank,score" and lines[1].startswith("100,5") and len(lines) == 5


def test_a_tab_separator_can_be_typed(tmp_path):
    (tmp_path / "log.txt").write_text("".join(f"{u}\t{(u * 3 + k) % 20}\n" for u in range(30) for k in range(5)))
    assert main(["-q", "train", "--data", str(tmp_path / "log.txt"), "--format", "csv", "--sep", "\\t",
                 "--no-has-header", "--epochs", "1", "--dim", "4", "--out", str(tmp_path / "run")]) == 0
    assert _config(tmp_path / "run")["data"]["sep"] == "\t"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n_users"] == 30


@pytest.mark.parametrize("options, message", [
    (["--split", "temporal"], "apply to a log (csv, parquet, inter), not to the synthetic default"),
    (["--kcore", "3"], "kcore=3: apply to a log"),
    (["--kcore", "-1"], "--kcore must be >= 0"),
])
def test_log_options_on_data_with_its_own_split_are_errors(tmp_path, capsys, options, message):
    assert main(["-q", "train", *TINY, *options, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_bad_log_input_still_names_file_line_column_and_value(stamped_log, tmp_path, capsys):
    path, frame = stamped_log
    assert main(["-q", "train", "--data", str(path), "--user-col", "who", "--item-col", "what", "--sep", ";",
                 "--split", "temporal", "--out", str(tmp_path / "a")]) == 2
    assert "needs timestamps" in capsys.readouterr().err
    bad = frame.astype({"when": object})
    bad.loc[7, "when"] = "yesterday-ish"
    bad.to_csv(tmp_path / "bad.csv", sep=";", index=False)
    assert _train(tmp_path, tmp_path / "bad.csv", name="b")[0] == 2
    assert "bad.csv, line 9, column 'when': timestamp must be a finite number (got 'yesterday-ish')" in \
        capsys.readouterr().err
