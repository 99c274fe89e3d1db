"""Every algorithm with learned covariances on data: known optima, monotone EM, valid
covariances after any step, and the driver's stopping rule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import overgmm as og

KINDS = ("spherical", "diag", "full", "tied")
TRUE_MEANS = np.array([[-3.0, 0.0], [3.0, 1.0]])
TRUE_W = np.array([0.35, 0.65])


def _truth(kind):
    cov = {
        "spherical": np.array([0.5, 1.5]),
        "diag": np.array([[0.5, 2.0], [1.5, 0.4]]),
        "full": np.array([[[1.0, 0.6], [0.6, 0.8]], [[0.7, -0.3], [-0.3, 1.2]]]),
        "tied": np.array([[1.0, 0.6], [0.6, 0.8]]),
    }[kind]
    return og.Mixture(TRUE_MEANS, TRUE_W, covariances=cov, covariance_type=kind)


@pytest.fixture(scope="module")
def data():
    return {k: _truth(k).sample(jax.random.key(7), 40_000) for k in KINDS}


def _start(kind):
    cov = {"spherical": np.ones(2), "diag": np.ones((2, 2)), "full": np.stack([np.eye(2)] * 2), "tied": np.eye(2)}[kind]
    return og.Mixture([[-2.0, 0.5], [2.0, 0.0]], covariances=cov, covariance_type=kind)


ALGORITHMS = {
    "em": (lambda p: og.em(p), 300),
    "gradient_em": (lambda p: og.gradient_em(p, 1.0, weights="em"), 600),
    "polyak": (lambda p: og.polyak(p, 1.0, 10, scaled="mass", loss_star="decrease", weights="em"), 400),
    "polyak_pi": (lambda p: og.polyak(p, 0.5, 10, weights="em", loss_star="decrease"), 600),
    "adam": (lambda p: og.optax_method(p, optax.adam(0.05), params="all"), 1500),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_every_algorithm_reaches_the_known_optimum(data, kind, name):
    make, steps = ALGORITHMS[name]
    problem = og.Problem.from_data(data[kind])
    sol = og.solve(make(problem), _start(kind), max_steps=steps, tol=1e-11)
    s = sol.final.student
    truth = _truth(kind)
    order = np.argsort(np.asarray(s.means[:, 0]))
    # N = 4e4: sampling error about 1e-2 in the parameters
    np.testing.assert_allclose(np.asarray(s.means)[order], TRUE_MEANS, atol=0.05)
    np.testing.assert_allclose(np.asarray(s.weights)[order], TRUE_W, atol=0.02)
    np.testing.assert_allclose(np.asarray(s.covariances)[order], np.asarray(truth.covariances), atol=0.06)


@pytest.mark.parametrize("kind", ("identity",) + KINDS)
def test_em_never_lowers_the_likelihood(rng, kind):
    X = jnp.asarray(np.concatenate([rng.normal(size=(300, 3)), rng.normal(size=(200, 3)) * 0.3 + 2]))
    problem = og.Problem.from_data(X, var_floor=1e-6)
    s0 = og.init.from_data(jax.random.key(2), X, jnp.ones(500), 6, covariance_type=kind)
    sol = og.solve(og.em(problem), s0, max_steps=80, tol=0.0)
    losses = sol.loss[: int(sol.n_steps)]
    assert np.all(np.diff(losses) <= 1e-12 * np.abs(losses[1:]))


@pytest.mark.parametrize("name", ["gradient_em", "polyak", "polyak_pi", "adam"])
def test_full_covariances_stay_positive_definite_from_extreme_starts(rng, name):
    X = jnp.asarray(rng.normal(size=(500, 3)) * [1e-3, 1.0, 1e3])
    problem = og.Problem.from_data(X, var_floor=1e-12)
    for cov in (1e-8 * np.eye(3), 1e8 * np.eye(3), np.array([[1, 0.999999, 0], [0.999999, 1, 0], [0, 0, 1]])):
        s0 = og.Mixture(np.asarray(X[:3]), covariances=np.stack([cov] * 3))
        make, _ = ALGORITHMS[name]
        with np.errstate(all="ignore"):
            sol = og.solve(make(problem), s0, max_steps=40, tol=0.0)
        eig = np.linalg.eigvalsh(np.asarray(sol.final.student.covariance_matrices))
        assert np.all(eig > 0), (name, cov[0, 0])


def test_variance_floor_is_honoured(rng):
    X = jnp.asarray(np.concatenate([rng.normal(size=(100, 2)), np.zeros((50, 2)) + 5.0]))
    problem = og.Problem.from_data(X, var_floor=[0.01, 0.02])
    s0 = og.Mixture([[0.0, 0.0], [5.0, 5.0]], covariance_type="diag")
    s = og.solve(og.em(problem), s0, max_steps=50).final.student
    np.testing.assert_allclose(np.asarray(s.covariances[1]), [0.01, 0.02], rtol=1e-12)
    s0 = og.Mixture([[0.0, 0.0], [5.0, 5.0]], covariance_type="full")
    s = og.solve(og.em(problem), s0, max_steps=50).final.student
    np.testing.assert_allclose(np.asarray(s.covariances[1]), np.diag([0.01, 0.02]), atol=1e-12)


def test_solve_status_codes_and_records(rng):
    X = jnp.asarray(np.concatenate([rng.normal(size=(150, 2)) - 3, rng.normal(size=(150, 2)) + 3]))
    problem = og.Problem.from_data(X)
    s0 = og.Mixture([[-1.0, 0.0], [1.0, 0.0]], covariance_type="diag")
    sol = og.solve(og.em(problem), s0, max_steps=500, tol=1e-6, record=("weights", "covariances"))
    assert sol.status_text == ["ok"] and 1 < int(sol.n_steps) < 500
    n = int(sol.n_steps)
    assert np.all(np.isfinite(sol.loss[:n])) and np.all(np.isnan(sol.loss[n:]))
    assert sol.records["weights"].shape == (501, 2) and sol.records["covariances"].shape == (501, 2, 2)
    np.testing.assert_allclose(sol.records["weights"][n], np.asarray(sol.final.student.weights))
    short = og.solve(og.em(problem), s0, max_steps=3, tol=1e-10)
    assert short.status_text == ["max steps reached"] and int(short.n_steps) == 3
    with pytest.warns(RuntimeWarning, match="non-finite"):
        bad = og.solve(og.gradient_descent(problem, 1e6, params="all"), s0, max_steps=50, tol=0.0)
    assert int(bad.status) == 1 and int(bad.failed_at) >= 1


def test_second_solve_of_the_same_shape_does_not_recompile(rng):
    s0 = og.Mixture([[-1.0, 0.0], [1.0, 0.0]], covariance_type="full")
    X1, X2 = (jnp.asarray(rng.normal(size=(256, 2))) for _ in range(2))
    og.solve(og.em(og.Problem.from_data(X1)), s0, max_steps=20, tol=1e-4)
    before = og.trace_count()
    og.solve(og.em(og.Problem.from_data(X2)), s0, max_steps=20, tol=1e-8)  # new data, new tol
    og.solve(og.em(og.Problem.from_data(X1, sample_weight=np.ones(256))), s0, max_steps=20, tol=1e-8)
    assert og.trace_count() - before == 1  # only the sample-weighted problem (a new pytree structure)
    og.solve(og.em(og.Problem.from_data(X1[:128])), s0, max_steps=20, tol=1e-4)
    assert og.trace_count() - before == 2  # a new shape compiles once


def test_solve_batch_over_problems_equals_single_solves(rng):
    Xs = [jnp.asarray(rng.normal(size=(200, 2)) + i) for i in range(3)]
    problems = og.stack([og.Problem.from_data(X) for X in Xs])
    s0 = og.Mixture([[-1.0, 0.0], [1.0, 0.0]], covariance_type="diag")
    alg = og.em(og.Problem.from_data(Xs[0]))
    batch = og.solve_batch(alg, og.stack([s0] * 3), max_steps=30, tol=1e-9, problems=problems)
    for i, X in enumerate(Xs):
        one = og.solve(og.em(og.Problem.from_data(X)), s0, max_steps=30, tol=1e-9)
        np.testing.assert_allclose(np.asarray(batch.final.student.means[i]), np.asarray(one.final.student.means))
        assert int(batch.n_steps[i]) == int(one.n_steps)


def test_stepwise_em_converges_on_minibatches(rng):
    truth = _truth("diag")
    s = og.Mixture([[-2.0, 0.5], [2.0, 0.0]], covariance_type="diag")
    for t in range(200):
        X = truth.sample(jax.random.key(100 + t), 500)
        s, _ = og.stepwise_em(og.Problem.from_data(X), s, min(1.0, (t + 2) ** -0.6))
    order = np.argsort(np.asarray(s.means[:, 0]))
    np.testing.assert_allclose(np.asarray(s.means)[order], TRUE_MEANS, atol=0.1)
    np.testing.assert_allclose(np.asarray(s.covariances)[order], np.asarray(truth.covariances), atol=0.15)


def test_tied_em_step_is_the_pooled_m_step(rng):
    """One EM step of a tied student against the M-step written out in NumPy: each
    component's mean, and one covariance pooled over every component about its new mean,
    plus the floor."""
    X = rng.normal(size=(300, 2)) * [1.0, 2.0] + rng.choice([-2.0, 2.0], size=(300, 1))
    w = rng.uniform(0.5, 1.5, size=300)
    cov = np.array([[1.5, 0.3], [0.3, 2.0]])
    s = og.Mixture([[-1.0, 0.0], [1.5, 0.5], [0.0, 3.0]], [0.3, 0.3, 0.4], covariances=cov, covariance_type="tied")
    floor = np.array([0.01, 0.02])
    problem = og.Problem.from_data(X, sample_weight=w, var_floor=floor)
    new = og.solve(og.em(problem), s, max_steps=1).final.student
    r = np.asarray(s.responsibilities(X)) * w[:, None] / w.sum()  # (N, n), sums to 1
    mass = r.sum(0)
    mu = (r.T @ X) / mass[:, None]
    pooled = sum((r[:, i, None] * (X - mu[i])).T @ (X - mu[i]) for i in range(3)) + np.diag(floor)
    np.testing.assert_allclose(np.asarray(new.means), mu, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(new.weights), mass, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(new.covariances), pooled, rtol=1e-10)
