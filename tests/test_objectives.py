"""Objectives against the papers' closed forms and against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

import overgmm as og
from helpers import central_fd


def _grad_means(teacher, student):
    return jax.grad(lambda m: og.kl(teacher, og.Mixture(m, student.weights)))(student.means)


@pytest.mark.parametrize("d", [1, 2])
def test_kl_gradient_equals_minus_E_psi_x_minus_mu(d):
    rng = np.random.default_rng(d)
    teacher = og.Mixture(rng.normal(size=(2, d)) * 2, [0.3, 0.7])
    student = og.Mixture(rng.normal(size=(4, d)) * 2, [0.1, 0.2, 0.3, 0.4])

    def integrand(x):  # (K, n, d): psi_i(x) (x - mu_i)
        psi = student.responsibilities(x)
        return psi[:, :, None] * (x[:, None, :] - student.means[None])

    closed = -og.expectation(integrand, teacher, student)
    np.testing.assert_allclose(_grad_means(teacher, student), closed, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2])
def test_lemma9_and_corollary10_single_teacher(d):
    rng = np.random.default_rng(10 + d)
    teacher = og.Mixture(np.zeros((1, d)))
    student = og.Mixture(rng.normal(size=(3, d)) * 1.5 + 0.3, [0.2, 0.5, 0.3])
    g = _grad_means(teacher, student)

    def lemma9(x):  # psi_i(x) sum_k psi_k(x) mu_k
        psi = student.responsibilities(x)
        return psi[:, :, None] * (psi @ student.means)[:, None, :]

    np.testing.assert_allclose(g, og.expectation(lemma9, teacher, student), atol=1e-12)
    cor10 = og.expectation(lambda x: jnp.sum((student.responsibilities(x) @ student.means) ** 2, -1), teacher, student)
    np.testing.assert_allclose(jnp.sum(g * student.means), cor10, rtol=1e-12)


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.floats(-4, 4), min_size=6, max_size=6),
    st.lists(st.floats(0.05, 1.0), min_size=3, max_size=3),
)
def test_theorem14_bound_and_nonnegativity(coords, raw_w):
    means = np.array(coords).reshape(3, 2)
    w = np.array(raw_w) / np.sum(raw_w)
    teacher = og.Mixture(np.zeros((1, 2)))
    val = float(og.kl(teacher, og.Mixture(means, w)))
    assert val >= -1e-15
    assert val <= 0.5 * np.sum(w * np.sum(means**2, -1)) + 1e-12
    # permuting the student's components leaves the loss unchanged
    perm = [2, 0, 1]
    assert abs(float(og.kl(teacher, og.Mixture(means[perm], w[perm]))) - val) <= 1e-14 * max(1, val)


def test_kl_gradient_against_finite_differences_means_and_weights():
    rng = np.random.default_rng(7)
    teacher = og.Mixture([[0.0, 0.0], [3.0, 1.0]], [0.4, 0.6])
    means = rng.normal(size=(3, 2)) * 2
    logits = np.log([0.2, 0.3, 0.5])
    gm, gl = jax.grad(lambda m, a: og.kl(teacher, og.Mixture(m, log_weights=a)), argnums=(0, 1))(means, logits)
    fd_m = central_fd(lambda m: og.kl(teacher, og.Mixture(m, log_weights=logits)), means)
    fd_l = central_fd(lambda a: og.kl(teacher, og.Mixture(means, log_weights=a)), logits)
    np.testing.assert_allclose(gm, fd_m, atol=1e-8)
    np.testing.assert_allclose(gl, fd_l, atol=1e-8)


def test_nll_matches_numpy_and_gradient():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 2))
    means = rng.normal(size=(3, 2))
    w = np.array([0.2, 0.3, 0.5])
    sq = np.sum((X[:, None, :] - means[None]) ** 2, -1)
    ref = -np.mean(logsumexp(-0.5 * sq + np.log(w), axis=1) - np.log(2 * np.pi))
    np.testing.assert_allclose(og.nll(og.Mixture(means, w), X), ref, rtol=1e-14)
    g = jax.grad(lambda m: og.nll(og.Mixture(m, w), X))(means)
    psi = og.Mixture(means, w).responsibilities(X)
    closed = -np.mean(np.asarray(psi)[:, :, None] * (X[:, None, :] - means[None]), axis=0)
    np.testing.assert_allclose(g, closed, atol=1e-14)
    sw = rng.uniform(size=50)
    np.testing.assert_allclose(
        og.nll(og.Mixture(means, w), X, sample_weight=sw),
        -np.sum(sw * (logsumexp(-0.5 * sq + np.log(w), axis=1) - np.log(2 * np.pi))) / sw.sum(),
        rtol=1e-14,
    )


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros(5),), "shape"),
        ((np.full((4, 2), np.nan),), "non-finite"),
        ((np.zeros((4, 3)),), "shape"),
    ],
)
def test_nll_bad_data(args, match):
    with pytest.raises(ValueError, match=match):
        og.nll(og.Mixture(np.zeros((2, 2))), *args)
    with pytest.raises(ValueError, match="non-negative"):
        og.nll(og.Mixture(np.zeros((2, 2))), np.zeros((3, 2)), sample_weight=[1.0, -1.0, 1.0])


@pytest.mark.parametrize("d", [1, 2])
def test_score_matching_gradient_lemma_b1(d):
    rng = np.random.default_rng(20 + d)
    teacher = og.Mixture(np.zeros((1, d)))
    means = rng.normal(size=(3, d)) * 1.2 + 0.2
    student = og.Mixture(means)
    g = jax.grad(lambda m: og.score_matching(teacher, og.Mixture(m), 0.0))(means)

    def lemma_b1(x):  # 2 [w_i v + w_i v^T (mu_i - v) (x - mu_i)]
        w = student.responsibilities(x)
        vv = w @ student.means
        proj = jnp.einsum("kd,nd->kn", vv, student.means) - jnp.sum(vv**2, -1)[:, None]
        diff = x[:, None, :] - student.means[None]
        return 2 * (w[:, :, None] * vv[:, None, :] + (w * proj)[:, :, None] * diff)

    np.testing.assert_allclose(g, og.expectation(lemma_b1, teacher, student), atol=1e-11)


def test_score_matching_zero_at_teacher_and_scaling_with_t():
    teacher = og.Mixture([[1.0, 0.0], [-1.0, 2.0]], [0.4, 0.6])
    for t in (0.0, 0.5, 3.0):
        assert abs(float(og.score_matching(teacher, teacher, t))) < 1e-15
    student = og.Mixture([[0.5, 0.5], [-1.0, 1.0], [2.0, 0.0]])
    vals = [float(og.score_matching(teacher, student, t)) for t in (0.0, 1.0, 4.0)]
    assert vals[0] > vals[1] > vals[2] > 0
    with pytest.raises(ValueError, match="noise level"):
        og.score_matching(teacher, student, -1.0)


def test_denoising_form_equals_population_up_to_constant():
    teacher = og.Mixture([[0.0]])
    student = og.Mixture([[1.0], [-0.5]])
    t = 0.3
    X0 = teacher.sample(jax.random.key(0), 400_000)
    key = jax.random.key(1)
    diff = og.denoising_score_matching(student, X0, t, key=key) - og.denoising_score_matching(teacher, X0, t, key=key)
    pop = og.score_matching(teacher, student, t)
    assert abs(float(diff) - float(pop)) < 0.05 * float(pop)
    with pytest.raises(ValueError, match="t > 0"):
        og.denoising_score_matching(student, X0, 0.0, key=key)
