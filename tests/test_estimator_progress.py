"""The fit's progress bar: one bar over every stage, in the data's units, ending at the
real step count; silent by default."""

import re

import numpy as np
import pytest

from overgmm import OverparamGMM
from overgmm.estimator import _progress


@pytest.mark.parametrize("budget", [2**30, 1e4])  # in memory (a step per segment), in chunks (per pass)
def test_bar_ends_at_the_steps_taken_in_data_units(monkeypatch, capsys, budget):
    monkeypatch.setattr(_progress, "DELAY", 0.0)
    monkeypatch.setattr(_progress, "MIN_INTERVAL", 0.0)
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 5]) * 100.0  # far from unit scale
    est = OverparamGMM(random_state=0, verbose=1, memory_budget=budget).fit(X)
    err = capsys.readouterr().err
    last = re.split(r"[\r\n]+", err.strip())[-1]
    done, total = (int(v) for v in re.search(r"\| (\d+)/(\d+) \[", last).groups())
    assert done == total >= est.n_iter_  # the "auto" candidates' steps come first
    assert f"fit ({est.covariance_type_})" in last
    shown = float(re.search(r"log-likelihood/sample (-?[\d.e+-]+)", last).group(1))
    assert shown == pytest.approx(est.lower_bound_, rel=1e-5)  # not the standardized value
    assert "auto: spherical" in err and "auto: full" in err


def test_silent_by_default(capsys):
    X = np.random.default_rng(0).normal(size=(100, 2))
    OverparamGMM(covariance_type="diag", max_iter=20).fit(X)
    assert capsys.readouterr().err == ""
