"""Per-component expectations that keep their relative accuracy when they are
exponentially small (SPEC section 3, "tail events").

The population gradient of the KL with respect to a student mean is
``g_i = -E_{p*}[psi_i(x) (x - mu_i)]``. When component ``i`` sits far from the
teacher (Theorem 7 of Xu et al.: ``mu_1 = 12 sqrt(d) e_1``), ``psi_i`` is
exponentially small wherever the teacher has mass and ``g_i`` is, say, 1e-94. The
bulk rule (:mod:`overgmm.expectations`) returns it with an *absolute* error of about
1e-16 ``pi_i``: the control-variate form subtracts the O(``pi_i``) quantity
``E_{p_theta}[psi_i (x - mu_i)] = 0``, and teacher-centred nodes miss the region
where ``psi_i p*`` lives. This module integrates each such component on its own
nodes:

* ``psi_i`` depends on ``x`` only through its projection on the span ``D`` of the
  student mean *differences* (rank ``r_D <= min(d, n - 1)``); orthogonal to ``D`` the
  teacher component is an exact Gaussian and integrates in closed form.
* For each pair (student ``i``, teacher component ``j``) the integrand
  ``psi_i(x) N(x; mu*_j, I)`` is log-concave. Its mode is found by damped Newton
  iterations in ``D`` and the nodes are a trapezoid rule in the frame of the Hessian
  at the mode, wide enough for the exponential (not Gaussian) tails of a softmax
  transition (:data:`TAIL_RULE`).
* Node weights are carried as logarithms; sums are taken after dividing by the
  largest term, so a mass of 1e-300 keeps its relative accuracy.

:func:`line_log_gradient_norm` is the 1-D log-domain method for students on a line
learning ``N(0, I_d)`` (Lemma 9 of Xu et al.), which returns ``log |grad L|`` even
below the float64 range; experiment X3 calls it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from overgmm import _validation as v
from overgmm.mixture import Mixture

# (spacing h, half width L) of the trapezoid rule in the Hessian frame, by r_D. In that
# frame a softmax transition decays like exp(-|u|) and its nearest complex
# singularity is about pi/2 away, so h = 0.4 gives about exp(-pi^2 / h) ~ 2e-11 and
# L = 24 leaves exp(-24) ~ 4e-11 of the mass out (measured: tests/test_tails.py).
TAIL_RULE = {1: (0.35, 28.0), 2: (0.4, 24.0), 3: (0.6, 20.0)}
MAX_TAIL_RANK = 3
MAX_AUTO_TAIL_RANK = 2
# a component is integrated on its own nodes when (a bound on) its teacher mass E[psi_i]
# is below this fraction of its weight. Above it the bulk rule's absolute error (about
# 1e-15 pi_i in the gradient, Theorem 7 at d = 1) is at most about 1e-9 of the value; at
# the optimum E[psi_i] = pi_i, so exact zeros are kept. Lower than needed costs the tail
# nodes in every step of runs whose components merely wander (issue 19: 1e-3 made sweeps
# several times slower)
TAIL_SWITCH = 1e-6
NEWTON_STEPS = 20
_FRACTIONS = 2.0 ** -np.arange(0, 10)
LOG_2PI = math.log(2.0 * math.pi)


def tail_rank(n_components: int, dim: int) -> int:
    """The static rank ``r_D = min(d, n - 1)`` of the span of student mean differences."""
    return max(1, min(dim, n_components - 1))


def _grid(r: int, h: float, half_width: float) -> np.ndarray:
    """Trapezoid nodes ``(K, r)`` with spacing ``h`` in the ball of radius ``half_width``."""
    k = int(math.floor(half_width / h))
    z1 = np.arange(-k, k + 1) * h
    grids = np.meshgrid(*([z1] * r), indexing="ij")
    z = np.stack([g.ravel() for g in grids], axis=-1)
    return z[np.sum(z**2, axis=-1) <= half_width**2 * (1 + 1e-12)]


def difference_basis(means: jax.Array, r: int) -> jax.Array:
    """Orthonormal basis ``(d, r)`` containing the span of the differences of the rows
    of ``means`` (n, d) when their rank is at most ``r``. Held constant under
    differentiation."""
    a = jax.lax.stop_gradient(means)
    a = a - jnp.mean(a, axis=0, keepdims=True)
    u, _, _ = jnp.linalg.svd(a.T, full_matrices=True)
    return u[:, :r]


def _sym_solve(h: jax.Array, g: jax.Array) -> jax.Array:
    """``h^{-1} g`` for a symmetric positive definite ``h`` (r, r); closed form for r <= 2
    (elementwise operations compile much faster than a batched LAPACK call)."""
    r = h.shape[0]
    if r == 1:
        return g / h[0, 0]
    if r == 2:
        det = h[0, 0] * h[1, 1] - h[0, 1] ** 2
        return jnp.stack([h[1, 1] * g[0] - h[0, 1] * g[1], h[0, 0] * g[1] - h[0, 1] * g[0]]) / det
    return jnp.linalg.solve(h, g)


def _sym_eigh(h: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigenvalues (r,) and orthonormal eigenvectors (columns, (r, r)) of a symmetric ``h``;
    closed form for r <= 2."""
    r = h.shape[0]
    if r == 1:
        return h[0], jnp.ones((1, 1), h.dtype)
    if r == 2:
        mean, half = 0.5 * (h[0, 0] + h[1, 1]), 0.5 * (h[0, 0] - h[1, 1])
        rad = jnp.sqrt(half**2 + h[0, 1] ** 2)
        theta = 0.5 * jnp.arctan2(h[0, 1], half)
        c, s = jnp.cos(theta), jnp.sin(theta)
        return jnp.stack([mean - rad, mean + rad]), jnp.stack([jnp.stack([-s, c]), jnp.stack([c, s])], axis=1)
    return jnp.linalg.eigh(h)


def _mode(const: jax.Array, b: jax.Array, i: jax.Array) -> jax.Array:
    """Maximiser ``y`` (r,) of ``log_softmax(const + b y)_i - |y|^2 / 2`` by damped Newton.

    ``const`` (n,), ``b`` (n, r); strictly concave (Hessian between ``-I`` and
    ``-(1 + max|b|^2) I``), so backtracking over fixed step fractions converges."""
    r = b.shape[1]
    fr = jnp.asarray(_FRACTIONS)

    def phi(y):
        lg = const + b @ y
        return lg[i] - logsumexp(lg) - 0.5 * jnp.sum(y**2)

    def body(_, y):
        p = jax.nn.softmax(const + b @ y)
        bbar = p @ b
        g = b[i] - bbar - y
        h = jnp.eye(r) + (b * p[:, None]).T @ b - jnp.outer(bbar, bbar)
        step = _sym_solve(h, g)
        cand = y[None, :] + fr[:, None] * step[None, :]
        vals = jax.vmap(phi)(cand)
        best = jnp.argmax(vals)
        return jnp.where(vals[best] > phi(y), cand[best], y)

    return jax.lax.fori_loop(0, NEWTON_STEPS, body, jnp.zeros((r,), const.dtype))


class TailNodes(NamedTuple):
    """Nodes for the per-component integrals, all held constant under differentiation.

    Attributes:
      x: ``(n, m, K, d)`` points; ``x[i, j]`` are the nodes of student ``i`` under
        teacher component ``j``.
      log_w: ``(n, m, K)`` logs of the weights (teacher weight times node weight), so
        that ``E_{p*}[f psi_i] ~ sum_{j, k} exp(log_w[i, j, k]) f(x[i, j, k]) psi_i(x[i, j, k])``.
    """

    x: jax.Array
    log_w: jax.Array


def tail_nodes(teacher: Mixture, student: Mixture, rank: int | None = None) -> TailNodes:
    """Per-pair nodes in the Hessian frame at the mode of ``psi_i N(mu*_j, I)``."""
    t = jax.lax.stop_gradient(teacher)
    s = jax.lax.stop_gradient(student)
    n, d = s.means.shape
    r = tail_rank(n, d) if rank is None else rank
    h, hw = TAIL_RULE[r]
    u = jnp.asarray(_grid(r, h, hw))  # (K, r)
    q = difference_basis(s.means, r)  # (d, r)
    b = s.means @ q  # (n, r)
    s_lw = s.log_weights - logsumexp(s.log_weights)
    t_lw = t.log_weights - logsumexp(t.log_weights)
    const = t.means @ s.means.T - 0.5 * jnp.sum(s.means**2, axis=-1) + s_lw  # (m, n)

    def pair(i, j):
        c = const[j]
        y0 = _mode(c, b, i)
        p = jax.nn.softmax(c + b @ y0)
        bbar = p @ b
        hess = jnp.eye(r) + (b * p[:, None]).T @ b - jnp.outer(bbar, bbar)
        lam, vec = _sym_eigh(hess)
        a = vec / jnp.sqrt(lam)[None, :]  # y = y0 + a u
        y = y0[None, :] + u @ a.T
        half_logdet = 0.5 * jnp.sum(jnp.log(lam))
        log_w = r * math.log(h) - half_logdet - 0.5 * jnp.sum(y**2, axis=-1) - 0.5 * r * LOG_2PI
        return t.means[j] + y @ q.T, log_w + t_lw[j]

    ii, jj = jnp.meshgrid(jnp.arange(n), jnp.arange(t.n_components), indexing="ij")
    return TailNodes(*jax.vmap(jax.vmap(pair))(ii, jj))


def _log_psi_own(student: Mixture, x: jax.Array) -> jax.Array:
    """``log psi_i(x[i, ...])`` for nodes ``x`` of shape ``(n, ..., d)``: shape ``(n, ...)``."""
    lg = student.component_logits(x)  # (n, ..., n)
    log_psi = lg - logsumexp(lg, axis=-1, keepdims=True)
    n = student.n_components
    flat = log_psi.reshape((n, -1, n))
    return flat[jnp.arange(n), :, jnp.arange(n)].reshape(x.shape[:-1])


def _masses_and_moments(student: Mixture, nodes: TailNodes) -> tuple[jax.Array, jax.Array]:
    """``log E_{p*}[psi_i]`` (n,) and ``E_{p*}[psi_i (x - mu_i)]`` (n, d) from one evaluation
    of ``psi`` on the nodes, both scaled by the largest term (relative accuracy)."""
    n = student.n_components
    lp = (_log_psi_own(student, nodes.x) + nodes.log_w).reshape(n, -1)
    top = jax.lax.stop_gradient(jnp.max(lp, axis=-1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    w = jnp.exp(lp - top)
    dx = nodes.x.reshape(n, -1, student.dim) - student.means[:, None, :]
    return top[:, 0] + jnp.log(jnp.sum(w, axis=-1)), jnp.exp(top) * jnp.einsum("ik,ikd->id", w, dx)


def log_masses(teacher: Mixture, student: Mixture, nodes: TailNodes | None = None) -> jax.Array:
    """``log E_{p*}[psi_i]`` (n,), relatively accurate far below the float64 range."""
    return _masses_and_moments(student, tail_nodes(teacher, student) if nodes is None else nodes)[0]


def first_moments(teacher: Mixture, student: Mixture, nodes: TailNodes | None = None) -> jax.Array:
    """``E_{p*}[psi_i (x - mu_i)]`` (n, d), each row to relative accuracy (down to the
    smallest positive float64); differentiable in the student means."""
    return _masses_and_moments(student, tail_nodes(teacher, student) if nodes is None else nodes)[1]


def log_mass_bounds(teacher: Mixture, student: Mixture) -> jax.Array:
    """Upper bounds on ``log E_{p*}[psi_i]`` (n,) in closed form, cheap enough to decide the
    switch inside every evaluation (no nodes, no Newton steps).

    For every other component ``k``, ``psi_i <= sigmoid(s) <= min(1, e^s) <= e^{lam s}``
    (any ``lam`` in [0, 1]) with ``s = l_i(x) - l_k(x)`` linear in ``x``; under teacher
    component ``j``, ``s ~ N(mu, sigma^2)`` with ``mu = (mu_i - mu_k) . mu*_j + c_ik`` and
    ``sigma = |mu_i - mu_k|``, so ``E[psi_i] <= exp(lam mu + lam^2 sigma^2 / 2)``, smallest at
    ``lam = clip(-mu / sigma^2, 0, 1)``. The bound is the smallest over ``k``, summed over
    ``j`` with the teacher's weights: ``exp(-a^2 / 8)`` at Theorem 7's point, against a true
    mass of about ``2 Phi(-a / 2)`` (a factor ``0.6 a`` above it)."""
    t = jax.lax.stop_gradient(teacher)
    s = jax.lax.stop_gradient(student)
    n = s.n_components
    s_lw = s.log_weights - logsumexp(s.log_weights)
    t_lw = t.log_weights - logsumexp(t.log_weights)
    sq = jnp.sum(s.means**2, axis=-1)
    delta = s.means[:, None, :] - s.means[None, :, :]  # (n, n, d): mu_i - mu_k
    c = -0.5 * (sq[:, None] - sq[None, :]) + s_lw[:, None] - s_lw[None, :]  # (n, n)
    mu = jnp.einsum("ikd,jd->ikj", delta, t.means) + c[:, :, None]  # (n, n, m)
    var = jnp.sum(delta**2, axis=-1)[:, :, None]  # sigma^2
    # E[min(1, e^s)] <= E[e^{lam s}] = exp(lam mu + lam^2 var / 2) for lam in [0, 1], at its best lam
    bound = jnp.where(mu >= 0, 0.0, jnp.where(mu <= -var, mu + 0.5 * var, -0.5 * mu**2 / jnp.where(var > 0, var, 1.0)))
    bound = jnp.where(jnp.eye(n, dtype=bool)[:, :, None], 0.0, bound)  # k = i: psi_i <= 1
    return logsumexp(jnp.min(bound, axis=1) + t_lw[None, :], axis=-1)


def live_components(teacher: Mixture, student: Mixture) -> jax.Array:
    """Which components (n,) get their gradient from their own nodes: those whose bound
    on ``E_{p*}[psi_i]`` is below ``TAIL_SWITCH pi_i`` (a component found live is truly in
    the tail; one whose mass is small but not that small keeps the bulk rule, whose
    absolute accuracy is then still relative to ``1e-9`` or better)."""
    return _live(jax.lax.stop_gradient(teacher), jax.lax.stop_gradient(student))


@jax.jit
def _live(teacher: Mixture, student: Mixture) -> jax.Array:
    s_lw = student.log_weights - logsumexp(student.log_weights)
    return log_mass_bounds(teacher, student) < s_lw + math.log(TAIL_SWITCH)


def tail_terms(teacher: Mixture, student: Mixture) -> tuple[jax.Array, jax.Array]:
    """``(log E_{p*}[psi_i]`` (n,), ``E_{p*}[psi_i (x - mu_i)]`` (n, d)) for every component
    on its own nodes, held constant under differentiation (the surrogates below carry
    them as gradients)."""
    t, s = jax.lax.stop_gradient(teacher), jax.lax.stop_gradient(student)
    return _masses_and_moments(s, tail_nodes(t, s))


def own_statistics(teacher: Mixture, student: Mixture, live: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``E_{p*}[psi_i]`` (n,) and ``E_{p*}[psi_i (x - mu_i)]`` (n, d) for the components that do
    not take theirs from the bulk rule (:func:`own`; zeros elsewhere), computed only when
    some are live: with values at hand (an eager call, or ``jax.grad`` outside ``jit``)
    Python decides, so nothing is compiled for the tails unless they are needed; under
    ``jit`` a loop of 0 or 1 iterations skips the nodes at run time (its body compiles),
    and under ``vmap`` runs once for the whole batch when some run needs it.

    * A live component: on its own nodes, to relative accuracy.
    * The one bulk component when every other one is live (Theorem 7's component at the
      teacher), in its complement form ``psi_b = 1 - sum_{k live} psi_k``:
      ``E[psi_b] = 1 - sum_k E[psi_k]`` and ``E[psi_b (x - mu_b)] = (E_{p*}[x] - mu_b) -
      sum_k (E[psi_k (x - mu_k)] + (mu_k - mu_b) E[psi_k])``, the teacher's mean exact and
      every other term relative to the live masses. The bulk rule returns that moment with
      an absolute error of about 1e-17, which swamps a true value of 1e-95.
    """
    t, s = jax.lax.stop_gradient(teacher), jax.lax.stop_gradient(student)
    if v.is_concrete(live):
        if bool(jnp.any(live)):
            return _own_statistics_jit(t, s, live)
        return _no_statistics(s)
    return _own_statistics_cond(t, s, live)


def _own_statistics_cond(t: Mixture, s: Mixture, live: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``_own_statistics`` when some component is live, else zeros: a ``while_loop`` of 0 or
    1 iterations rather than a ``lax.cond``, because under ``vmap`` (a batch of runs) a
    cond on a batched predicate becomes a ``select`` that evaluates the tail nodes in every
    step of every run, while the loop runs once for the whole batch only when some run
    needs it (and not at all otherwise)."""

    def body(carry):
        # the inputs travel in the carry through an optimization barrier: a carry passed
        # through unchanged becomes a loop constant, and the work on it was hoisted out of
        # the loop (run even with zero iterations)
        args = jax.lax.optimization_barrier(carry[1])
        return jnp.zeros((), bool), args, _own_statistics(*args)

    return jax.lax.while_loop(lambda carry: carry[0], body, (jnp.any(live), (t, s, live), _no_statistics(s)))[2]


def _no_statistics(s: Mixture) -> tuple[jax.Array, jax.Array]:
    n, d = s.means.shape
    return jnp.zeros((n,), s.means.dtype), jnp.zeros((n, d), s.means.dtype)


def _own_statistics(t: Mixture, s: Mixture, live: jax.Array) -> tuple[jax.Array, jax.Array]:
    sole = sole_bulk(live)
    log_mass, m1 = tail_terms(t, s)
    mass = jnp.where(live, jnp.exp(log_mass), 0.0)
    m1 = jnp.where(live[:, None], m1, 0.0)
    t_mean = jax.nn.softmax(t.log_weights) @ t.means
    s1 = jnp.sum(m1 + s.means * mass[:, None], axis=0)  # (d,)
    s0 = jnp.sum(mass)
    sole_moment = (t_mean[None, :] - s.means) - s1[None, :] + s.means * s0
    moment = jnp.where(live[:, None], m1, jnp.where(sole[:, None], sole_moment, 0.0))
    return jnp.where(live, mass, jnp.where(sole, 1.0 - s0, 0.0)), moment


_own_statistics_jit = jax.jit(_own_statistics)


def replaced_statistics(teacher: Mixture, student: Mixture) -> tuple[jax.Array, jax.Array, jax.Array] | None:
    """``(which (n,), E_{p*}[psi_i] (n,), E_{p*}[psi_i (x - mu_i)] (n, d))`` for the components
    whose statistics the bulk rule cannot give to relative accuracy (:func:`own`), or
    ``None`` when values are at hand and no component is live (nothing to trace)."""
    live = live_components(teacher, student)
    if v.is_concrete(live) and not bool(jnp.any(live)):
        return None
    mass, moment = own_statistics(teacher, student, live)
    return own(live), mass, moment


def own(live: jax.Array) -> jax.Array:
    """The components (n,) whose statistics :func:`own_statistics` replaces: the live ones
    and the sole bulk one."""
    return live | sole_bulk(live)


def sole_bulk(live: jax.Array) -> jax.Array:
    """The bulk component (n,) when it is the only one (all others live); else all False."""
    return ~live & (jnp.sum(~live) == 1) & jnp.any(live)


def surrogate(student: Mixture, grad: jax.Array, curvature: jax.Array) -> jax.Array:
    """A scalar whose value is 0 and whose gradient with respect to the means is ``grad``
    (n, d) (second derivative ``curvature_i I``); 0 for the other parameters."""
    delta = student.means - jax.lax.stop_gradient(student.means)
    g, h = jax.lax.stop_gradient(grad), jax.lax.stop_gradient(curvature)
    return jnp.sum(g * delta) + 0.5 * jnp.sum(h[:, None] * delta**2)


# -- X3's 1-D log-domain method (numpy) ---------------------------------------------


def _lse(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m + np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)), axis=axis)


def line_log_gradient_norm(positions, weights=None, *, h_scale: float = 0.2, tail: float = 12.0) -> float:
    """``log |grad L|`` (natural log) for a student whose means lie on one line, at the
    signed ``positions`` (n,) along a unit vector, learning ``N(0, I_d)``, for any d.

    Uses Lemma 9 of Xu et al. (teacher at 0): ``grad_i = E[psi_i(x) sum_k psi_k(x) mu_k]
    = sum_k M_ik mu_k`` with ``M_ik = E[psi_i psi_k]`` (all positive), each ``M_ik``
    computed in the log domain by a trapezoid rule in ``z = x_1`` (the integrand depends
    on ``x`` only through it): spacing ``h = min(0.05, h_scale / max|mu|)`` (the
    softmax transitions have width 1/|mu|), range ``|z| <= max|mu| / 2 + tail`` (the
    mass sits near ``+-|mu|/2``; beyond it the Gaussian tail falls faster than
    ``exp(-|mu| t / 2 - t^2 / 2)``). The sum over k is taken after dividing by the
    largest ``M``, so no term underflows and there is no cancellation of O(1)
    quantities: the result keeps its relative accuracy far below 1e-300.
    """
    m = np.asarray(positions, float)
    n = len(m)
    log_pi = np.log(np.full(n, 1.0 / n) if weights is None else np.asarray(weights, float))
    a = max(float(np.max(np.abs(m))), 1e-12)
    h = min(0.05, h_scale / a)
    k = int(math.ceil((a / 2 + tail) / h))
    z = np.arange(-k, k + 1) * h
    logits = z[:, None] * m[None, :] - 0.5 * m[None, :] ** 2 + log_pi[None, :]
    log_psi = logits - _lse(logits, axis=1)[:, None]
    log_w = math.log(h) - 0.5 * z**2 - 0.5 * LOG_2PI
    log_m = np.empty((n, n))
    for i in range(n):
        log_m[i] = _lse(log_w[:, None] + log_psi[:, i : i + 1] + log_psi, axis=0)
    top = np.max(log_m)
    g = np.exp(log_m - top) @ m
    return float(top + math.log(np.sqrt(np.sum(g**2))))
