"""overgmm._errors: a bad value said as its place and its advice, kept through pickling
(Dask workers raise them) and re-advised by another face."""

from __future__ import annotations

import pickle

import pytest

from overgmm._errors import FIT_ADVICE, BadValue
from overgmm._validation import NonFiniteValue
from overgmm.csvfile import BadCell


@pytest.mark.parametrize(
    "err",
    [
        BadValue("f.parquet: row 5, column 2 ('h') is missing"),
        BadValue("somewhere", "do this instead"),
        NonFiniteValue("non-finite value inf at row 3", 3, 1, float("inf")),
        BadCell("f.csv: row 2 (line 3), column 1 ('x') is 'abc'", 2, 1, FIT_ADVICE + " (or pass --allow-missing)"),
    ],
)
def test_a_bad_value_keeps_its_place_and_advice_through_pickling(err):
    assert str(err) == f"{err.where}; {err.advice}"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err) and back.advised("x") == f"{err.where}; x"
    for name in ("row", "column", "value"):
        assert getattr(back, name, None) == getattr(err, name, None)
    assert isinstance(back, ValueError)


def test_the_default_advice_is_fits():
    assert str(BadValue("here")) == "here; remove or impute it before fitting"
