"""Statistics, merges and solves on data in chunks equal the in-memory ones (overgmm.streaming)."""

import jax
import numpy as np
import pytest

import overgmm as og
from overgmm import chunks as C
from overgmm import streaming
from overgmm.reduce import merge_round, pair_costs
from overgmm.statistics import centred, data_statistics


def data(n=3001, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(size=(n // 2, d)), rng.normal(size=(n - n // 2, d)) * 0.7 + 3])


def students(X, kind, R=2, n=4):
    keys = jax.random.split(jax.random.key(1), R)
    X = jax.numpy.asarray(X)
    w = jax.numpy.ones(X.shape[0]) / X.shape[0]
    return jax.vmap(lambda k: og.init.from_data(k, X, w, n, covariance_type=kind, floor=np.full(X.shape[1], 1e-3)))(
        keys
    )


@pytest.mark.parametrize("kind", ["identity", "spherical", "diag", "full", "tied"])
def test_chunk_sums_equal_the_in_memory_statistics(kind):
    X = data()
    w = np.random.default_rng(2).uniform(0, 2, size=X.shape[0])
    S = students(X, kind)
    raw = streaming.statistics_sums(C.ArrayChunks(X, w, chunk_rows=512), streaming.ALL, S)
    for r in range(2):
        s = jax.tree_util.tree_map(lambda a, r=r: a[r], S)
        got = centred(s, jax.tree_util.tree_map(lambda a, r=r: a[r], raw), w.sum())
        want = data_statistics(s, X, w)
        for a, b in zip(got, want, strict=True):
            if b is not None:
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)


def test_merge_costs_and_round_equal_the_in_memory_ones():
    X = data()
    S = students(X, "diag", n=6)
    prob = og.Problem.from_data(X, var_floor=1e-3)
    src = C.ArrayChunks(X, chunk_rows=1000)
    costs = streaming.pair_costs(src, streaming.ALL, S, prob.floor, X.shape[0])
    merged, k = streaming.merge_round(src, streaming.ALL, S, prob.floor, X.shape[0], 0.05)
    for r in range(2):
        s = jax.tree_util.tree_map(lambda a, r=r: a[r], S)
        want = np.asarray(pair_costs(prob, s))
        fin = np.isfinite(want)
        np.testing.assert_allclose(costs[r][fin], want[fin], rtol=1e-10, atol=1e-13)
        assert np.array_equal(np.isfinite(costs[r]), fin)
        m2, k2 = merge_round(prob, s, 0.05)
        assert int(k[r]) == int(k2)
        np.testing.assert_allclose(np.asarray(merged.means[r]), np.asarray(m2.means), rtol=1e-12)


@pytest.mark.parametrize("factory", [lambda p: og.em(p), lambda p: og.gradient_em(p, 0.5, weights="em")])
def test_solve_on_chunks_equals_solve_batch(factory):
    X = data()
    S = students(X, "full")
    prob = og.Problem.from_data(X, var_floor=np.full(3, 1e-3))
    alg = og.with_pruning(factory(prob), 0.01)
    keys = jax.random.split(jax.random.key(0), 2)
    want = og.solve_batch(alg, S, max_steps=60, tol=1e-9, keys=keys, record=("weights",))
    got = streaming.solve(
        alg.method,
        S,
        C.ArrayChunks(X, chunk_rows=700),
        floor=prob.floor,
        total=X.shape[0],
        max_steps=60,
        tol=1e-9,
        keys=keys,
        record=("weights",),
    )
    assert np.array_equal(got.n_steps, want.n_steps) and np.array_equal(got.status, want.status)
    fin = np.isfinite(want.loss)
    np.testing.assert_allclose(got.loss[fin], want.loss[fin], rtol=1e-12)
    np.testing.assert_allclose(got.records["weights"], want.records["weights"], rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(np.asarray(got.final.student.means), np.asarray(want.final.student.means), rtol=1e-9)


def test_methods_that_read_the_data_twice_per_step_are_refused():
    X = data(500)
    prob = og.Problem.from_data(X)
    for alg in (og.polyak(prob, 0.5, 5), og.gradient_em(prob, 0.5, weights="solve")):
        with pytest.raises(ValueError, match="more than once per step"):
            streaming.solve(
                alg.method, students(X, "identity"), C.ArrayChunks(X), floor=np.zeros(3), total=500, max_steps=3
            )


def test_subsample_and_holdout_ignore_chunking_row_order_and_duplication():
    X = data(5000)
    w = np.ones(5000)
    a = streaming.subsample(C.ArrayChunks(X, w, chunk_rows=4096), streaming.ALL, 5000, target=700)
    perm = np.random.default_rng(0).permutation(5000)
    b = streaming.subsample(C.ArrayChunks(X[perm], w, chunk_rows=1500), streaming.ALL, 5000, target=700)
    assert np.array_equal(a[0], b[0]) and 400 < a[0].shape[0] < 1000
    m = streaming.holdout_mask(X)
    assert np.array_equal(streaming.holdout_mask(X[perm]), m[perm]) and 0.15 < m.mean() < 0.25
    assert np.array_equal(streaming.holdout_mask(np.vstack([X, X]))[5000:], m)


@pytest.mark.parametrize(
    "rows",
    [
        np.arange(1000.0)[:, None] + 9000.0,  # integers (galaxies' velocities): 40+ zero bits each
        np.arange(1000.0)[:, None] / 2,  # halves
        np.c_[np.arange(1000.0) % 37, np.arange(1000.0) // 37],  # a grid of integer pairs
    ],
)
def test_holdout_and_subsample_hashes_spread_rows_of_integers(rows):
    """Rows of round numbers fall in every fold (a multiply-only hash kept their float64
    trailing zero bits and held out every row of 1-D integer data)."""
    for h in (streaming.row_hash(rows), streaming.sample_hash(rows)):
        counts = np.bincount((h % np.uint64(5)).astype(int), minlength=5)
        assert np.all(np.abs(counts - 200) < 50), counts
    assert 0.15 < streaming.holdout_mask(rows).mean() < 0.25


def test_scan_names_the_row_and_column_of_a_non_finite_value():
    X = data(3000)
    X[2345, 1] = np.nan
    with pytest.raises(ValueError, match=r"row 2345 \(row 297 of the chunk starting at row 2048\), column 1"):
        streaming.scan(C.ArrayChunks(X, chunk_rows=1024))
    X[2345, 1] = np.inf
    with pytest.raises(ValueError, match="non-finite value inf"):
        streaming.scan(C.ArrayChunks(X, chunk_rows=1024))
