"""The "auto" rule's held-out statistics (overgmm.estimator._auto.held_moments): the
standard error of a per-row difference between types, the same in one call and summed
over chunks, and the half-standard-error margin of simplest_type."""

from __future__ import annotations

import numpy as np
import pytest

from overgmm import Mixture, chunks, streaming
from overgmm.estimator import _auto as A
from overgmm.estimator._fit import AUTO_MARGIN, simplest_type


def models(d=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for cov in (rng.uniform(0.5, 2.0, size=(2, d)), rng.uniform(0.5, 2.0, size=2)):
        m = Mixture(rng.normal(size=(2, d)), weights=np.array([0.4, 0.6]), covariances=cov)
        out.append((m, rng.normal(size=d), rng.uniform(0.5, 2.0, size=d)))
    return out


def test_held_moments_give_the_paired_standard_error():
    rng = np.random.default_rng(1)
    X, w = rng.normal(size=(400, 3)), rng.uniform(0.5, 2.0, size=400)
    ms = models()
    sums = A.held_moments(X, w, 0, streaming.View(rows="held"), ms)
    held = streaming.holdout_mask(X)
    ll = []
    for student, shift, scale in ms:
        ll.append(np.asarray(student.log_prob((X[held] - shift) / scale)) - np.log(scale).sum())
    d, wh = ll[0] - ll[1], w[held]
    mean = wh @ d / wh.sum()
    want = np.sqrt((wh @ (d - mean) ** 2 / wh.sum()) / wh.sum())
    assert sums.total == pytest.approx(wh.sum(), rel=1e-12)
    np.testing.assert_allclose(sums.s1, [wh @ ll[0], wh @ ll[1]], rtol=1e-10)
    assert sums.se(["a", "b"], "a", "b") == pytest.approx(want, rel=1e-8)
    assert sums.se(["a", "b"], "a", "a") == 0.0


def test_held_moments_summed_over_chunks_equal_one_call():
    X = np.random.default_rng(2).normal(size=(1000, 3))
    ms = models()
    view = streaming.View(rows="held")
    one = A.held_moments(X, np.ones(1000), 0, view, ms)
    summed = chunks.map_sum(chunks.ArrayChunks(X, chunk_rows=256), A.held_moments, view, ms)
    assert float(summed.total) == pytest.approx(one.total)
    np.testing.assert_allclose(summed.s1, one.s1, rtol=1e-12)
    np.testing.assert_allclose(summed.s2, one.s2, rtol=1e-12)


def test_a_type_ahead_by_less_than_half_a_standard_error_is_not_chosen():
    scores = {"spherical": -3.0, "diag": -1.10, "tied": -1.0, "full": -1.0 + AUTO_MARGIN / 2}
    assert simplest_type(scores) == "tied"  # the margin alone
    # tied is 0.10 ahead of diag, with a standard error of 0.3 for that difference: noise
    assert simplest_type(scores, lambda a, b: 0.3 if b == "diag" else 0.01) == "diag"
    # with a standard error of 0.1, 0.10 is two of them: tied stays
    assert simplest_type(scores, lambda a, b: 0.1 if b == "diag" else 0.01) == "tied"
    # a type that failed (-inf) is never chosen and needs no standard error
    failed = {**scores, "spherical": -np.inf}
    assert simplest_type(failed, lambda a, b: 0.3 if b == "diag" else 0.01) == "diag"


def test_rotated_is_the_last_candidate_kept_only_where_it_leads_by_the_margin():
    base = {"spherical": -3.0, "diag": -1.5, "tied": -1.2, "full": -1.0}
    assert simplest_type(base) == "full"  # not tried (one feature, missing values): passed over
    assert simplest_type({**base, "rotated": -1.0 + AUTO_MARGIN / 2}) == "full"
    assert simplest_type({**base, "rotated": -1.0 + 2 * AUTO_MARGIN}) == "rotated"
    # ahead of full by 2 margins, but by less than half a standard error of that difference
    assert simplest_type({**base, "rotated": -1.0 + 2 * AUTO_MARGIN}, lambda a, b: 0.2) == "full"
    assert simplest_type({**base, "rotated": -np.inf}) == "full"
