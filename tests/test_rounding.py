"""The rounding grid of recorded data (overgmm.rounding) and the estimator's floor from it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overgmm import chunks as C
from overgmm import rounding, streaming
from overgmm.estimator import OverparamGMM


def test_grid_of_integers_decimals_offsets_and_continuous_values():
    rng = np.random.default_rng(0)
    X = np.c_[
        rng.integers(0, 17, 200),  # pixel intensities: 1
        rng.integers(0, 50, 200) * 2.0 + 1.0,  # odd numbers: 2
        rng.integers(0, 80, 200) * 0.1 + 4.05,  # lengths to 0.1 cm, offset 0.05: 0.1
        rng.normal(size=200),  # continuous: none
        np.full(200, 3.0),  # one value: none
        rng.integers(0, 9, 200) * 0.25,  # quarters: 0.25
    ]
    np.testing.assert_allclose(rounding.grid(X), [1.0, 2.0, 0.1, 0.0, 0.0, 0.25], rtol=1e-12)


def test_grid_ignores_missing_values_and_rows_of_zero_weight():
    X = np.array([[1.0], [2.0], [np.nan], [4.0], [2.5]])
    assert rounding.grid(X)[0] == 0.5
    assert rounding.grid(X, w=np.array([1.0, 1.0, 1.0, 1.0, 0.0]))[0] == 1.0


def test_values_with_more_decimals_or_beyond_float_precision_have_no_grid():
    assert rounding.grid(np.array([[0.1234567], [0.2]]))[0] == 0.0  # 7 decimals
    assert rounding.grid(np.array([[1e300], [2e300]]))[0] == 0.0
    # large values with fractional parts (epoch seconds) are continuous, not on a grid of 1
    t = 1.7e9 + np.random.default_rng(0).normal(scale=0.3, size=(200, 1))
    assert rounding.grid(t)[0] == 0.0
    # chunks whose values would overflow at the finest scale: no grid, as in memory
    parts = [rounding.grid_parts(np.array([[0.0], [1e13]])), rounding.grid_parts(np.array([[1e-6]]))]
    assert rounding.combine(parts)[0] == rounding.grid(np.array([[0.0], [1e13], [1e-6]]))[0] == 0.0
    np.testing.assert_allclose(rounding.sheppard_variance(np.array([0.0, 1.0, 0.1])), [0.0, 1 / 12, 0.01 / 12])


def test_float32_data_are_read_to_float32_precision():
    """float32 data on a grid of 0.1 keep it after the cast to float64 (0.1 in float32 is
    1.5e-9 off the grid); continuous float32 data have none, as do float32 values too large
    for float32 to know them to a hundredth of a step."""
    rng = np.random.default_rng(1)
    lengths = (rng.integers(0, 80, (300, 1)) * 0.1 + 4.3).astype(np.float32)
    assert np.max(np.abs(lengths.astype(np.float64) * 10 - np.rint(lengths.astype(np.float64) * 10))) > 1e-7
    np.testing.assert_allclose(rounding.grid(lengths.astype(np.float64)), [0.1], rtol=1e-12)
    assert rounding.grid(rng.normal(size=(300, 1)).astype(np.float32).astype(np.float64))[0] == 0.0
    big = (rng.integers(0, 80, (300, 1)) * 0.1 + 3000.0).astype(np.float32).astype(np.float64)
    assert rounding.grid(big)[0] == 0.0  # 30000 steps from 0: beyond float32's 1e-2 of a step
    # the estimator takes float32 input as it is and floors at the grid's variance
    short = (rng.integers(0, 30, (300, 1)) * 0.1 + 4.3).astype(np.float32)  # var_floor * var < 0.1^2 / 12
    est = OverparamGMM(covariance_type="diag", random_state=0).fit(short)
    assert est._floor[0] * est._scale[0] ** 2 == pytest.approx(0.01 / 12, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    decimals=st.integers(0, 4),
    step=st.integers(1, 7),
    offset=st.integers(-50, 50),
    cuts=st.lists(st.integers(1, 39), max_size=4),
    seed=st.integers(0, 2**16),
)
def test_the_grid_over_chunks_is_the_grid_of_all_rows(decimals, step, offset, cuts, seed):
    rng = np.random.default_rng(seed)
    ints = offset + step * rng.integers(0, 30, size=(40, 2))
    X = ints / 10.0**decimals
    whole = rounding.grid(X)
    bounds = [0, *sorted(set(cuts)), 40]
    parts = [rounding.grid_parts(X[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    np.testing.assert_allclose(rounding.combine(parts), whole, rtol=1e-12)
    # the grid divides every difference and is the largest such step
    for j in range(2):
        k = np.gcd.reduce(ints[:, j] - ints[:, j].min())
        assert whole[j] == pytest.approx(k / 10.0**decimals, rel=1e-12) if k else whole[j] == 0.0


def test_streaming_scan_reads_the_same_grid_as_memory():
    rng = np.random.default_rng(1)
    X = np.c_[rng.integers(0, 5, 1000) * 0.5, rng.normal(size=1000)]
    moments = streaming.scan(C.ArrayChunks(X, chunk_rows=300))
    np.testing.assert_array_equal(moments.grid, rounding.grid(X))


def _pixels(n, seed, rare=0.0):
    """Two clusters of 'images' with integer values: a feature that is 0 in one cluster
    but for a rare 1 (the near-constant pixels of digits)."""
    rng = np.random.default_rng(seed)
    a = np.c_[rng.integers(6, 12, n), (rng.random(n) < rare).astype(float)]
    b = np.c_[rng.integers(0, 5, n), rng.integers(3, 9, n)]
    return np.vstack([a, b]).astype(float)


def test_the_floor_keeps_a_rare_value_on_a_grid_from_costing_thousands_of_nats():
    train, test = _pixels(300, 0), _pixels(300, 1, rare=0.03)
    test = test[(test[:, 1] == 1.0) & (test[:, 0] >= 6)]  # the rare pixel, in new rows
    on = OverparamGMM(covariance_type="diag", random_state=0).fit(train)
    off = OverparamGMM(covariance_type="diag", random_state=0, rounding_floor=False).fit(train)
    # the floor, in the fit's units: at least a step's Sheppard variance on both features
    assert np.all(on._floor * on._scale**2 >= 1 / 12 * (1 - 1e-12))
    assert np.all(off._floor * off._scale**2 < 1 / 12)
    # one step off a tied value: about 1 / (2 * 1/12) = 6 nats with the floor, about 55
    # with var_floor's 1e-3 of the feature's variance alone (more with the default 1e-4)
    assert len(test) > 3 and on.score_samples(test).min() > -15
    assert off.score_samples(test).max() < -40
    chunked = OverparamGMM(covariance_type="diag", random_state=0).fit(C.ArrayChunks(train, chunk_rows=128))
    np.testing.assert_allclose(chunked._floor, on._floor, rtol=1e-12)


def test_continuous_data_is_unaffected():
    X = np.random.default_rng(2).normal(size=(300, 3))
    a = OverparamGMM(covariance_type="diag", random_state=0).fit(X)
    b = OverparamGMM(covariance_type="diag", random_state=0, rounding_floor=False).fit(X)
    assert a.lower_bound_ == b.lower_bound_
    np.testing.assert_array_equal(a.means_, b.means_)


def test_rounding_floor_must_be_a_bool():
    with pytest.raises(ValueError, match="rounding_floor"):
        OverparamGMM(rounding_floor="yes").fit(np.zeros((20, 2)) + np.arange(20)[:, None])


def test_partial_fit_reads_the_grid_of_every_batch_so_far():
    """A first batch on even values (grid 2) floors at 4/12; a later batch with odd values
    makes the grid 1 and the floor 1/12 (in the units of X), as a fit of both batches."""
    rng = np.random.default_rng(4)
    even = rng.integers(0, 4, (200, 1)) * 2.0
    odd = rng.integers(0, 4, (200, 1)) * 2.0 + 1.0
    est = OverparamGMM(covariance_type="diag", random_state=0, n_components=3)
    est.partial_fit(even)
    assert est._floor[0] * est._scale[0] ** 2 == pytest.approx(4 / 12, rel=1e-9)
    est.partial_fit(odd)
    assert est._floor[0] * est._scale[0] ** 2 == pytest.approx(1 / 12, rel=1e-9)
    est.partial_fit(even)  # the grid stays that of all batches so far
    assert est._floor[0] * est._scale[0] ** 2 == pytest.approx(1 / 12, rel=1e-9)
    off = OverparamGMM(covariance_type="diag", random_state=0, n_components=3, rounding_floor=False)
    off.partial_fit(even)
    off.partial_fit(odd)
    assert off._floor[0] * off._scale[0] ** 2 < 0.1


def test_combined_part_carries_the_grid_of_its_rows():
    rng = np.random.default_rng(5)
    X = np.c_[rng.integers(0, 50, 300) * 0.5, rng.normal(size=300), rng.integers(0, 9, 300) * 3.0]
    X[:10, 2] = np.nan
    parts = [rounding.grid_parts(X[a:b]) for a, b in ((0, 100), (100, 180), (180, 300))]
    folded = rounding.combined_part(parts[:2])
    np.testing.assert_array_equal(rounding.combine([folded, parts[2]]), rounding.grid(X))
    np.testing.assert_array_equal(rounding.combine([folded]), rounding.grid(X[:180]))
