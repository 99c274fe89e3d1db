"""E-step statistics: blocked accumulation, and agreement with the loss gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import overgmm as og
from overgmm.statistics import BLOCK_ELEMENTS, MIN_BLOCK, block_rows, data_statistics, from_gradient, gradient_from

KINDS = ("identity", "spherical", "diag", "full")
ALL_KINDS = (*KINDS, "tied")


def _student(rng, kind, n=3, d=2):
    cov = {
        "identity": None,
        "spherical": rng.uniform(0.5, 2, n),
        "diag": rng.uniform(0.5, 2, (n, d)),
        "full": np.stack([np.eye(d) + 0.3 * np.ones((d, d))] * n),
        "tied": np.eye(d) + 0.3 * np.ones((d, d)),
    }[kind]
    return og.Mixture(rng.normal(size=(n, d)), [0.2, 0.3, 0.5], covariances=cov, covariance_type=kind)


@pytest.mark.parametrize("kind", KINDS)
def test_blocked_statistics_equal_the_unblocked_pass(rng, kind):
    X = jnp.asarray(rng.normal(size=(5003, 2)) * 2)
    w = jnp.asarray(rng.uniform(0, 2, 5003))
    s = _student(rng, kind)
    whole = data_statistics(s, X, w, block=5003)
    for block in (1000, 1024, 2500):
        part = data_statistics(s, X, w, block=block)
        for a, b in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(part), strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-15)


def test_loglik_sum_is_the_weighted_nll_over_blocks_and_ignores_zero_weight_rows(rng):
    from overgmm.statistics import loglik_sum, raw_moments

    X = np.asarray(rng.normal(size=(5003, 2)) * 2)
    w = rng.uniform(0, 2, 5003)
    w[:7] = 0.0
    X[:7] = 1e300  # rows of zero weight may hold anything finite
    s = _student(rng, "full")
    total = float(loglik_sum(s, jnp.asarray(X), jnp.asarray(w)))
    assert np.isfinite(total)
    np.testing.assert_allclose(-total / w.sum(), og.nll(s, X[7:], sample_weight=w[7:]), rtol=1e-12)
    np.testing.assert_allclose(total, raw_moments(s, jnp.asarray(X), jnp.asarray(w), block=1000).loss, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_statistics_agree_with_the_nll_gradient(rng, kind):
    """shift_i = -Sigma_i dL/dmu_i and mass_i = pi_i - dL/da_i (softmax log-weights)."""
    X = jnp.asarray(rng.normal(size=(400, 2)) * 2)
    s = _student(rng, kind)
    st = og.Problem.from_data(X).statistics(s) if kind != "identity" else data_statistics(s, X, jnp.ones(400))
    loss, g = jax.value_and_grad(lambda m: og.nll(m, X))(s)
    np.testing.assert_allclose(st.loss, loss, rtol=1e-13)
    np.testing.assert_allclose(st.mass, s.weights - g.log_weights, rtol=1e-11, atol=1e-14)
    shift = -jnp.einsum("nde,ne->nd", s.covariance_matrices, g.means)
    np.testing.assert_allclose(st.shift, shift, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(float(jnp.sum(st.mass)), 1.0, rtol=1e-14)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_the_estep_and_the_log_density_read_one_expression(rng, kind):
    """The E-step's log-likelihood is Mixture.log_prob summed (what the in-memory fit scores
    and what chunks reduce), and its masses are the responsibilities summed."""
    X = jnp.asarray(rng.normal(size=(257, 2)) * 3)
    w = jnp.asarray(rng.uniform(0, 2, 257))
    s = _student(rng, kind)
    st = data_statistics(s, X, w, block=257)
    ll, psi = s.log_posterior(X)
    np.testing.assert_array_equal(np.asarray(ll), np.asarray(s.log_prob(X)))
    np.testing.assert_allclose(-float(st.loss) * float(jnp.sum(w)), float(jnp.sum(w * ll)), rtol=1e-14)
    np.testing.assert_allclose(st.mass, np.asarray(w @ psi) / float(jnp.sum(w)), rtol=1e-13)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_far_rows_keep_finite_responsibilities_and_log_density(rng, kind):
    s = _student(rng, kind)
    X = jnp.array([[1e8, -1e8], [3e150, 0.0], [0.5, 0.5]])
    ll, psi = (np.asarray(a) for a in s.log_posterior(X))
    assert np.all(np.isfinite(psi)) and np.allclose(np.sum(psi, axis=-1), 1.0, rtol=1e-15)
    assert np.all(np.isfinite(np.asarray(ll[[0, 2]])))
    assert float(ll[0]) < -1e15 and not np.isnan(float(ll[1]))
    if kind == "identity":  # the shared -|x|^2/2 is added after the log-sum-exp: exact
        from scipy.special import logsumexp

        m, x = np.asarray(s.means), np.array([1e8, -1e8])
        inner = logsumexp(x @ m.T - 0.5 * np.sum(m**2, axis=-1) + np.log(np.asarray(s.weights)))
        np.testing.assert_allclose(float(ll[0]), -0.5 * x @ x - np.log(2 * np.pi) + inner, rtol=1e-15)
        np.testing.assert_allclose(psi[0], np.exp(x @ m.T - 0.5 * np.sum(m**2, -1) - inner) * s.weights, rtol=1e-6)


def test_full_scatter_is_the_weighted_second_moment_about_the_mean(rng):
    X = rng.normal(size=(300, 3))
    s = og.Mixture(rng.normal(size=(2, 3)), covariance_type="full")
    st = og.Problem.from_data(X).statistics(s)
    psi = np.asarray(s.responsibilities(X))
    for i in range(2):
        diff = X - np.asarray(s.means[i])
        ref = (psi[:, i, None] * diff).T @ diff / len(X)
        np.testing.assert_allclose(st.scatter[i], ref, rtol=1e-11)


def test_block_size_bounds_the_temporaries():
    assert block_rows(10**7, 100, 32, "full") == MIN_BLOCK  # 1024 x 100 x 32 floats
    assert block_rows(10**7, 20, 5, "diag") * 20 <= BLOCK_ELEMENTS
    assert block_rows(500, 20, 5, "full") == 500


def test_gradient_from_inverts_from_gradient_and_matches_autodiff(rng):
    """Identity covariances: the statistics and the loss gradient are one another's
    (``dL/da = pi - E[psi]``, ``dL/dmu = -shift``), both ways."""
    X = rng.normal(size=(300, 2))
    student = og.Mixture([[0.0, 0.0], [1.0, -0.5], [-2.0, 1.0]], [0.2, 0.3, 0.5])
    st = data_statistics(student, X, np.ones(300))
    loss, grads = jax.value_and_grad(lambda s: og.nll(s, X))(student)
    g = gradient_from(student, st)
    np.testing.assert_allclose(g.means, grads.means, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(g.log_weights, grads.log_weights, rtol=1e-10, atol=1e-15)
    back = from_gradient(student, loss, g)
    np.testing.assert_allclose(back.mass, st.mass, rtol=1e-12)
    np.testing.assert_allclose(back.shift, st.shift, rtol=1e-12)
