"""The parameter updates that EM, gradient EM and the Polyak method share, for every
covariance type, written on the E-step statistics (:class:`~overgmm.statistics.Stats`).

* :func:`mean_step`: ``mu_i <- mu_i + rate_i E[psi_i (x - mu_i)]``. With ``rate_i = 1/N_i``
  this is EM's mean; with ``rate = eta`` it is gradient EM (``- eta dL/dmu`` for identity
  covariances; ``- eta Sigma_i dL/dmu_i`` otherwise: EM's scaling, so that ``eta`` has no units).
* :func:`covariance_step`: the covariance moves a fraction ``f_i = min(1, rate_i N_i)`` of
  the way to its EM target about the current mean, ``Sigma_i <- (1 - f_i) Sigma_i + f_i C_i / N_i``
  (``C_i`` the scatter). This is the gradient step ``Sigma <- Sigma - rate 2 Sigma (dL/dSigma) Sigma``
  (the covariance's own EM scaling), clipped at the EM target. A convex combination of
  positive definite matrices, so every step keeps a full covariance positive definite.
* :func:`em_covariances`: EM's M-step about the new mean (full: the weighted scatter).
* The variance floor (``Problem.var_floor``, ``(d,)``): clamps spherical (at the largest
  floor) and diagonal variances, and is added to the diagonal of a full covariance
  (scikit-learn's ``reg_covar``).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.typing import ArrayLike

from overgmm.mixture import Mixture
from overgmm.statistics import TINY, Stats


def _scatter(stats: Stats) -> jnp.ndarray:
    """The scatter of learned-covariance statistics (None only for identity students)."""
    if stats.scatter is None:
        raise ValueError("covariance updates need the scatter statistics of a learned-covariance student")
    return stats.scatter


def _safe(mass: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    ok = mass > TINY
    return ok, jnp.where(ok, mass, 1.0)


def mean_step(student: Mixture, stats: Stats, rate: ArrayLike) -> jnp.ndarray:
    """New means ``(n, d)``: ``mu + rate[:, None] * shift`` (``rate`` of shape (n,) or scalar)."""
    rate = jnp.asarray(rate)
    r = rate[:, None] if rate.ndim == 1 else rate
    return student.means + r * stats.shift


def em_covariances(student: Mixture, stats: Stats, floor: jnp.ndarray) -> jnp.ndarray:
    """EM's covariances (natural shape) about the new means ``mu + shift / N``; a component
    whose mass underflows keeps its covariance."""
    t = student.cov_type
    ok, n = _safe(stats.mass)
    delta = stats.shift / n[:, None]
    target = t.em_target(_scatter(stats), n, delta)
    cov = jnp.where(t.per_component(ok, target), target, student.covariances)
    return t.floored(cov, floor)


def covariance_step(student: Mixture, stats: Stats, rate: ArrayLike, floor: jnp.ndarray) -> jnp.ndarray:
    """Relaxed covariances (natural shape): a fraction ``min(1, rate N)`` of the way to the
    scatter about the current mean."""
    t = student.cov_type
    ok, n = _safe(stats.mass)
    frac = jnp.where(ok, jnp.clip(jnp.broadcast_to(rate, n.shape) * stats.mass, 0.0, 1.0), 0.0)
    target = t.em_target(_scatter(stats), n, jnp.zeros_like(stats.shift))  # about the current mean
    return t.relaxed(student.covariances, target, t.per_component(frac, target), floor)


def with_covariances(student: Mixture, means: jnp.ndarray, cov: jnp.ndarray | None) -> Mixture:
    """The student with new means and (unless identity) covariances in natural shape."""
    new = student.replace(means=means)
    if not student.cov_type.learned or cov is None:
        return new
    return new.with_covariances(cov)


def mahalanobis_sq(student: Mixture, shift: jnp.ndarray) -> jnp.ndarray:
    """``shift_i^T Sigma_i^{-1} shift_i``, shape (n,)."""
    return student.cov_type.mahalanobis_sq(student.cov_params, student.means, shift)
