"""Starting students from data (overgmm.init): row draws, k-means++, data covariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import overgmm as og

KINDS = ("identity", "spherical", "diag", "full")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ("data", "kmeans++"))
def test_init_from_data(rng, kind, method):
    X = jnp.asarray(rng.normal(size=(200, 3)) * [1.0, 2.0, 3.0])
    w = jnp.ones(200)
    s = og.init.from_data(jax.random.key(0), X, w, 8, n_live=5, method=method, covariance_type=kind)
    assert s.covariance_type == kind and s.n_components == 8
    np.testing.assert_array_equal(np.asarray(s.live), [True] * 5 + [False] * 3)
    rows = {tuple(r) for r in np.asarray(X)}
    assert all(tuple(m) in rows for m in np.asarray(s.means))
    if kind == "diag":
        np.testing.assert_allclose(np.asarray(s.covariances[0]), np.var(np.asarray(X), axis=0), rtol=1e-10)
    if kind == "full":
        np.testing.assert_allclose(np.asarray(s.covariances[0]), np.cov(np.asarray(X).T, bias=True), rtol=1e-10)


def test_zero_weight_rows_are_never_drawn(rng):
    X = jnp.asarray(rng.normal(size=(50, 2)))
    w = jnp.zeros(50).at[7].set(1.0)
    for method in ("data", "kmeans++"):
        s = og.init.from_data(jax.random.key(1), X, w, 4, method=method)
        np.testing.assert_array_equal(np.asarray(s.means), np.repeat(np.asarray(X[7:8]), 4, axis=0))


@pytest.mark.parametrize("kind", KINDS)
def test_data_covariances_on_a_batch_equal_from_data_per_student(rng, kind):
    """The estimator draws identity students once (a batch) and sets each covariance type's
    data covariances afterwards: the same students as from_data with that type."""
    X = jnp.asarray(rng.normal(size=(300, 3)) * [1.0, 2.0, 3.0])
    w = jnp.asarray(rng.uniform(size=300))
    floor = jnp.asarray([0.01, 0.02, 5.0])
    keys = jax.random.split(jax.random.key(3), 2)
    batch = jax.vmap(lambda k: og.init.from_data(k, X, w, 6, n_live=4))(keys)
    got = og.init.with_data_covariances(batch, X, w, kind, floor)
    for r in range(2):
        want = og.init.from_data(keys[r], X, w, 6, n_live=4, covariance_type=kind, floor=floor)
        assert got.covariance_type == want.covariance_type
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
            np.testing.assert_allclose(np.asarray(a)[r], np.asarray(b), rtol=1e-12, atol=1e-12)
