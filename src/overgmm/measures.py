"""The measures recorded along a run (SPEC section 5), from a student and a teacher.

Each student component is assigned to its nearest teacher mean (Euclidean);
``S_j`` is the set assigned to teacher component j.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from overgmm.mixture import Mixture

ACTIVE_THRESHOLD = 1e-3


def assignment(teacher: Mixture, student: Mixture) -> jax.Array:
    """Index (n,) of the teacher mean nearest to each student mean."""
    d2 = jnp.sum((student.means[:, None, :] - teacher.means[None, :, :]) ** 2, axis=-1)
    return jnp.argmin(d2, axis=-1)


def teacher_measures(teacher: Mixture, student: Mixture) -> dict[str, jax.Array]:
    """Measures that need the teacher.

    Returns:
      param_dist: ``sum_i pi_i |mu_i - mu*_{a(i)}|^2``.
      bias: (m,) ``|centroid_j - mu*_j|^2`` per cluster (inf for an empty cluster).
      dispersion: (m,) ``sum_{i in S_j} pi_i |mu_i - centroid_j|^2``.
      weight_mismatch: ``Delta_pi = sum_j |sum_{i in S_j} pi_i - pi*_j|``.
    """
    a = assignment(teacher, student)
    pi = student.weights
    m = teacher.n_components
    onehot = jax.nn.one_hot(a, m, dtype=pi.dtype)  # (n, m)
    param_dist = jnp.sum(pi * jnp.sum((student.means - teacher.means[a]) ** 2, axis=-1))
    mass = onehot.T @ pi  # (m,)
    centroid = (onehot * pi[:, None]).T @ student.means / jnp.where(mass > 0, mass, 1.0)[:, None]
    bias = jnp.where(mass > 0, jnp.sum((centroid - teacher.means) ** 2, axis=-1), jnp.inf)
    disp = jnp.sum(onehot * pi[:, None] * jnp.sum((student.means[:, None, :] - centroid[None]) ** 2, -1), axis=0)
    mismatch = jnp.sum(jnp.abs(mass - teacher.weights))
    return {"param_dist": param_dist, "bias": bias, "dispersion": disp, "weight_mismatch": mismatch}


def student_measures(student: Mixture, threshold: float = ACTIVE_THRESHOLD) -> dict[str, jax.Array]:
    """Measures of the student alone: active components (weight > threshold),
    ``max_i |mu_i|`` and ``U = sum_i |mu_i|^2``."""
    norms2 = jnp.sum(student.means**2, axis=-1)
    return {
        "active": jnp.sum(student.weights > threshold),
        "max_norm": jnp.sqrt(jnp.max(norms2)),
        "U": jnp.sum(norms2),
    }


def covers(teacher_means, student_means, weights, *, radius: float, active_weight: float = ACTIVE_THRESHOLD) -> bool:
    """Every teacher mean ``(m, d)`` has an active student mean (weight above
    ``active_weight``; ``student_means (n, d)``, ``weights (n,)``) within ``radius``."""
    tm, sm, w = np.asarray(teacher_means), np.asarray(student_means), np.asarray(weights)
    active = sm[w > active_weight]
    if not len(active):
        return False
    dist = np.linalg.norm(tm[:, None, :] - active[None], axis=-1).min(axis=1)
    return bool(np.all(dist < radius))


def recovers(
    teacher_means,
    student_means,
    weights,
    loss: float,
    *,
    radius: float,
    loss_threshold: float,
    active_weight: float = ACTIVE_THRESHOLD,
) -> bool:
    """Z1's success rule (Zhou et al.; ``configs/Z1.toml`` holds its settings): the
    student :func:`covers` every teacher mean and its final loss is below ``loss_threshold``."""
    return bool(loss < loss_threshold) and covers(
        teacher_means, student_means, weights, radius=radius, active_weight=active_weight
    )
