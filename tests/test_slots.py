"""Dead component slots dropped between merge rounds on large data (estimator/_slots.py):
the bookkeeping for every covariance type, and the same fit with and without dropping."""

import numpy as np
import pytest

from overgmm import covariances as C
from overgmm.estimator import OverparamGMM, _slots
from overgmm.estimator import _fit as F
from overgmm.mixture import Mixture


def test_widths_are_powers_of_two_down_to_the_least():
    assert _slots.widths(25) == [16, 8] and _slots.widths(16) == [8] and _slots.widths(17) == [16, 8]
    assert _slots.widths(8) == [] and _slots.widths(3) == []
    lw = np.full((2, 25), -np.inf)
    lw[0, :12], lw[1, :3] = 0.0, 0.0
    s = Mixture.tree_unflatten("diag", (np.zeros((2, 25, 2)), lw, np.zeros((2, 25, 2))))
    assert _slots.width(s, np.array([True, True])) == 16  # the most live: 12
    assert _slots.width(s, np.array([False, True])) == 8  # a failed restart does not count; at least 8
    lw[0, :20] = 0.0
    assert _slots.width(s, np.array([True, True])) == 25  # no narrower bucket


@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical", "identity"])
def test_narrow_take_and_expand_keep_every_live_component_in_its_slot(kind):
    R, n, d = 2, 10, 3
    rng = np.random.default_rng(0)
    t = C.of(kind)
    params = t.zeros((R, n), d)
    params = None if params is None else rng.normal(size=np.shape(params))
    lw = np.log(rng.random((R, n)))
    lw[0, [1, 4, 5, 8]] = -np.inf  # 6 live
    lw[1, [0, 2, 3, 6, 7, 9]] = -np.inf  # 4 live
    student = Mixture.tree_unflatten(kind, (rng.normal(size=(R, n, d)), lw, params))
    per = kind != "tied"
    cov = (rng.normal(size=(R, n, d) if per else (R, d, d)), rng.normal(size=(R, n, d, d)) if kind == "full" else None)
    slots = _slots.Slots(n, R)
    order = slots.narrow(student, cov, 8)
    assert slots.width == 8 and order.shape == (R, 8)
    np.testing.assert_array_equal(order[0, :6], [0, 2, 3, 6, 7, 9])  # live first, in order
    np.testing.assert_array_equal(order[1, :4], [1, 4, 5, 8])
    small, small_cov = slots.take(student, cov, order)
    assert small.means.shape == (R, 8, d) and np.isfinite(small.log_weights[0, :6]).all()
    if per and params is not None:
        assert small.cov_params.shape[:2] == (R, 8)
    if not per:
        assert small.cov_params.shape == params.shape and small_cov[0].shape == (R, d, d)  # shared: whole
    # a fit moves the live components; expanding puts each back in its starting slot
    moved = Mixture.tree_unflatten(kind, (small.means + 1.0, small.log_weights, small.cov_params))
    back = slots.student(moved)
    np.testing.assert_array_equal(back.log_weights, student.log_weights)
    np.testing.assert_array_equal(back.means[0, [0, 2, 3, 6, 7, 9]], student.means[0, [0, 2, 3, 6, 7, 9]] + 1.0)
    np.testing.assert_array_equal(order[0, 6:], [1, 4])  # then dead ones, to the width
    np.testing.assert_array_equal(back.means[0, [5, 8]], student.means[0, [5, 8]])  # dropped: as left
    for a, b in zip(slots.covariances(small_cov), cov, strict=True):
        np.testing.assert_array_equal(a, b)
    w = np.exp(small.log_weights[1])[None].repeat(3, axis=0)  # 3 records (T, 8) of restart 1
    full = slots.weights(1, w)
    assert full.shape == (3, n)
    np.testing.assert_allclose(full[0], np.exp(student.log_weights[1]))
    # narrowing again composes the slot maps
    order2 = slots.narrow(moved, small_cov, 8)
    assert slots.width == 8 and np.array_equal(order2[0, :6], np.arange(6))
    np.testing.assert_array_equal(slots.student(moved).means, back.means)


@pytest.mark.parametrize("kind", ["full", "tied"])
def test_a_fit_that_drops_dead_slots_is_the_same_fit(monkeypatch, kind):
    """Dropping the dead slots (COMPACT_ROWS lowered: this fit is "large") gives the same
    mixture, steps, merges and weight trajectory (starting width) as keeping them, and
    the solver ran at the narrower widths."""
    rng = np.random.default_rng(2)
    mu = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    X = mu[rng.integers(0, 3, 3000)] + rng.normal(size=(3000, 2)) @ np.array([[1.0, 0.3], [0.0, 0.5]])
    widths = []
    real = F.InMemory.solve

    def spy(self, students, keys, max_iter, tol):
        widths.append(students.means.shape[1])
        return real(self, students, keys, max_iter, tol)

    monkeypatch.setattr(F.InMemory, "solve", spy)
    fits = {}
    for rows in (10**9, 0):
        monkeypatch.setattr(_slots, "COMPACT_ROWS", rows)
        widths.clear()
        fits[rows] = OverparamGMM(covariance_type=kind, random_state=0).fit(X)
        if rows == 0:
            assert widths[0] == 25 and min(widths) == 8 and widths == sorted(widths, reverse=True)
        else:
            assert set(widths) == {25}
    a, b = fits.values()
    assert a.n_components_ == b.n_components_ == 3 and a.n_iter_ == b.n_iter_ and a.n_merges_ == b.n_merges_
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(b.weights_, a.weights_, rtol=1e-10)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-9)
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=1e-12)
    assert b.weight_trajectory_.shape == a.weight_trajectory_.shape
    np.testing.assert_allclose(b.weight_trajectory_, a.weight_trajectory_, atol=1e-12)
    assert b.score(X) == pytest.approx(a.score(X), rel=1e-12)


@pytest.mark.parametrize("kind", ["full", "tied"])
def test_inference_on_many_rows_evaluates_the_live_components_alone(monkeypatch, kind):
    """On SCORE_ROWS rows or more score_samples and predict_proba evaluate the fitted live
    components in a narrow batch (live first, a power-of-two width): the same values as the
    fit's own width, for fewer slots."""
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) * 0.5 + 5])
    est = OverparamGMM(covariance_type=kind, random_state=0).fit(X)
    k, n = est.n_components_, est._student.log_weights.shape[0]
    assert n == 25 and k < 8  # full: 2; tied tiles the two scales (7 measured)
    narrowed, live = _slots.for_scoring(est._student, est._live, _slots.SCORE_ROWS)
    assert narrowed.log_weights.shape == (1 << (k - 1).bit_length(),) and np.array_equal(live, np.arange(k))
    np.testing.assert_array_equal(narrowed.means[:k], est._student.means[est._live])
    assert _slots.for_scoring(est._student, est._live, _slots.SCORE_ROWS - 1)[0] is est._student
    big = np.tile(X, (_slots.SCORE_ROWS // 600 + 1, 1))
    ll, proba = est.score_samples(big), est.predict_proba(big)
    monkeypatch.setattr(_slots, "SCORE_ROWS", 10**9)  # the fit's own 25 slots
    np.testing.assert_allclose(ll, est.score_samples(big), rtol=1e-12)
    np.testing.assert_allclose(proba, est.predict_proba(big), rtol=1e-10, atol=1e-14)
    assert proba.shape == (big.shape[0], k)
