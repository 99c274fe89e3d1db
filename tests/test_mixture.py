import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

import overgmm as og


def test_uniform_weights_and_shapes():
    m = og.Mixture(np.zeros((4, 3)))
    assert m.n_components == 4 and m.dim == 3
    np.testing.assert_allclose(m.weights, 0.25)
    assert m.means.dtype == jnp.float64 and m.log_weights.dtype == jnp.float64


def test_log_prob_matches_scipy(rng):
    means = rng.normal(size=(3, 2)) * 2
    w = np.array([0.2, 0.5, 0.3])
    m = og.Mixture(means, w)
    x = rng.normal(size=(7, 2)) * 3
    ref = np.log(sum(w[i] * multivariate_normal(means[i], np.eye(2)).pdf(x) for i in range(3)))
    np.testing.assert_allclose(m.log_prob(x), ref, rtol=1e-13)


def test_responsibilities_log_domain_on_extreme_inputs():
    m = og.Mixture([[-1e3], [0.0], [1e3]], [0.3, 0.3, 0.4])
    x = jnp.array([[-2e3], [0.0], [5e2 + 1e-9], [1e4]])
    psi = m.responsibilities(x)
    assert np.all(np.isfinite(psi))
    np.testing.assert_allclose(psi.sum(-1), 1.0, rtol=1e-15)
    assert psi[0, 0] == 1.0 and psi[3, 2] == 1.0
    assert np.all(np.isfinite(m.log_prob(x)))


def test_sample_uses_key_and_matches_moments():
    m = og.Mixture([[-2.0, 0.0], [3.0, 1.0]], [0.25, 0.75])
    x1 = m.sample(jax.random.key(0), 200_000)
    x2 = m.sample(jax.random.key(0), 200_000)
    np.testing.assert_array_equal(x1, x2)
    assert x1.shape == (200_000, 2) and x1.dtype == jnp.float64
    np.testing.assert_allclose(x1.mean(0), [0.25 * -2 + 0.75 * 3, 0.75], atol=0.02)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(means=np.zeros(3)), "shape"),
        (dict(means=np.zeros((2, 2, 2))), "shape"),
        (dict(means=[[0.0, np.nan]]), "non-finite"),
        (dict(means=[[0.0], [1.0]], weights=[0.5, 0.6]), "sum to 1"),
        (dict(means=[[0.0], [1.0]], weights=[1.5, -0.5]), "non-negative"),
        (dict(means=[[0.0], [1.0]], weights=[1.0]), "entries"),
        (dict(means=[[0.0], [1.0]], weights=[[0.5, 0.5]]), "shape"),
        (dict(means=[["a"]]), "real numbers"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        og.Mixture(**kwargs)


def test_construction_traces_under_grad_jit_vmap():
    w = jnp.array([0.3, 0.7])

    def f(means):
        return og.Mixture(means, w).log_prob(jnp.ones((1, 2)))[0]

    means = jnp.array([[0.0, 1.0], [1.0, -1.0]])
    g = jax.grad(f)(means)
    assert g.shape == (2, 2)
    assert jax.jit(f)(means) == f(means)
    batched = jax.vmap(f)(jnp.stack([means, means + 1]))
    assert batched.shape == (2,)


def test_pytree_roundtrip_and_log_weights():
    m = og.Mixture([[0.0], [2.0]], log_weights=[0.0, 0.0])
    np.testing.assert_allclose(m.weights, [0.5, 0.5])
    leaves, treedef = jax.tree_util.tree_flatten(m)
    m2 = jax.tree_util.tree_unflatten(treedef, leaves)
    np.testing.assert_array_equal(m2.means, m.means)
    with pytest.raises(ValueError, match="either"):
        og.Mixture([[0.0]], [1.0], log_weights=[0.0])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-1e4, 1e4), min_size=3, max_size=3),
    st.lists(st.floats(-1e5, 1e5), min_size=4, max_size=4),
)
def test_responsibilities_are_a_distribution_for_any_input(means, xs):
    m = og.Mixture(np.array(means)[:, None], [0.2, 0.3, 0.5])
    psi = np.asarray(m.responsibilities(np.array(xs)[:, None]))
    assert np.all(np.isfinite(psi)) and np.all(psi >= 0)
    np.testing.assert_allclose(psi.sum(-1), 1.0, rtol=1e-14)
    assert np.all(np.isfinite(np.asarray(m.log_prob(np.array(xs)[:, None]))))
