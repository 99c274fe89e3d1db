"""Learned covariances in the core Mixture: densities against scipy, validation,
parametrisation, sampling, pruned components, and tracing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import overgmm as og
from helpers import central_fd

KINDS = ("spherical", "diag", "full", "tied")


def _random_covariances(rng, kind, n, d):
    if kind == "spherical":
        return rng.uniform(0.3, 3.0, size=n)
    if kind == "diag":
        return rng.uniform(0.3, 3.0, size=(n, d))
    if kind == "tied":
        a = rng.normal(size=(d, d))
        return a @ a.T + 0.3 * np.eye(d)
    a = rng.normal(size=(n, d, d))
    return a @ a.transpose(0, 2, 1) + 0.3 * np.eye(d)


def _dense(kind, cov, d):
    if kind == "spherical":
        return [c * np.eye(d) for c in cov]
    if kind == "diag":
        return [np.diag(c) for c in cov]
    if kind == "tied":
        return [cov] * 3
    return list(cov)


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_matches_scipy_for_every_covariance_type(rng, kind):
    n, d = 3, 4
    means = rng.normal(size=(n, d)) * 3
    w = np.array([0.2, 0.5, 0.3])
    cov = _random_covariances(rng, kind, n, d)
    m = og.Mixture(means, w, covariances=cov, covariance_type=kind)
    assert m.covariance_type == kind
    if kind != "tied":  # tied must be named: its (d, d) covariance has a diag's rank
        assert og.Mixture(means, w, covariances=cov).covariance_type == kind
    x = rng.normal(size=(9, d)) * 4
    dense = _dense(kind, cov, d)
    comps = np.stack([np.log(w[i]) + multivariate_normal(means[i], dense[i]).logpdf(x) for i in range(n)], -1)
    np.testing.assert_allclose(m.component_log_prob(x), comps, rtol=1e-12)
    ref = np.logaddexp.reduce(comps, axis=-1)
    np.testing.assert_allclose(m.log_prob(x), ref, rtol=1e-12)
    np.testing.assert_allclose(m.responsibilities(x), np.exp(comps - ref[:, None]), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(m.covariance_matrices, np.stack(dense), rtol=1e-12)


def test_full_covariance_roundtrip_through_the_precision_factor(rng):
    cov = _random_covariances(rng, "full", 2, 3)
    m = og.Mixture(np.zeros((2, 3)), covariances=cov)
    u = og.mixture.precision_cholesky(m.cov_params)
    assert np.allclose(np.tril(np.asarray(u), -1), 0)
    np.testing.assert_allclose(np.asarray(u @ jnp.swapaxes(u, -1, -2)), np.linalg.inv(cov), rtol=1e-10)
    np.testing.assert_allclose(m.covariances, cov, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_any_unconstrained_parameters_give_a_valid_covariance(kind):
    """Extreme but finite parameters still give positive definite covariances and finite densities."""
    n, d = 2, 3
    m = og.Mixture(np.zeros((n, d)), covariance_type=kind)
    shape = m.cov_params.shape
    for scale in (1e-3, 1.0, 2.0, 8.0):
        params = jax.random.normal(jax.random.key(int(scale * 10)), shape) * scale
        s = m.replace(cov_params=params)
        if scale <= 2.0:  # beyond, the covariance's condition number exceeds 1/eps
            eig = np.linalg.eigvalsh(np.asarray(s.covariance_matrices))
            assert np.all(eig > 0)
        assert np.all(np.isfinite(np.asarray(s.log_prob(jnp.ones((4, d))))))
        assert np.all(np.isfinite(np.asarray(s.sample(jax.random.key(0), 5))))


@pytest.mark.parametrize("kind", KINDS)
def test_sample_matches_the_covariance(rng, kind):
    d = 2
    cov = _random_covariances(rng, kind, 1, d)
    m = og.Mixture([[1.0, -2.0]], covariances=cov, covariance_type=kind)
    x = m.sample(jax.random.key(3), 200_000)
    np.testing.assert_allclose(np.cov(np.asarray(x).T), np.asarray(m.covariance_matrices[0]), rtol=0.02, atol=0.02)
    np.testing.assert_allclose(np.asarray(x).mean(0), [1.0, -2.0], atol=0.02)
    x2, labels = m.sample(jax.random.key(3), 10, return_labels=True)
    assert labels.shape == (10,) and np.all(np.asarray(labels) == 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(covariances=-np.ones(2)), "positive"),
        (dict(covariances=np.ones((2, 3))), "shape"),
        (dict(covariances=np.array([np.eye(2), [[1.0, 2.0], [2.0, 1.0]]])), "component 1 is not positive definite"),
        (dict(covariances=np.array([np.eye(2), [[1.0, 0.5], [0.0, 1.0]]])), "symmetric"),
        (dict(covariances=np.ones((2, 2, 2, 2))), "1-, 2- or 3-dimensional"),
        (dict(covariances=np.full(2, np.nan)), "non-finite"),
        (dict(covariance_type="banana"), "unknown covariance_type"),
        (dict(covariances=np.ones(2), covariance_type="identity"), "takes no covariances"),
    ],
)
def test_bad_covariances_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        og.Mixture(np.zeros((2, 2)), **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_construction_traces_under_grad_jit_vmap(rng, kind):
    cov = jnp.asarray(_random_covariances(rng, kind, 2, 2))
    x = jnp.ones((1, 2))

    def f(cov):
        return og.Mixture(jnp.zeros((2, 2)), covariances=cov, covariance_type=kind).log_prob(x)[0]

    assert np.all(np.isfinite(np.asarray(jax.grad(f)(cov))))
    np.testing.assert_allclose(jax.jit(f)(cov), f(cov), rtol=1e-14)
    assert jax.vmap(f)(jnp.stack([cov, cov])).shape == (2,)


@pytest.mark.parametrize("kind", ("identity",) + KINDS)
def test_a_pruned_component_has_weight_zero_and_no_density(kind):
    m = og.Mixture([[0.0], [5.0]], [1.0, 0.0], covariance_type=kind)
    assert np.asarray(m.weights)[1] == 0.0
    np.testing.assert_array_equal(np.asarray(m.live), [True, False])
    psi = np.asarray(m.responsibilities(jnp.array([[5.0], [50.0]])))
    assert np.all(psi[:, 1] == 0.0)
    g = jax.grad(lambda s: og.nll(s, jnp.array([[4.0], [6.0]])))(m)
    assert np.all(np.isfinite(np.asarray(g.means)))


def test_population_objectives_name_the_identity_restriction():
    teacher = og.Mixture([[0.0, 0.0]])
    student = og.Mixture([[0.0, 0.0]], covariance_type="diag")
    with pytest.raises(ValueError, match="identity covariances only"):
        og.kl(teacher, student)
    with pytest.raises(ValueError, match="identity covariances only"):
        og.score_matching(teacher, student, 0.5)
    with pytest.raises(ValueError, match="identity-covariance students only"):
        og.run(og.em(og.Problem.population(teacher)), student, 2)


@pytest.mark.parametrize("kind", KINDS)
def test_nll_gradient_matches_finite_differences(rng, kind):
    X = jnp.asarray(rng.normal(size=(50, 2)) * 2)
    m = og.Mixture(
        rng.normal(size=(2, 2)), [0.4, 0.6], covariances=_random_covariances(rng, kind, 2, 2), covariance_type=kind
    )
    g = jax.grad(lambda s: og.nll(s, X))(m)
    fd = central_fd(lambda p: og.nll(m.replace(cov_params=jnp.asarray(p)), X), np.asarray(m.cov_params))
    np.testing.assert_allclose(np.asarray(g.cov_params), fd, rtol=1e-6, atol=1e-8)
    fd_m = central_fd(lambda p: og.nll(m.replace(means=jnp.asarray(p)), X), np.asarray(m.means))
    np.testing.assert_allclose(np.asarray(g.means), fd_m, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ("identity",) + KINDS)
def test_denoising_score_matching_works_for_every_type(rng, kind):
    X0 = jnp.asarray(rng.normal(size=(64, 2)))
    m = og.Mixture(rng.normal(size=(3, 2)), covariance_type=kind)
    val = og.denoising_score_matching(m, X0, 0.5, key=jax.random.key(0))
    g = jax.grad(lambda s: og.denoising_score_matching(s, X0, 0.5, key=jax.random.key(0)))(m)
    assert np.isfinite(float(val)) and np.all(np.isfinite(np.asarray(g.means)))


def test_learned_score_equals_the_identity_formula_at_unit_covariances(rng):
    X0 = jnp.asarray(rng.normal(size=(32, 2)))
    means = rng.normal(size=(3, 2))
    a = og.denoising_score_matching(og.Mixture(means), X0, 0.3, key=jax.random.key(1))
    b = og.denoising_score_matching(og.Mixture(means, covariances=np.ones((3, 2))), X0, 0.3, key=jax.random.key(1))
    np.testing.assert_allclose(a, b, rtol=1e-12)
