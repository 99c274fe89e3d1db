"""The anisotropic quadrature rule, ``Quadrature(rule="anisotropic")`` (issue 11).

Near an optimum the control-variate integrand ``rho - 1 - log rho`` is sharp only
across the softmax transitions between *teacher* components (width ``1/|mu*_j - mu*_k|``,
0.17 for means 6 apart), and those depend on ``x`` only through its projection on the
span ``T`` of the teacher mean differences (rank ``s <= m - 1``). In the rest of the
span the integrand is a Gaussian times a slowly varying function. So the frame is
rotated to ``T`` plus its complement in ``V``, and:

* teacher-centred nodes: a fine trapezoid rule on ``T`` (spacing ``h``, pruned to the
  ball of radius ``L``) times a Gauss-Hermite tensor rule on the complement;
* student-centred (defensive) nodes: the default isotropic trapezoid rule, under the
  defensive mixture ``q = (1 - eps) p* + eps p_theta`` with a small ``eps``, so that
  their coarser rule only weighs ``eps`` near the optimum while still covering
  student mass far from the teacher.

Exactness at the teacher and at split teachers is kept (the integrand is 0 there).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from overgmm.mixture import Mixture

# quadrature nodes whose weight is below this cannot matter at float64 precision: dropped
# (the one threshold of every rule; expectations.py uses it too)
PRUNE_BELOW = 1e-18
# centres x nodes x components up to which the sum over centres keeps what the gradient
# needs instead of recomputing each centre in the backward pass: W1's value and gradient
# (3 centres x 16875 nodes x 23 components, 1.16M entries) 1.2x faster on one thread,
# 1.3x on two, for about 31 bytes per entry kept (a batch of 32 such trials peaks at
# 1.9 GB against 0.76 GB); above it, the memory of one centre, not of all
STORED_ENTRIES = 1 << 21


def components_per_node(teacher: Mixture, student: Mixture | None, defensive: bool) -> int:
    """The components an integrand evaluates at each node (both mixtures), twice that with
    ``defensive`` node weights (which evaluate both again): :func:`sum_over_centres`' width."""
    width = teacher.n_components + (0 if student is None else student.n_components)
    return 2 * width if defensive else width


def sum_over_centres(per_centre, items, n_nodes: int, n_components: int) -> jax.Array:
    """``sum_c per_centre(items[c])`` over the leading axis of ``items``, one centre at a
    time (``jax.lax.map``: one primitive, also when differentiated eagerly); rematerialized
    under differentiation when ``centres * n_nodes * n_components`` exceeds
    :data:`STORED_ENTRIES` (the one rule of every quadrature; expectations.py uses it too)."""
    centres = jax.tree_util.tree_leaves(items)[0].shape[0]
    if centres * n_nodes * n_components > STORED_ENTRIES:
        per_centre = jax.checkpoint(per_centre)
    return jnp.sum(jax.lax.map(per_centre, items), axis=0)


@functools.lru_cache(maxsize=64)
def sharp_mild_rule(s: int, h: float, half_width: float, r_mild: int, k_mild: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``(K, s + r_mild)`` and weights ``(K,)`` for ``E_{z~N(0, I)}``: trapezoid on
    the first ``s`` axes (spacing ``h``, ball of radius ``half_width``), Gauss-Hermite
    with ``k_mild`` nodes on each of the other ``r_mild``."""
    parts_z, parts_w = [np.zeros((1, 0))], [np.ones(1)]
    if s > 0:
        k = int(math.floor(half_width / h))
        z1 = np.arange(-k, k + 1) * h
        w1 = h * np.exp(-0.5 * z1**2) / math.sqrt(2 * math.pi)
        g = np.stack([a.ravel() for a in np.meshgrid(*([z1] * s), indexing="ij")], axis=-1)
        w = np.prod(np.stack([a.ravel() for a in np.meshgrid(*([w1] * s), indexing="ij")], axis=-1), axis=-1)
        keep = np.sum(g**2, axis=-1) <= half_width**2 * (1 + 1e-12)
        parts_z, parts_w = [g[keep]], [w[keep] / w[keep].sum()]
    if r_mild > 0:
        z1, w1 = np.polynomial.hermite_e.hermegauss(k_mild)
        w1 = w1 / w1.sum()
        g = np.stack([a.ravel() for a in np.meshgrid(*([z1] * r_mild), indexing="ij")], axis=-1)
        w = np.prod(np.stack([a.ravel() for a in np.meshgrid(*([w1] * r_mild), indexing="ij")], axis=-1), axis=-1)
        zs, ws = parts_z[0], parts_w[0]
        z = np.concatenate([np.repeat(zs, len(g), axis=0), np.tile(g, (len(zs), 1))], axis=1)
        wt = np.repeat(ws, len(g)) * np.tile(w, len(zs))
        parts_z, parts_w = [z], [wt]
    z, w = parts_z[0], parts_w[0]
    keep = w >= PRUNE_BELOW
    return z[keep], w[keep] / w[keep].sum()


@functools.lru_cache(maxsize=16)
def _dct(k: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (k, k): each row spreads evenly over the k axes."""
    n = np.arange(k)
    m = np.cos(np.pi * (n[None, :] + 0.5) * n[:, None] / k) * math.sqrt(2 / k)
    m[0] /= math.sqrt(2)
    return m


def rotated_basis(q: jax.Array, teacher_means: jax.Array, s: int) -> jax.Array:
    """``q`` (d, r) rotated so its first ``s`` columns span the teacher mean differences
    (within the span of ``q``); the other ``r - s`` (the mild axes) are fixed by the
    coordinate axes. Held constant under differentiation.

    The Gauss-Hermite tensor rule on the mild axes is not rotation invariant: on the
    product references (``tests/test_products.py``) its error away from the optimum
    ranges over 1.4e-6 to 2.9e-4 across random orientations. So the orientation is not
    left to the SVD, whose basis of a null space is arbitrary and differs between LAPACK
    builds (9x at r = 5 between two CPUs). Pivoted Gram-Schmidt on the coordinate axes
    projected off the sharp span gives the axes themselves when the problem is
    axis-aligned, and a fixed DCT-II mixing turns them away from the axes, along which
    the nodes of a tensor rule line up with structure of axis-aligned problems (aligned
    nodes gave 1.6e-4 at r = 5, mixed ones 1.8e-6). The sharp axes stay the SVD's (the
    same on the two CPUs tried; their orientation matters too: fixed by the coordinate
    axes and mixed the same way, r = 3 near gave 3.5e-10 instead of 6.9e-8, but an error
    estimate 765x the error, outside issue 19's 1x-100x)."""
    q = jax.lax.stop_gradient(q)
    t = jax.lax.stop_gradient(teacher_means)
    a = q.T @ (t - jnp.mean(t, axis=0, keepdims=True)).T  # (r, m)
    u, _, _ = jnp.linalg.svd(a, full_matrices=True)
    sharp = u[:, :s]
    k = q.shape[1] - s
    if k == 0:
        return q @ sharp
    mild = _pivoted(q.T - sharp @ (sharp.T @ q.T), k)  # the coordinate axes, off the sharp span
    return q @ jnp.concatenate([sharp, mild @ jnp.asarray(_dct(k).T)], axis=1)


def _pivoted(cand: jax.Array, k: int) -> jax.Array:
    """``k >= 1`` orthonormal columns (r, k) from the columns of ``cand`` (r, d) by pivoted
    Gram-Schmidt: the longest remaining column first; exact ties (axis-aligned problems)
    are taken in column order, not broken by rounding, which differs between CPUs."""
    out = []
    for _ in range(k):
        norms = jnp.sum(cand**2, axis=0)
        j = jnp.argmax(norms >= jnp.max(norms) * (1 - 1e-9))
        v = cand[:, j] / jnp.sqrt(norms[j])
        out.append(v)
        cand = cand - jnp.outer(v, v @ cand)
    return jnp.stack(out, axis=1)


def anisotropic_mean(
    f,
    teacher: Mixture,
    student: Mixture | None,
    q: jax.Array,
    sharp: tuple[np.ndarray, np.ndarray],
    coarse: tuple[np.ndarray, np.ndarray],
    s: int,
    share: float,
    importance: bool,
    log_weighted: bool,
):
    """Sum over centres and nodes of the weighted integrand (see :func:`overgmm.expectation`):
    teacher centres on the ``sharp`` rule in the rotated frame, student centres on the
    ``coarse`` rule, node weights ``p*/q`` with ``q = (1 - share) p* + share p_theta``."""
    qr = rotated_basis(q, teacher.means, s)
    zs = jnp.asarray(sharp[0]) @ qr.T
    lws = jnp.asarray(np.log(sharp[1]))
    t_lw = teacher.log_weights - logsumexp(teacher.log_weights)

    def reduce(x, log_w):
        if log_weighted:
            return jnp.sum(f(x, log_w), axis=0)
        return jnp.tensordot(jnp.exp(log_w), f(x), axes=1)

    if not (importance and student is not None):
        width = components_per_node(teacher, student, defensive=False)
        return sum_over_centres(lambda it: reduce(it[0] + zs, it[1] + lws), (teacher.means, t_lw), len(lws), width)

    st = jax.lax.stop_gradient(student)
    s_lw = st.log_weights - logsumexp(st.log_weights)
    t_const = jax.lax.stop_gradient(teacher)
    la_t, la_s = t_lw + math.log1p(-share), s_lw + math.log(share)
    q_mix = Mixture.tree_unflatten(None, (jnp.concatenate([t_const.means, st.means]), jnp.concatenate([la_t, la_s])))
    zc = jnp.asarray(coarse[0]) @ q.T
    lwc = jnp.asarray(np.log(coarse[1]))

    def per(z, lw):
        def one(item):
            c, la = item
            x = c + z
            return reduce(x, la + lw + t_const.log_prob(x) - q_mix.log_prob(x))

        return one

    width = components_per_node(teacher, student, defensive=True)
    vt = sum_over_centres(per(zs, lws), (teacher.means, jax.lax.stop_gradient(la_t)), len(lws), width)
    vs = sum_over_centres(per(zc, lwc), (st.means, la_s), len(lwc), width)
    return vt + vs
