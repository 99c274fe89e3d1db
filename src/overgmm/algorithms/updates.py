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

from overgmm.mixture import Mixture, precision_cholesky
from overgmm.statistics import Stats

TINY = 1e-300


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


def _floored(cov: jnp.ndarray, kind: str, floor: jnp.ndarray) -> jnp.ndarray:
    if kind == "spherical":
        return jnp.maximum(cov, jnp.max(floor))
    if kind == "diag":
        return jnp.maximum(cov, floor)
    return cov + jnp.diag(floor)


def em_covariances(student: Mixture, stats: Stats, floor: jnp.ndarray) -> jnp.ndarray:
    """EM's covariances (natural shape) about the new means ``mu + shift / N``; a component
    whose mass underflows keeps its covariance."""
    kind = student.covariance_type
    ok, n = _safe(stats.mass)
    delta = stats.shift / n[:, None]
    scatter = _scatter(stats)
    if kind == "full":
        target = scatter / n[:, None, None] - delta[:, :, None] * delta[:, None, :]
        target = 0.5 * (target + jnp.swapaxes(target, -1, -2))
        cov = jnp.where(ok[:, None, None], target, student.covariances)
    elif kind == "diag":
        cov = jnp.where(ok[:, None], scatter / n[:, None] - delta**2, student.covariances)
    else:
        cov = jnp.where(ok, scatter / n - jnp.mean(delta**2, axis=-1), student.covariances)
    return _floored(cov, kind, floor)


def covariance_step(student: Mixture, stats: Stats, rate: ArrayLike, floor: jnp.ndarray) -> jnp.ndarray:
    """Relaxed covariances (natural shape): a fraction ``min(1, rate N)`` of the way to the
    scatter about the current mean."""
    kind = student.covariance_type
    ok, n = _safe(stats.mass)
    frac = jnp.where(ok, jnp.clip(jnp.broadcast_to(rate, n.shape) * stats.mass, 0.0, 1.0), 0.0)
    cov = student.covariances
    scatter = _scatter(stats)
    if kind == "full":
        target = scatter / n[:, None, None]
        target = 0.5 * (target + jnp.swapaxes(target, -1, -2))
        f = frac[:, None, None]
    elif kind == "diag":
        target, f = scatter / n[:, None], frac[:, None]
    else:
        target, f = scatter / n, frac
    new = (1.0 - f) * cov + f * target
    if kind == "full":
        # the convex combination is PD; the floor is added only once the EM target is reached
        return new + f * jnp.diag(floor)
    return _floored(new, kind, floor)


def with_covariances(student: Mixture, means: jnp.ndarray, cov: jnp.ndarray | None) -> Mixture:
    """The student with new means and (unless identity) covariances in natural shape."""
    new = student.replace(means=means)
    if student.covariance_type == "identity" or cov is None:
        return new
    return new.with_covariances(cov)


def mahalanobis_sq(student: Mixture, shift: jnp.ndarray) -> jnp.ndarray:
    """``shift_i^T Sigma_i^{-1} shift_i``, shape (n,)."""
    kind = student.covariance_type
    if kind == "identity":
        return jnp.sum(shift**2, axis=-1)
    if kind == "full":
        y = jnp.einsum("nd,nde->ne", shift, precision_cholesky(student.cov_params))
        return jnp.sum(y**2, axis=-1)
    return jnp.sum(shift**2 / student.variances, axis=-1)
