"""Objectives (SPEC section 2): pure functions, differentiable in the student.

* :func:`kl` - ``KL(p* || p_theta)`` against a known teacher (population);
  :func:`kl_em_statistics` - its EM statistics, small components to relative accuracy.
* :func:`nll` - mean negative log-likelihood of a sample.
* :func:`score_matching` - the population score-matching loss at noise level ``t``.
* :func:`denoising_score_matching` - the same objective on data (DDPM form).

All return float64 JAX scalars. Differentiate through construction:
``jax.grad(lambda m: kl(teacher, Mixture(m, w)))(means)``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from overgmm import _validation as v
from overgmm import tails
from overgmm._eager import compiled_when_eager
from overgmm.expectations import Backend, Estimate, Quadrature, describe, expectation
from overgmm.mixture import Mixture

KL_FORMS = ("control-variate", "plain")
_EXPM1_SWITCH = 30.0


def _check_pair(teacher: Mixture, student: Mixture) -> None:
    if not isinstance(teacher, Mixture) or not isinstance(student, Mixture):
        raise TypeError(
            f"teacher and student must be overgmm.Mixture, got {type(teacher).__name__} and {type(student).__name__}"
        )
    if teacher.dim != student.dim:
        raise ValueError(f"teacher has dimension {teacher.dim} but student has dimension {student.dim}")
    for who, m in (("teacher", teacher), ("student", student)):
        if m.cov_type.learned:
            raise ValueError(
                f"population objectives (quadrature on the span of the means) support identity covariances "
                f"only; the {who} has covariance_type={m.covariance_type!r}. Learned covariances are fitted "
                "on data: nll(student, X) or denoising_score_matching(student, X0, t)"
            )


def log_ratio(teacher: Mixture, student: Mixture, x: jax.Array) -> jax.Array:
    """``log p_theta(x) - log p*(x)``, shape ``(K,)`` for ``x`` of shape ``(K, d)``."""
    return logsumexp(student.component_logits(x), axis=-1) - logsumexp(teacher.component_logits(x), axis=-1)


def kl(
    teacher: Mixture,
    student: Mixture,
    *,
    backend: Backend | None = None,
    key: jax.Array | None = None,
    form: str = "control-variate",
    with_error: bool = False,
):
    """``KL(teacher || student)``, a float64 scalar.

    Args:
      teacher: ground truth ``p*`` (m components, dimension d).
      student: model ``p_theta`` (n components, same d).
      backend: :class:`~overgmm.Quadrature` (default: trapezoid on the span of the
        means, defensive nodes) or :class:`~overgmm.MonteCarlo`.
      key: PRNG key for ``MonteCarlo(fresh=True)``.
      form: ``"control-variate"`` integrates ``rho - 1 - log rho`` (``rho = p_theta/p*``),
        which is exactly 0 with zero gradient at a student equal to the teacher or
        splitting its components; ``"plain"`` integrates ``-log rho``.
      with_error: return an :class:`~overgmm.Estimate` (value, error estimate, backend).

    The gradient with respect to ``mu_i`` is ``-E_{p*}[psi_i(x) (x - mu_i)]`` (SPEC 2.1).
    With a :class:`~overgmm.Quadrature` backend whose ``tails`` option is active, a
    component whose teacher mass ``E[psi_i]`` is below ``TAIL_SWITCH pi_i``
    (:mod:`overgmm.tails`) gets that gradient from its own nodes, to relative accuracy
    even when it is exponentially small (Theorem 7 of Xu et al.); the value and all
    other derivatives come from the bulk rule.
    """
    _check_pair(teacher, student)
    v.check_choice(form, KL_FORMS, "KL form")
    if with_error:  # the compiled part returns (value, error); the Estimate's text is static
        value, error = _kl(teacher, student, key, backend=backend, form=form, with_error=True)
        return Estimate(value, error, describe(teacher, student, backend, importance=form != "plain"))
    return _kl(teacher, student, key, backend=backend, form=form, with_error=False)


@compiled_when_eager(static_argnames=("backend", "form", "with_error"))
def _kl(teacher: Mixture, student: Mixture, key, *, backend: Backend | None, form: str, with_error: bool):
    resolved = Quadrature() if backend is None else backend
    surrogate: jax.Array | float = 0.0
    if isinstance(resolved, Quadrature) and resolved.tails_active(student.n_components, student.dim):
        replaced = tails.replaced_statistics(teacher, student)
        if replaced is not None:
            held, mass, moment = replaced
            surrogate = tails.surrogate(student, -moment, mass)
            student = student.replace(
                means=jnp.where(held[:, None], jax.lax.stop_gradient(student.means), student.means)
            )

    if form == "plain":

        def integrand(x, log_w):
            return -jnp.exp(log_w) * log_ratio(teacher, student, x)

    else:

        def integrand(x, log_w):
            # w (rho - 1 - log rho): expm1 near rho = 1 (the optimum) for exactness; for
            # large rho the product w rho = exp(log w + log rho) is formed in the log
            # domain (far from the teacher w underflows where rho overflows)
            lr = log_ratio(teacher, student, x)
            small = jnp.minimum(lr, _EXPM1_SWITCH)
            large = jnp.maximum(lr, _EXPM1_SWITCH)
            w = jnp.exp(log_w)
            return jnp.where(
                lr < _EXPM1_SWITCH,
                w * (jnp.expm1(small) - small),
                jnp.exp(log_w + large) - w * (1 + large),
            )

    out = expectation(
        integrand,
        teacher,
        student,
        backend,
        key=key,
        importance=(form != "plain"),
        log_weighted=True,
        with_error=with_error,
    )
    if with_error:
        return out.value + surrogate, out.error
    return out + surrogate


def kl_em_statistics(
    teacher: Mixture, student: Mixture, *, backend: Backend | None = None, key: jax.Array | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The KL and its EM statistics: ``(L, E_{p*}[psi_i]`` (n,), ``E_{p*}[psi_i (x - mu_i)]`` (n, d)).

    From the control-variate gradient (``pi_i - dL/da_i`` and ``-dL/dmu_i``, exact at the
    optimum) for the bulk components; with the tail nodes active (:mod:`overgmm.tails`),
    a component whose mass is below ``TAIL_SWITCH pi_i`` gets both from its own nodes,
    each to relative accuracy, and so does the sole bulk component when all others are
    that small (its complement form). ``pi_i - dL/da_i`` cannot give such a mass: it
    cancels to rounding noise once ``E[psi_i] < 1e-16 pi_i``.
    """
    _check_pair(teacher, student)
    return _kl_em_statistics(teacher, student, key, backend=backend)


@compiled_when_eager(static_argnames=("backend",))
def _kl_em_statistics(teacher: Mixture, student: Mixture, key, *, backend: Backend | None):
    resolved = Quadrature() if backend is None else backend
    active = isinstance(resolved, Quadrature) and resolved.tails_active(student.n_components, student.dim)
    bulk = dataclasses.replace(resolved, tails="off") if isinstance(resolved, Quadrature) else resolved
    loss, g = jax.value_and_grad(lambda s: kl(teacher, s, backend=bulk, key=key))(student)
    lw = student.log_weights - logsumexp(student.log_weights)
    mass, moment = jnp.exp(lw) - g.log_weights, -g.means
    replaced = tails.replaced_statistics(teacher, student) if active else None
    if replaced is not None:
        held, own_mass, own_moment = replaced
        mass = jnp.where(held, own_mass, mass)
        moment = jnp.where(held[:, None], own_moment, moment)
    return loss, mass, moment


def nll(student: Mixture, X, *, sample_weight=None, missing: bool = False) -> jax.Array:
    """Mean negative log-likelihood ``-(1/N) sum_k log p_theta(x_k)`` of data ``X`` (N, d).

    ``sample_weight`` (N,), non-negative, gives a weighted mean. ``missing=True``: NaN
    entries are missing, each row's likelihood its marginal over its observed features.
    """
    if not isinstance(student, Mixture):
        raise TypeError(f"student must be overgmm.Mixture, got {type(student).__name__}")
    X = v.as_float_array(X, "X")
    if X.ndim != 2 or X.shape[1] != student.dim:
        raise ValueError(f"X must have shape (n_samples, {student.dim}), got shape {tuple(X.shape)}")
    if X.shape[0] < 1:
        raise ValueError("X has no samples")
    v.check_finite(X, "X", allow_nan=missing)
    lp = student.log_prob(X, missing=missing)
    if sample_weight is None:
        return -jnp.mean(lp)
    sw = v.check_sample_weight(sample_weight, X.shape[0])
    return -jnp.sum(sw * lp) / jnp.sum(sw)


def _scaled(m: Mixture, t) -> Mixture:
    return m.replace(means=jnp.exp(-t) * m.means)


def _diffused(m: Mixture, t) -> Mixture:
    """The mixture pushed through the OU process to time ``t``: means ``e^{-t} mu_i`` and
    covariances ``e^{-2t} Sigma_i + (1 - e^{-2t}) I`` (identity stays identity)."""
    if not m.cov_type.learned:
        return _scaled(m, t)
    a2, s2 = jnp.exp(-2.0 * t), -jnp.expm1(-2.0 * t)
    return _scaled(m, t).with_covariances(m.cov_type.blend_identity(m.covariances, a2, s2))


def student_score(student: Mixture, x: jax.Array, t) -> jax.Array:
    """The score ``grad_x log p_t(x)`` (K, d) at points ``x`` (K, d) of the student pushed to
    noise level ``t`` (:func:`_diffused`). Identity: ``sum_i w_i(x) mu_{i,t} - x`` (Zhang et al.)."""
    st = _diffused(student, t)
    if not st.cov_type.learned:
        return jax.nn.softmax(st.component_logits(x), axis=-1) @ st.means - x
    return jax.vmap(jax.grad(lambda y: st.log_prob(y)))(x)


def score_matching(
    teacher: Mixture,
    student: Mixture,
    t=0.0,
    *,
    backend: Backend | None = None,
    key: jax.Array | None = None,
    with_error: bool = False,
):
    """Population score-matching loss ``L_t`` at noise level ``t >= 0`` (Zhang et al.).

    ``L_t = E_{x~q_t} |sum_i w_i(x) mu_{i,t} - sum_j w*_j(x) mu*_{j,t}|^2`` with
    ``mu_{i,t} = exp(-t) mu_i``, ``q_t`` the teacher with means ``exp(-t) mu*_j``, and
    ``w`` the responsibilities (the student's weights honoured; equal weights, as in the
    paper, when the student was built without weights).

    The student's means are the time-0 parameters ``mu~_i``. Gradient descent on
    them with step ``eta`` equals the paper's descent on ``mu_{i,t}`` with step
    ``eta exp(-2t)``; at ``t = 0`` the two coincide.
    """
    _check_pair(teacher, student)
    if v.is_concrete(t) and not (math.isfinite(float(t)) and float(t) >= 0):
        raise ValueError(f"noise level t must be finite and >= 0, got {t!r}")
    if with_error:  # the compiled part returns (value, error); the Estimate's text is static
        value, error = _score_matching(teacher, student, t, key, backend=backend, with_error=True)
        return Estimate(value, error, describe(teacher, student, backend, importance=False))
    return _score_matching(teacher, student, t, key, backend=backend, with_error=False)


@compiled_when_eager(static_argnames=("backend", "with_error"))
def _score_matching(teacher: Mixture, student: Mixture, t, key, *, backend: Backend | None, with_error: bool):
    qt = _scaled(teacher, t)
    st = _scaled(student, t)

    def integrand(x):
        vs = jax.nn.softmax(st.component_logits(x), axis=-1) @ st.means
        vt = jax.nn.softmax(qt.component_logits(x), axis=-1) @ qt.means
        return jnp.sum((vs - vt) ** 2, axis=-1)

    backend = Quadrature() if backend is None else backend
    out = expectation(integrand, qt, st, backend, key=key, importance=False, with_error=with_error)
    return (out.value, out.error) if with_error else out


def denoising_score_matching(student: Mixture, X0, t, *, key: jax.Array, n_noise: int = 1) -> jax.Array:
    """The score-matching objective on data (DDPM form), equal to ``L_t`` up to a constant.

    ``E_{x0, z} |s_t(e^{-t} x0 + sigma z) + z / sigma|^2`` with ``sigma = sqrt(1 - e^{-2t})``,
    ``s_t(x) = sum_i w_i(x) mu_{i,t} - x`` (identity covariances; for learned covariances the
    score of the student pushed to noise level ``t``, see :func:`student_score`), averaged
    over the rows of ``X0`` (N, d) and ``n_noise`` noise draws per row from ``key``. Needs ``t > 0``.
    """
    if not isinstance(student, Mixture):
        raise TypeError(f"student must be overgmm.Mixture, got {type(student).__name__}")
    X0 = v.as_float_array(X0, "X0")
    if X0.ndim != 2 or X0.shape[1] != student.dim:
        raise ValueError(f"X0 must have shape (n_samples, {student.dim}), got shape {tuple(X0.shape)}")
    v.check_finite(X0, "X0")
    if v.is_concrete(t) and not (math.isfinite(float(t)) and float(t) > 0):
        raise ValueError(f"denoising score matching needs a noise level t > 0, got {t!r}")
    n_noise = v.check_positive_int(n_noise, "n_noise")
    sigma = jnp.sqrt(-jnp.expm1(-2.0 * t))
    z = jax.random.normal(key, (n_noise,) + X0.shape, dtype=jnp.float64)
    xt = jnp.exp(-t) * X0 + sigma * z
    score = student_score(student, xt.reshape(-1, X0.shape[1]), t).reshape(xt.shape)
    return jnp.mean(jnp.sum((score + z / sigma) ** 2, axis=-1))
