"""Coverage of every flip-rate interval on many simulated data sets with a known flip rate.

The simulations and their grid live in benchmarks/flip_rate_coverage.py (which writes the full table,
benchmarks/results/flip_rate_estimates.md); each cell runs an estimator's vectorised form on ``trials``
independent data sets at once. What must hold, in every cell:

- the 95% interval covers the truth in at least 92% of trials (nominal 95%; 400 trials give a standard error
  of about 0.011), refused estimates included (they keep their interval, [0, 1/2] when nothing is identified);
- no value is ever >= 1/2;
- ``flip_rate="auto"`` (:func:`robustrec.noise.precise_enough`) accepts an interval that misses the truth in
  at most 8% of trials; where it accepts at least two thirds of the trials, the accepted ones cover >= 90%;
- where the data cannot identify ε (a scorer at e = 0.45 with at most 500 clean pairs, two annotators at
  ε = 0.4 with 200 pairs), ``auto`` refuses in at least 95% (scorer) and 90% (agreement) of trials.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from robustrec.noise import FlipRateBounds, scorer_flip_rate_bounds


def _load_simulations():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "flip_rate_coverage.py"
    spec = importlib.util.spec_from_file_location("flip_rate_coverage", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


coverage = _load_simulations()

TRIALS = 400


def _check_cells(cells):
    assert cells
    for c in cells:
        assert c.coverage >= 0.92, c
        assert not c.max_value >= 0.5, c
        assert c.accepted_missed <= 0.08, c
        if c.accepted >= 2 / 3:
            assert c.coverage_accepted >= 0.9, c


@pytest.fixture(scope="module")
def scorer_cells():
    return coverage.scorer_cells(TRIALS, np.random.default_rng(0))


def test_scorer_grid_covers(scorer_cells):
    assert len(scorer_cells) == len(coverage.SIZES) * len(coverage.CLEAN_SHARES) * 25
    _check_cells(scorer_cells)


def test_scorer_near_chance_is_refused_and_a_good_scorer_accepted(scorer_cells):
    for c in scorer_cells:
        n_clean = int(c.setting.split("clean=")[1])
        if c.setting.startswith("e=0.45") and n_clean <= 500:
            assert c.accepted <= 0.05, c
        if c.setting.startswith("e=0.05") and c.n == 2000 and c.flip_rate <= 0.3:
            assert c.accepted >= 0.95 and c.coverage_accepted >= 0.9, c


def test_agreement_grid_covers_and_refuses():
    cells = coverage.agreement_cells(TRIALS, np.random.default_rng(1))
    _check_cells(cells)
    weak = next(c for c in cells if c.n == 200 and c.flip_rate == 0.4)
    assert weak.accepted <= 0.1, weak


def test_confident_learning_grid_covers():
    cells = coverage.confident_learning_cells(100, np.random.default_rng(2))
    _check_cells(cells)
    # without clean pairs, a weak scorer never lets auto train: the interval [0, u] is as wide as d
    assert all(c.accepted == 0 for c in cells if c.setting.endswith("e=0.45"))


def test_dawid_skene_cells_cover(monkeypatch):
    # two cells in the default suite (the full grid takes ~30 s: benchmarks/flip_rate_coverage.py)
    monkeypatch.setattr(coverage, "SIZES", (2000,))
    monkeypatch.setattr(coverage, "FLIP_RATES", (0.1, 0.4))
    cells = coverage.dawid_skene_cells(100, np.random.default_rng(3), n_resamples=200)
    _check_cells(cells)
    assert cells[0].accepted == 1.0 and cells[1].accepted <= 0.5


def test_a_narrowed_interval_fails_the_check():
    """The checks can fail: the same scorer cells with intervals shrunk to half their width do."""
    rng = np.random.default_rng(0)
    n, n_clean, e, eps = 2000, 500, 0.25, 0.2
    d = rng.binomial(n, e * (1 - eps) + eps * (1 - e), TRIALS) / n
    b = scorer_flip_rate_bounds(d, n, rng.binomial(n_clean, e, TRIALS) / n_clean, n_clean)
    mid, half = (b.ci_low + b.ci_high) / 2, (b.ci_high - b.ci_low) / 4
    narrowed = FlipRateBounds(b.value, mid - half, mid + half, b.identifiable)
    with pytest.raises(AssertionError):
        _check_cells([coverage.summarise("scorer", "narrowed", n, eps, narrowed)])
    _check_cells([coverage.summarise("scorer", "as computed", n, eps, b)])
