"""Problem: an objective bound to a teacher, to data or to streamed statistics (overgmm.problem)."""

import jax
import numpy as np
import pytest
from scipy.special import logsumexp

import overgmm as og
from overgmm.statistics import data_statistics


def test_learned_covariances_need_data():
    teacher = og.Mixture([[0.0], [3.0]])
    with pytest.raises(ValueError, match="identity-covariance students only"):
        og.solve(og.em(og.Problem.population(teacher)), og.Mixture([[0.0], [1.0]], covariance_type="diag"), max_steps=2)


def test_from_statistics_problem_has_no_gradient_and_says_so(rng):
    X = rng.normal(size=(200, 3))
    s = og.Mixture(X[:4], covariances=np.ones((4, 3)))
    prob = og.Problem.from_statistics(data_statistics(s, X, np.ones(200)), var_floor=np.zeros(3))
    assert prob.dim == 3 and "streamed" in prob.describe()
    with pytest.raises(ValueError, match="no gradient"):
        prob.value_and_grad(s)


def test_population_and_data_problems_describe_and_agree_with_the_objectives(rng):
    teacher = og.Mixture([[0.0, 0.0], [3.0, 1.0]], [0.3, 0.7])
    student = og.Mixture([[0.5, 0.0], [2.5, 1.0]])
    pop = og.Problem.population(teacher)
    assert pop.dim == 2 and pop.describe(student).startswith("kl: quadrature")
    np.testing.assert_allclose(float(pop.loss(student)), float(og.kl(teacher, student)), rtol=1e-14)
    X = np.asarray(teacher.sample(jax.random.key(0), 500))
    dat = og.Problem.from_data(X)
    assert dat.dim == 2 and dat.describe() == "nll(data, N=500)"
    np.testing.assert_allclose(float(dat.loss(student)), float(og.nll(student, X)), rtol=1e-14)
    value, grad = dat.value_and_grad(student)
    assert np.isfinite(float(value)) and grad.means.shape == (2, 2)


def test_data_statistics_keep_an_exponentially_small_mass_and_the_gradient(rng):
    """On data with identity covariances the statistics are evaluated as such: a component
    twelve units from every row keeps its mass (about 1e-19) to relative accuracy, where
    ``pi - dL/da`` from the gradient cancels to zero, and ``-shift`` is the loss gradient."""
    X = rng.normal(size=(500, 1))
    student = og.Mixture([[0.0], [0.5], [12.0]])
    problem = og.Problem.from_data(X)
    st = problem.statistics(student)
    loss, grads = problem.value_and_grad(student)
    far = float(st.mass[2])
    assert 0.0 < far < 1e-15
    # the far component's mass, summed row by row in the log domain
    logits = -0.5 * (X - np.asarray(student.means)[:, 0]) ** 2
    log_psi = logits - logsumexp(logits, axis=1, keepdims=True)
    np.testing.assert_allclose(far, np.exp(log_psi[:, 2]).mean(), rtol=1e-12)
    # the gradient route loses it: pi_i - dL/da_i rounds to zero (or noise) at 1e-19
    assert abs(float(np.exp(student.log_weights[2]) - grads.log_weights[2]) - far) > 0.5 * far
    np.testing.assert_allclose(float(st.loss), float(loss), rtol=1e-14)
    np.testing.assert_allclose(-np.asarray(st.shift), np.asarray(grads.means), rtol=1e-12, atol=1e-15)
