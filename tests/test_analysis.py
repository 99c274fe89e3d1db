"""Analysis of recorded runs (overgmm.analysis): fits against known lines, crossings,
the Polyak envelope and the loss at a budget."""

import math

import numpy as np
import pandas as pd
import pytest

from overgmm import analysis as A


def test_line_fits_recover_known_slopes():
    x = np.arange(1.0, 11.0)
    b, r2 = A.line_fit(x, 3.0 - 2.0 * x)
    assert b == pytest.approx(-2.0, rel=1e-12) and r2 == pytest.approx(1.0, abs=1e-12)
    assert A.loglog_slope(x, 5.0 * x**-1.5) == pytest.approx(-1.5, rel=1e-12)
    slope, r2 = A.loglog_fit(np.r_[x, -1.0], np.r_[x**0.5, 2.0])  # a non-positive x is left out
    assert slope == pytest.approx(0.5, rel=1e-12) and r2 == pytest.approx(1.0)
    rate, r2 = A.semilog_fit(x, 10.0 ** (1 - 0.25 * x))
    assert rate == pytest.approx(-0.25, rel=1e-12) and r2 == pytest.approx(1.0)


def test_fits_with_too_few_points_are_nan():
    assert all(math.isnan(v) for v in A.line_fit([1.0], [2.0]))
    assert math.isnan(A.loglog_slope([1.0, 2.0], [0.0, -1.0]))
    assert all(math.isnan(v) for v in A.semilog_fit([1, 2], [1.0, 0.1]))
    assert math.isnan(A.line_fit([1.0, 2.0, 3.0], [4.0, 4.0, 4.0])[1])  # no spread: R^2 undefined


def test_crossings_and_budgets():
    assert A.first_below([0, 1, 2, 3], [5.0, 3.0, 1.0, 0.5], 1.0) == 2.0
    assert A.first_below([0, 1], [5.0, 3.0], 1.0) == math.inf
    hist = pd.DataFrame(
        {"n": [1, 1, 1, 2, 2], "trial": [0, 0, 0, 0, 0], "step": [0, 1, 2, 0, 1], "loss": [1.0, 0.1, 0.01, 1.0, 0.5]}
    )
    table = A.first_below_by(hist, 0.2, ["n"])
    assert table.set_index("n")["time"].to_dict() == {1: 1.0, 2: math.inf}
    run = pd.DataFrame({"grad_evals": [0, 10, 20, 30], "loss": [1.0, 0.5, 0.2, 0.1], "polyak": [0, 0, 1, 0]})
    assert A.loss_at(run, 25) == 0.2 and math.isnan(A.loss_at(run, -1))
    assert A.evals_to(run, 0.3) == 20.0
    assert A.window_slope(run.rename(columns={"grad_evals": "step"}), 10, 30) < 0


def test_polyak_envelope_rate_and_rises():
    # short steps halve the loss; every fifth record is a long step that divides it by 10
    loss, polyak = [], []
    value = 1.0
    for k in range(40):
        long = k % 5 == 4
        value *= 0.1 if long else 0.5
        loss.append(value)
        polyak.append(long)
    df = pd.DataFrame({"grad_evals": np.arange(40.0), "loss": loss, "polyak": polyak})
    env = A.envelope(df)
    assert len(env) == 8 and env.index.tolist() == [3, 8, 13, 18, 23, 28, 33, 38]
    factor, r2, decades = A.envelope_rate(df)
    assert factor == pytest.approx(0.1 * 0.5**4, rel=1e-12) and r2 == pytest.approx(1.0) and decades > 10
    assert A.long_step_rises(df) == 0
    df.loc[9, "loss"] = 10.0  # a long step that raised the loss
    assert A.long_step_rises(df) == 1
