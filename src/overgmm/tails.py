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

from overgmm.mixture import Mixture

# (spacing h, half width L) of the trapezoid rule in the Hessian frame, by r_D. In that
# frame a softmax transition decays like exp(-|u|) and its nearest complex
# singularity is about pi/2 away, so h = 0.4 gives about exp(-pi^2 / h) ~ 2e-11 and
# L = 24 leaves exp(-24) ~ 4e-11 of the mass out (measured: tests/test_tails.py).
TAIL_RULE = {1: (0.35, 28.0), 2: (0.4, 24.0), 3: (0.6, 20.0)}
MAX_TAIL_RANK = 3
MAX_AUTO_TAIL_RANK = 2
# a component is integrated on its own nodes when its teacher mass E[psi_i] is below
# this fraction of its weight (the control-variate rule then has an absolute error
# comparable to its value); at the optimum E[psi_i] = pi_i, so exact zeros are kept
TAIL_SWITCH = 1e-3
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
        step = jnp.linalg.solve(h, g)
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
      log_laplace: ``(n, m)`` Laplace estimates of ``log pi*_j E_j[psi_i]``.
    """

    x: jax.Array
    log_w: jax.Array
    log_laplace: jax.Array

    def log_masses_laplace(self) -> jax.Array:
        """Laplace estimates of ``log E_{p*}[psi_i]`` (n,), cheap (no node evaluations);
        within a factor of a few of the true value (used to decide the switch)."""
        return logsumexp(self.log_laplace, axis=-1)


def tail_nodes(teacher: Mixture, student: Mixture, rank: int | None = None, *, grid: bool = True) -> TailNodes:
    """Per-pair nodes in the Hessian frame at the mode of ``psi_i N(mu*_j, I)``
    (``grid=False``: no nodes, only the modes and the Laplace estimates; cheap)."""
    t = jax.lax.stop_gradient(teacher)
    s = jax.lax.stop_gradient(student)
    n, d = s.means.shape
    r = tail_rank(n, d) if rank is None else rank
    h, hw = TAIL_RULE[r]
    u = jnp.asarray(_grid(r, h, hw) if grid else np.zeros((0, r)))  # (K, r)
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
        lam, vec = jnp.linalg.eigh(hess)
        a = vec / jnp.sqrt(lam)[None, :]  # y = y0 + a u
        y = y0[None, :] + u @ a.T
        half_logdet = 0.5 * jnp.sum(jnp.log(lam))
        log_w = r * math.log(h) - half_logdet - 0.5 * jnp.sum(y**2, axis=-1) - 0.5 * r * LOG_2PI
        lg = c + b @ y0
        laplace = lg[i] - logsumexp(lg) - 0.5 * jnp.sum(y0**2) - half_logdet
        return t.means[j] + y @ q.T, log_w + t_lw[j], laplace + t_lw[j]

    ii, jj = jnp.meshgrid(jnp.arange(n), jnp.arange(t.n_components), indexing="ij")
    x, log_w, log_laplace = jax.vmap(jax.vmap(pair))(ii, jj)
    return TailNodes(x, log_w, log_laplace)


def _log_psi_own(student: Mixture, x: jax.Array) -> jax.Array:
    """``log psi_i(x[i, ...])`` for nodes ``x`` of shape ``(n, ..., d)``: shape ``(n, ...)``."""
    lg = student.component_logits(x)  # (n, ..., n)
    log_psi = lg - logsumexp(lg, axis=-1, keepdims=True)
    n = student.n_components
    flat = log_psi.reshape((n, -1, n))
    return flat[jnp.arange(n), :, jnp.arange(n)].reshape(x.shape[:-1])


def log_masses(teacher: Mixture, student: Mixture, nodes: TailNodes | None = None) -> jax.Array:
    """``log E_{p*}[psi_i]`` (n,), relatively accurate far below the float64 range."""
    nodes = tail_nodes(teacher, student) if nodes is None else nodes
    lp = _log_psi_own(student, nodes.x) + nodes.log_w
    return logsumexp(lp.reshape(lp.shape[0], -1), axis=-1)


def first_moments(teacher: Mixture, student: Mixture, nodes: TailNodes | None = None) -> jax.Array:
    """``E_{p*}[psi_i (x - mu_i)]`` (n, d), each row to relative accuracy (down to the
    smallest positive float64); differentiable in the student means."""
    nodes = tail_nodes(teacher, student) if nodes is None else nodes
    n = student.n_components
    lp = (_log_psi_own(student, nodes.x) + nodes.log_w).reshape(n, -1)
    top = jax.lax.stop_gradient(jnp.max(lp, axis=-1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    dx = nodes.x.reshape(n, -1, student.dim) - student.means[:, None, :]
    return jnp.exp(top) * jnp.einsum("ik,ikd->id", jnp.exp(lp - top), dx)


def plain_surrogate(teacher: Mixture, student: Mixture, nodes: TailNodes, live: jax.Array) -> jax.Array:
    """A scalar whose value is 0 and whose gradient with respect to ``mu_i`` is
    ``-E_{p*}[psi_i (x - mu_i)]`` on the nodes of component ``i`` for ``live[i]``, and
    0 otherwise. Its gradients with respect to the other parameters are 0; its second
    derivative in ``mu_i`` is the plain form's on those nodes."""
    s0 = jax.lax.stop_gradient(student)
    n = student.n_components
    onehot = jnp.eye(n)

    def one(i):
        means = s0.means + onehot[i][:, None] * (student.means - s0.means)
        m_i = Mixture.tree_unflatten(None, (means, s0.log_weights))
        lg = m_i.component_logits(nodes.x[i])  # (m, K, n)
        w = jnp.exp(nodes.log_w[i])
        return -jnp.sum(w * logsumexp(lg, axis=-1))

    vals = jax.vmap(one)(jnp.arange(n))
    vals = jnp.where(live, vals, 0.0)
    total = jnp.sum(vals)
    return total - jax.lax.stop_gradient(total)


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
