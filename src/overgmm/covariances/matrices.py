"""Full covariances (one matrix per component) and tied ones (one matrix shared by all)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from overgmm.covariances.base import LOG_2PI, Logits, _Cholesky, precision_cholesky, precision_params


class Full(_Cholesky):
    name, shape_doc, public = "full", "(n_components, dim, dim)", "full"

    def natural_shape(self, n, d):
        return (n, d, d)

    def natural(self, params, means):
        return self.matrices(params, means)

    def variances(self, params, means):
        return jnp.diagonal(self.matrices(params, means), axis1=-2, axis2=-1)

    def matrices(self, params, means):
        return self._inverse(params, means.shape[-1])

    def matrices_in_units(self, cov_units, k, d):
        return np.asarray(cov_units)

    def check(self, cov, n):
        for i in range(n):
            self._check_matrix(cov[i], f"component {i}")

    def n_parameters(self, d):
        return d * (d + 1) // 2

    def from_data(self, centred, w, lead, floor):
        d = centred.shape[-1]
        return jnp.broadcast_to((centred * w[:, None]).T @ centred + jnp.diag(floor), lead + (d, d))

    def logits(self, x, means, lw, params):
        d = means.shape[-1]
        u = precision_cholesky(params)  # (n, d, d)
        y = jnp.einsum("...d,nde->...ne", x, u) - jnp.einsum("nd,nde->ne", means, u)
        quad = jnp.sum(y**2, axis=-1)
        half_logdet = jnp.sum(jnp.diagonal(params, axis1=-2, axis2=-1), axis=-1)  # log|U|
        return Logits(lw + half_logdet - 0.5 * (d * LOG_2PI + quad))

    def mahalanobis_sq(self, params, means, shift):
        y = jnp.einsum("nd,nde->ne", shift, precision_cholesky(params))
        return jnp.sum(y**2, axis=-1)

    def noise(self, params, means, comp, z):
        # Sigma = U^{-T} U^{-1}: the noise is U^{-T} z, i.e. solve U^T y = z
        u = precision_cholesky(params)[comp]
        return jax.scipy.linalg.solve_triangular(jnp.swapaxes(u, -1, -2), z[..., None], lower=True)[..., 0]

    def block_width(self, n, d):
        return n * d

    def estep_moments(self, wr, x, feats):
        return wr.T @ x, jnp.einsum("bi,bd,be->ide", wr, x, x)

    def estep_moments_observed(self, wr, x0, o, logits, means, params):
        return self._moments_observed(wr, o, logits, means, params)

    def scatter(self, s2, s1, mass, mu):
        outer = jnp.einsum("id,ie->ide", mu, s1)
        scatter = s2 - outer - jnp.swapaxes(outer, -1, -2) + mass[:, None, None] * jnp.einsum("id,ie->ide", mu, mu)
        return 0.5 * (scatter + jnp.swapaxes(scatter, -1, -2))

    def em_target(self, scatter, n, delta):
        target = scatter / n[:, None, None] - delta[:, :, None] * delta[:, None, :]
        return 0.5 * (target + jnp.swapaxes(target, -1, -2))


class Tied(_Cholesky):
    """One full covariance shared by every component (scikit-learn's "tied"): natural shape
    ``(d, d)``, ``cov_params`` one precision Cholesky factor ``(d, d)`` (leading batch axes
    allowed, no component axis). Its M-step pools the scatter of all components; a merge
    widens it by the pair's between scatter and matches the pair's weight and mean."""

    name, shape_doc, public = "tied", "(dim, dim)", "tied"

    def natural_shape(self, n, d):
        return (d, d)

    def zeros(self, lead, d):
        return jnp.zeros(lead[:-1] + (d, d))

    def natural(self, params, means):
        return self._inverse(params, means.shape[-1])

    def matrices(self, params, means):
        d = means.shape[-1]
        return jnp.broadcast_to(self.natural(params, means)[..., None, :, :], means.shape[:-1] + (d, d))

    def variances(self, params, means):
        shared = jnp.diagonal(self.natural(params, means), axis1=-2, axis2=-1)
        return jnp.broadcast_to(shared[..., None, :], means.shape)

    def select(self, cov, idx):
        return cov

    def matrices_in_units(self, cov_units, k, d):
        return np.broadcast_to(np.asarray(cov_units), (k, d, d))

    def check(self, cov, n):
        self._check_matrix(cov, "the mixture")

    def n_parameters(self, d):
        return 0

    def shared_parameters(self, d):
        return d * (d + 1) // 2

    def from_data(self, centred, w, lead, floor):
        d = centred.shape[-1]
        return jnp.broadcast_to((centred * w[:, None]).T @ centred + jnp.diag(floor), lead[:-1] + (d, d))

    def logits(self, x, means, lw, params):
        d = means.shape[-1]
        u = precision_cholesky(params)  # (d, d)
        y = (x @ u)[..., None, :] - means @ u  # (..., n, d)
        quad = jnp.sum(y**2, axis=-1)
        half_logdet = jnp.sum(jnp.diagonal(params, axis1=-2, axis2=-1), axis=-1)  # log|U|
        return Logits(lw + half_logdet - 0.5 * (d * LOG_2PI + quad))

    def mahalanobis_sq(self, params, means, shift):
        return jnp.sum((shift @ precision_cholesky(params)) ** 2, axis=-1)

    def noise(self, params, means, comp, z):
        u = precision_cholesky(params)
        return jax.scipy.linalg.solve_triangular(jnp.swapaxes(u, -1, -2), z.T, lower=True).T

    def block_width(self, n, d):
        return n * d

    def estep_moments(self, wr, x, feats):
        # the pooled second moment: every row's weight (its responsibilities' sum) once
        return wr.T @ x, (x * jnp.sum(wr, axis=1)[:, None]).T @ x

    def estep_moments_observed(self, wr, x0, o, logits, means, params):
        s1, s2 = self._moments_observed(wr, o, logits, means, params)
        return s1, jnp.sum(s2, axis=0)  # pooled over the components

    def _own_matrices(self, params, means):
        return self._plain_inverse(params, means.shape[-1])[None]  # one matrix, shared by the components

    def block_width_observed(self, n, d):
        return n * d + d * d

    def scatter(self, s2, s1, mass, mu):
        outer = mu.T @ s1  # sum_i mu_i s1_i^T
        scatter = s2 - outer - outer.T + (mu * mass[:, None]).T @ mu
        return 0.5 * (scatter + scatter.T)

    def implied_scatter(self, cov, pi):
        return jnp.sum(pi) * cov

    def per_component(self, mask, like):
        return jnp.max(mask)  # the shared covariance moves when any component does (by the most)

    def em_target(self, scatter, n, delta):
        # the pooled covariance about the new means; the masses sum to 1 (pruned ones: delta 0)
        target = scatter - jnp.einsum("i,id,ie->de", n, delta, delta)
        return 0.5 * (target + target.T)

    def widened(self, params, c, delta):
        """``cov_params`` of ``Sigma + sum_p c_p delta_p delta_p^T`` (``c`` (P,), ``delta``
        (P, d)): the shared covariance after merges (:func:`overgmm.reduce.tied_pair_widening`)."""
        d = delta.shape[-1]
        return precision_params(self._inverse(params, d) + jnp.einsum("p,pi,pj->ij", c, delta, delta))

    def component_log_dets(self, params, means):
        return jnp.broadcast_to(self.log_det(self.natural(params, means), means.shape[-1]), means.shape[-2:-1])

    def merged_params(self, params, cov, floor):
        return params


class Rotated(Full):
    """Full covariances with one orientation: ``Sigma_i = R diag(v_i) R^T``, with one
    orthonormal ``R`` (d, d) shared by every component (mclust's "VVE", with the common
    principal axes of a full fit). The estimator's name only: it fits such a model as "diag" on the data
    rotated onto ``R`` and keeps the result as "full" matrices (``overgmm.estimator``);
    this object counts its parameters (d variances per component, d(d-1)/2 for ``R``)
    and reads fitted matrices as :class:`Full` does. It is not in :data:`TYPES`: no
    :class:`~overgmm.Mixture` is of this type."""

    name, public = "rotated", "rotated"

    def n_parameters(self, d):
        return d

    def shared_parameters(self, d):
        return d * (d - 1) // 2
