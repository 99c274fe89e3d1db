"""The covariance types, in one place: one small static object per type, and the registry
:data:`TYPES` that everything else asks (scikit-learn keeps one function per type in dicts;
gmmx one class per type and a registry; we follow gmmx).

Each type holds its own rules, written once:

* the parameters: ``cov_params``, unconstrained (any finite value is a valid covariance),
  their shape and the covariances in their natural shape, both ways;
* the component log-densities (log-determinant and Mahalanobis term) as one expression,
  :class:`Logits`, which the log-likelihood, the responsibilities and the E-step all read
  through :func:`log_posterior` (one exponential per entry); the squared Mahalanobis norm
  of a shift, sampling;
* the E-step's second moments and the scatter about the mean, the M-step's covariance
  from the scatter, the variance floor, moment matching for merges;
* the free-parameter count and the matrix view.

Shapes, with ``n`` components in ``d`` dimensions (leading batch axes allowed where said):

========== ================ ============================= =====================
type       natural shape    ``cov_params``                 parameters/component
========== ================ ============================= =====================
identity   (none: ``I``)    ``None``                       0
spherical  ``(n,)``         ``log s``, ``(n,)``            1
diag       ``(n, d)``       ``log s``, ``(n, d)``          d
full       ``(n, d, d)``    precision Cholesky, ``(n, d, d)`` (strict upper triangle
                            of ``U`` with ``Sigma^{-1} = U U^T``, log of its diagonal)  d(d+1)/2
tied       ``(d, d)``       one precision Cholesky, ``(d, d)``  0 (d(d+1)/2 shared)
========== ================ ============================= =====================

The estimator calls identity "fixed" (the identity after standardization). Its "rotated"
(:class:`Rotated`: diagonal covariances in one rotated basis) is a name only: it is fitted
as diag on rotated data and kept as full matrices, so it is in :data:`PUBLIC`, not in
:data:`TYPES`. Adding a type
is one class here and its entry in :data:`TYPES`: "tied" was added that way.

The variance floor (``(d,)``, a problem's ``var_floor``) clamps spherical variances (at
the largest floor) and diagonal ones, and is added to the diagonal of a full covariance
(scikit-learn's ``reg_covar``).
"""

from __future__ import annotations

from overgmm.covariances.axes import Diag, Identity, Spherical
from overgmm.covariances.base import (
    LOG_2PI,
    Covariance,
    Logits,
    log_posterior,
    observed,
    precision_cholesky,
    precision_params,
)
from overgmm.covariances.matrices import Full, Rotated, Tied

__all__ = [
    "LOG_2PI",
    "Covariance",
    "Diag",
    "Full",
    "Identity",
    "Logits",
    "Rotated",
    "Spherical",
    "Tied",
    "log_posterior",
    "observed",
    "of",
    "public",
    "precision_cholesky",
    "precision_params",
]

IDENTITY, SPHERICAL, DIAG, FULL, TIED = Identity(), Spherical(), Diag(), Full(), Tied()
ROTATED = Rotated()  # the estimator's "rotated": fitted as diag on rotated data, kept as full
TYPES: dict[str, Covariance] = {t.name: t for t in (IDENTITY, SPHERICAL, DIAG, FULL, TIED)}
NAMES = tuple(TYPES)
PUBLIC = {t.public: t for t in (FULL, TIED, ROTATED, DIAG, SPHERICAL, IDENTITY)}  # the estimator's names
BY_NDIM = {1: "spherical", 2: "diag", 3: "full"}  # the type of given covariances, by their rank


def of(name: str) -> Covariance:
    """The :class:`Covariance` named ``name`` (an error lists the types)."""
    try:
        return TYPES[name]
    except (KeyError, TypeError):
        raise ValueError(f"covariance_type must be one of {list(TYPES)}, got {name!r}") from None


def public(name: str) -> Covariance:
    """The :class:`Covariance` the estimator calls ``name`` ("fixed" is identity)."""
    try:
        return PUBLIC[name]
    except (KeyError, TypeError):
        raise ValueError(f"covariance_type must be one of {list(PUBLIC)}, got {name!r}") from None
