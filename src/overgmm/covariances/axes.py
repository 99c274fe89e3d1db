"""Identity, spherical and diagonal covariances."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from overgmm.covariances.base import LOG_2PI, Covariance, Logits, _Axes


class Identity(Covariance):
    name, learned, public = "identity", False, "fixed"

    def in_units(self, cov, scale):
        return scale**2  # the diagonal covariance every component shares

    def matrices_in_units(self, cov_units, k, d):
        return np.broadcast_to(np.diag(cov_units), (k, d, d))

    def natural_shape(self, n, d):
        return (n,)

    def zeros(self, lead, d):
        return None

    def to_params(self, cov):
        return None

    def natural(self, params, means):
        return jnp.ones(means.shape[:-1], means.dtype)

    def variances(self, params, means):
        return jnp.ones(means.shape, means.dtype)

    def n_parameters(self, d):
        return 0

    def logits(self, x, means, lw, params):
        d = means.shape[-1]
        values = x @ means.T - 0.5 * jnp.sum(means**2, axis=-1) + lw
        return Logits(values, -0.5 * jnp.sum(x**2, axis=-1) - 0.5 * d * LOG_2PI)

    def mahalanobis_sq(self, params, means, shift):
        return jnp.sum(shift**2, axis=-1)

    def noise(self, params, means, comp, z):
        return z

    def estep_moments(self, wr, x, feats):
        return wr.T @ x, None

    def logits_observed(self, x0, o, means, lw, params):
        values = x0 @ means.T - 0.5 * (o @ (means**2).T) + lw
        return Logits(values, -0.5 * jnp.sum(x0**2, axis=-1) - 0.5 * jnp.sum(o, axis=-1) * LOG_2PI)

    def estep_moments_observed(self, wr, x0, o, logits, means, params):
        gaps = jnp.sum(wr, axis=0)[:, None] - wr.T @ o  # a gap's conditional mean is mu
        return wr.T @ x0 + means * gaps, None

    def second_moments(self, cov, mu):
        return 1.0 + jnp.mean(mu**2, axis=-1)

    def from_second(self, second, mu):
        return second - jnp.mean(mu**2)  # the matched spread (merges stay identity)

    def log_det(self, cov, d):
        return d * jnp.log(cov)  # of the matched spread

    def component_log_dets(self, params, means):
        return jnp.zeros(means.shape[-2])


class Spherical(_Axes):
    name, shape_doc, public, common_scale = "spherical", "(n_components,)", "spherical", True

    def in_units(self, cov, scale):
        return cov * scale[0] ** 2  # one common scale

    def matrices_in_units(self, cov_units, k, d):
        return np.asarray(cov_units)[:, None, None] * np.eye(d)

    def natural_shape(self, n, d):
        return (n,)

    def variances(self, params, means):
        return jnp.broadcast_to(jnp.exp(params)[..., None], means.shape)

    def n_parameters(self, d):
        return 1

    def log_variances(self, params, means):
        return jnp.broadcast_to(params[..., None], means.shape)

    def from_data(self, centred, w, lead, floor):
        return jnp.full(lead, jnp.maximum(jnp.mean(w @ centred**2), jnp.max(floor)))

    def scatter(self, s2, s1, mass, mu):
        return jnp.mean(s2 - 2.0 * mu * s1 + mass[:, None] * mu**2, axis=-1)

    def em_target(self, scatter, n, delta):
        return scatter / n - jnp.mean(delta**2, axis=-1)

    def floored(self, cov, floor):
        return jnp.maximum(cov, jnp.max(floor))

    def second_moments(self, cov, mu):
        return cov + jnp.mean(mu**2, axis=-1)

    def from_second(self, second, mu):
        return second - jnp.mean(mu**2)

    def log_det(self, cov, d):
        return d * jnp.log(cov)


class Diag(_Axes):
    name, shape_doc, public = "diag", "(n_components, dim)", "diag"

    def natural_shape(self, n, d):
        return (n, d)

    def variances(self, params, means):
        return jnp.exp(params)

    def n_parameters(self, d):
        return d

    def log_variances(self, params, means):
        return params

    def from_data(self, centred, w, lead, floor):
        return jnp.broadcast_to(jnp.maximum(w @ centred**2, floor), lead + centred.shape[-1:])

    def scatter(self, s2, s1, mass, mu):
        return s2 - 2.0 * mu * s1 + mass[:, None] * mu**2

    def em_target(self, scatter, n, delta):
        return scatter / n[:, None] - delta**2

    def floored(self, cov, floor):
        return jnp.maximum(cov, floor)

    def second_moments(self, cov, mu):
        return cov + mu**2

    def from_second(self, second, mu):
        return second - mu**2

    def log_det(self, cov, d):
        return jnp.sum(jnp.log(cov), axis=-1)
