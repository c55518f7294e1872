"""``python -m robustrec noise {estimate,flag}`` end to end on small synthetic logs, and its glue.

Runs are tiny (synthetic default at 400 users × 300 items, 2 folds, 5 epochs, dim 32 — the CLI's defaults of 5
folds × 20 epochs × dim 64 are for real logs) so the file stays under 90 s on 2 shared cores. A model that small
is weak (noise-score AUC ≈ 0.6), and the noisy-share *estimate* is only as
good as the cross-fitted model (see benchmarks/results/noise_estimates.md for real-size numbers), so these
tests check the plumbing and the ranking, not the estimate's accuracy: JSON keys, injected share = injected /
all, files written and ranked, cleaned log smaller by exactly the stated count, and injected interactions
over-represented at the top of the ranking (top 10% at least 1.3× the base rate, with r = 0.5).
"""

import json

import numpy as np
import pandas as pd
import pytest

from robustrec.cli import main
from robustrec.crossfit import fold_assignment, interaction_losses, sampled_unobserved

SMALL = ["--synthetic-users", "400", "--synthetic-items", "300", "--folds", "2", "--epochs", "5", "--dim", "32",
         "--batch-size", "512", "--resamples", "10"]


def _json(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # one JSON object, nothing else on stdout
    return json.loads(out[0])


@pytest.fixture(scope="module")
def estimates():
    """JSON of ``noise estimate`` with and without injection (computed once for the module)."""
    import contextlib
    import io

    results = {}
    for r in ("0.5", "0"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["noise", "estimate", "--json", "--inject-noise", r, *SMALL]) == 0
        lines = buf.getvalue().strip().splitlines()
        assert len(lines) == 1, lines
        results[r] = json.loads(lines[0])
    return results


def test_estimate_json_keys_and_injected_share(estimates):
    inj = estimates["0.5"]
    for key in ("noisy_share", "ci_low", "ci_high", "injected_share", "n_interactions", "method", "n_injected"):
        assert key in inj, key
    assert 0 <= inj["ci_low"] <= inj["ci_high"] <= 1 and 0 <= inj["noisy_share"] <= 1  # bootstrap: need not hold the point
    assert inj["injected_share"] == pytest.approx(inj["n_injected"] / inj["n_interactions"])
    assert 0.3 < inj["injected_share"] <= 0.5 / 1.5  # floor(0.5·|u|) added per user: at most 1/3 of the log
    clean = estimates["0"]
    assert "injected_share" not in clean and "known_noisy_share" not in clean
    # the same log plus the injected interactions
    assert inj["n_interactions"] == clean["n_interactions"] + inj["n_injected"]


def test_tiny_model_still_ranks_injected_items_above_chance(estimates):
    assert estimates["0.5"]["injected_auc"] > 0.55


def test_default_method_is_storey_and_conservative(estimates):
    inj, clean = estimates["0.5"], estimates["0"]
    assert inj["estimator"] == "storey" and inj["method"].startswith("storey_pi0(lambda=")
    assert 0.0 <= clean["noisy_share"] <= inj["noisy_share"] <= 1.0
    # Storey's π0 is biased up (a weak tiny model leaves genuine interactions looking random), never down
    # beyond sampling error: the injected share is at most a little above the upper bound.
    assert inj["ci_high"] >= inj["injected_share"] - 0.05


def test_mixture_method_still_available(capsys):
    res = _json(capsys, ["noise", "estimate", "--json", "--method", "mixture", "--inject-noise", "0.3", *SMALL])
    assert res["estimator"] == "mixture" and res["method"] == "loss_mixture"
    # a percentile-bootstrap interval need not contain the point estimate; it must be a proper interval of shares
    assert 0 <= res["ci_low"] <= res["ci_high"] <= 1 and 0 <= res["noisy_share"] <= 1


def test_flag_writes_ranked_file_and_cleaned_log(tmp_path, capsys):
    out = tmp_path / "flag.csv"
    res = _json(capsys, ["noise", "flag", "--json", "--inject-noise", "0.5", "--drop-top", "0.1", "--out", str(out),
                         *SMALL])
    ranked = pd.read_csv(out)
    assert list(ranked.columns) == ["user", "item", "noise_score", "rank", "is_injected"]
    assert len(ranked) == res["n_interactions"]
    assert (ranked["rank"].to_numpy() == np.arange(1, len(ranked) + 1)).all()
    assert (np.diff(ranked["noise_score"].to_numpy()) <= 0).all()
    assert ranked["is_injected"].sum() == res["n_injected"]
    clean = pd.read_csv(tmp_path / "flag.clean.csv")
    n_drop = round(0.1 * len(ranked))
    assert res["n_dropped"] == n_drop and len(clean) == len(ranked) - n_drop
    assert list(clean.columns) == ["user", "item"]
    # the cleaned log is the ranked file minus its top n_drop
    dropped = set(map(tuple, ranked.iloc[:n_drop][["user", "item"]].to_numpy()))
    kept = set(map(tuple, clean.to_numpy()))
    assert not dropped & kept and len(kept) == len(clean)
    # injected interactions are over-represented at the top of the ranking
    base = ranked["is_injected"].mean()
    top = ranked["is_injected"].iloc[:n_drop].mean()
    assert top >= 1.3 * base, (top, base)
    assert res["precision_of_dropped"] == pytest.approx(top)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_flag_auto_drops_estimated_share(tmp_path, capsys):
    out = tmp_path / "f.csv"
    res = _json(capsys, ["noise", "flag", "--json", "--out", str(out), "--clean-out", str(tmp_path / "c.csv"),
                         "--synthetic-users", "300", "--synthetic-items", "200", "--folds", "2", "--epochs", "3", "--dim", "32",
                         "--resamples", "5"])
    assert res["n_dropped"] == round(res["noisy_share"] * res["n_interactions"])
    assert len(pd.read_csv(tmp_path / "c.csv")) == res["n_interactions"] - res["n_dropped"]


def test_known_noise_from_deca_ratings(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [(u, i, int(rng.integers(1, 6))) for u in range(1, 41) for i in rng.choice(np.arange(1, 61), 15, replace=False)]
    d = tmp_path / "deca"
    d.mkdir()
    (d / "x.train.rating").write_text("".join(f"{u}\t{i}\t{r}\n" for u, i, r in rows))
    (d / "x.test.negative").write_text("1\t1\t5\n")
    res = _json(capsys, ["noise", "estimate", "--json", "--data", str(d), "--folds", "2", "--epochs", "2", "--dim", "32",
                         "--resamples", "5"])
    truth = np.mean([r < 4 for _, _, r in rows])
    assert res["known_noisy_share"] == pytest.approx(truth)
    assert "known_noise_auc" in res and "injected_share" not in res


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "/nonexistent/log.csv"], "no such file"),
        (["--inject-noise", "-0.1"], "inject-noise"),
        (["--folds", "1"], "folds"),
        (["--dim", "30"], "multiple of 4"),
    ],
)
def test_bad_input_gives_clear_error(argv, message, capsys):
    assert main(["noise", "estimate", "--json", *argv]) == 2
    assert message in capsys.readouterr().err


def test_bad_drop_share_rejected_by_parser(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["noise", "flag", "--out", str(tmp_path / "x.csv"), "--drop-top", "1.5"])
    assert "share in [0, 1]" in capsys.readouterr().err


def test_unparseable_csv_is_a_data_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\n1,2\n")
    assert main(["noise", "estimate", "--json", "--data", str(bad)]) == 2
    assert "error" in capsys.readouterr().err


def test_fold_assignment_balances_each_user():
    users = np.repeat(np.arange(50), np.arange(1, 51))
    fold = fold_assignment(users, 3, seed=1)
    counts = np.stack([np.bincount(users[fold == k], minlength=50) for k in range(3)])
    assert (counts.max(0) - counts.min(0) <= 1).all()
    assert (counts[:, 2:] > 0).all()  # users with >= 3 interactions are in every fold


def test_sampled_negatives_are_unobserved():
    import scipy.sparse as sp

    m = sp.random(30, 40, density=0.5, format="csr", random_state=0)
    m.data[:] = 1
    users = np.repeat(np.arange(30), 5)
    neg = sampled_unobserved(m, users, 20, np.random.default_rng(0))
    assert not m.toarray()[users[:, None], neg].any()


def test_pvalues_of_random_items_are_uniform_and_rank_is_their_probit():
    from scipy.special import ndtri
    from scipy.stats import kstest

    rng = np.random.default_rng(1)
    uf, itf = rng.standard_normal((50, 8)), rng.standard_normal((300, 8))
    users, items = rng.integers(0, 50, 5000), rng.integers(0, 300, 5000)
    neg = rng.integers(0, 300, (5000, 20))
    p = interaction_losses(uf, itf, users, items, neg, kind="pvalue", rng=np.random.default_rng(2))
    assert kstest(p, "uniform").pvalue > 0.01
    z = interaction_losses(uf, itf, users, items, neg, kind="rank", rng=np.random.default_rng(2))
    np.testing.assert_allclose(z, ndtri(p))


def test_rank_loss_of_random_items_is_standard_normal():
    rng = np.random.default_rng(0)
    uf, itf = rng.standard_normal((100, 8)), rng.standard_normal((500, 8))
    users = rng.integers(0, 100, 20000)
    items = rng.integers(0, 500, 20000)  # exchangeable with the negatives: k uniform on {0..m}
    neg = rng.integers(0, 500, (20000, 50))
    z = interaction_losses(uf, itf, users, items, neg, kind="rank", rng=rng)
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03
    best = np.argmax(uf @ itf.T, axis=1)[users]  # each user's favourite item: low loss
    assert interaction_losses(uf, itf, users, best, neg, kind="rank", rng=rng).mean() < -1.5
