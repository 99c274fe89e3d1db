"""The Gaussian mixture, a JAX pytree.

``p(x) = sum_i pi_i N(x; mu_i, Sigma_i)`` with means of shape ``(n, d)``, weights on the
simplex stored as log-weights ``(n,)``, and a covariance type:

* ``"identity"`` (the default, theory mode): ``Sigma_i = I_d``; every paper path uses it;
* ``"spherical"``: ``Sigma_i = s_i I_d``, stored as ``log s`` of shape ``(n,)``;
* ``"diag"``: ``Sigma_i = diag(s_i)``, stored as ``log s`` of shape ``(n, d)``;
* ``"full"``: ``Sigma_i^{-1} = U_i U_i^T`` with ``U_i`` upper triangular with a positive
  diagonal (a Cholesky factor of the precision, scikit-learn's ``precisions_cholesky_``),
  stored as ``cov_params`` of shape ``(n, d, d)``: the strict upper triangle of ``U_i``
  and the *log* of its diagonal (the strict lower triangle is ignored).

The stored parameters are unconstrained: any finite step on ``cov_params`` gives a valid
(positive definite) covariance, so gradient methods and optax need no projection.

A pruned component is first-class: its weight is exactly 0 (log-weight ``-inf``), it stays
in the arrays so that shapes (and compilations) stay fixed, and :attr:`Mixture.live` marks
the others. Construction validates shapes always and values when they are concrete, so a
``Mixture`` can be built inside ``jax.grad``/``jit``/``vmap``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from overgmm import _validation as v
from overgmm import covariances as C
from overgmm._eager import compiled_when_eager
from overgmm.covariances import LOG_2PI, precision_cholesky, precision_params  # noqa: F401  (re-exported)

COVARIANCE_TYPES = C.NAMES


def _check_covariances(cov: jax.Array, kind: str, n: int, d: int) -> None:
    t = C.of(kind)
    shape = t.natural_shape(n, d)
    if tuple(cov.shape) != shape:
        raise ValueError(f"{kind} covariances must have shape {t.shape_doc} = {shape}, got shape {tuple(cov.shape)}")
    v.check_finite(cov, "covariances")
    if v.is_concrete(cov):
        t.check(np.asarray(cov), n)


@jax.tree_util.register_pytree_node_class
class Mixture:
    """Gaussian mixture ``sum_i pi_i N(mu_i, Sigma_i)``.

    Args:
      means: array of shape ``(n, d)``, the component means.
      weights: array of shape ``(n,)`` on the simplex; uniform when omitted. A weight of
        exactly 0 marks a pruned component (kept in the arrays; see :attr:`live`).
      log_weights: alternatively, log-weights of shape ``(n,)`` (exclusive with
        ``weights``). They are normalised: ``logsumexp(log_weights) = 0``.
      covariances: the covariances in their natural shape: ``(n,)`` variances for
        ``"spherical"``, ``(n, d)`` for ``"diag"``, ``(n, d, d)`` matrices for ``"full"``
        (symmetric positive definite). Omitted: identity, or all ones for the learned types.
      covariance_type: ``"identity"`` (default), ``"spherical"``, ``"diag"`` or ``"full"``.
        Inferred from ``covariances`` when that is given: 1-D spherical, 2-D diag, 3-D full.

    Attributes:
      means: ``Float[Array, "n d"]``.
      log_weights: ``Float[Array, "n"]``, normalised (``-inf`` for a pruned component).
      cov_params: unconstrained covariance parameters (see the module docstring), or
        ``None`` for ``"identity"``.
      covariance_type: the covariance type (static).
    """

    def __init__(self, means, weights=None, *, log_weights=None, covariances=None, covariance_type=None):
        means = v.as_float_array(means, "means")
        if means.ndim == 1:
            raise ValueError(
                f"means must have shape (n_components, dim), got shape {tuple(means.shape)}; "
                "use means[:, None] for 1-D components or means[None, :] for one component"
            )
        v.check_ndim(means, 2, "means", "(n_components, dim)")
        n, d = means.shape
        if n < 1 or d < 1:
            raise ValueError(f"means must have at least one component and one dimension, got shape {(n, d)}")
        v.check_finite(means, "means")
        if weights is not None and log_weights is not None:
            raise ValueError("give either weights or log_weights, not both")
        if log_weights is not None:
            lw = v.as_float_array(log_weights, "log_weights")
            v.check_ndim(lw, 1, "log_weights", "(n_components,)")
            if v.is_concrete(lw) and bool(jnp.any(jnp.isnan(lw) | (lw == jnp.inf))):
                raise ValueError("log_weights contains NaN or +inf")
            if v.is_concrete(lw) and not bool(jnp.any(lw > -jnp.inf)):
                raise ValueError("log_weights are all -inf: at least one component must have positive weight")
            lw = lw - logsumexp(lw)
        elif weights is not None:
            w = v.as_float_array(weights, "weights")
            v.check_ndim(w, 1, "weights", "(n_components,)")
            v.check_finite(w, "weights")
            v.check_simplex(w)
            lw = jnp.log(w)
        else:
            lw = jnp.full((n,), -math.log(n), dtype=jnp.float64)
        if lw.shape[0] != n:
            raise ValueError(f"weights have {lw.shape[0]} entries but means have {n} components")
        kind = covariance_type
        if covariances is not None:
            cov = v.as_float_array(covariances, "covariances")
            if kind is None:
                kind = C.BY_NDIM.get(cov.ndim)
                if kind is None:
                    raise ValueError(f"covariances must be 1-, 2- or 3-dimensional, got shape {tuple(cov.shape)}")
            v.check_choice(kind, COVARIANCE_TYPES, "covariance_type")
            if not C.of(kind).learned:
                raise ValueError("covariance_type='identity' takes no covariances")
            _check_covariances(cov, kind, n, d)
            params = _to_params(cov, kind=kind)
        else:
            kind = "identity" if kind is None else kind
            v.check_choice(kind, COVARIANCE_TYPES, "covariance_type")
            params = C.of(kind).zeros((n,), d)
        self.means = means
        self.log_weights = lw
        self.cov_params = params
        self.covariance_type = kind

    # -- pytree -------------------------------------------------------------
    def tree_flatten(self):
        return (self.means, self.log_weights, self.cov_params), self.covariance_type

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.means, obj.log_weights = children[0], children[1]
        obj.cov_params = children[2] if len(children) > 2 else None
        obj.covariance_type = "identity" if aux is None else aux
        return obj

    # -- properties ---------------------------------------------------------
    @property
    def weights(self) -> jax.Array:
        """Weights ``pi``, shape ``(n,)`` (exactly 0 for a pruned component)."""
        return jnp.exp(self.log_weights)

    @property
    def live(self) -> jax.Array:
        """Mask ``(n,)`` of the components not pruned (weight > 0)."""
        return self.log_weights > -jnp.inf

    @property
    def n_components(self) -> int:
        return self.means.shape[-2]

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    @property
    def cov_type(self) -> C.Covariance:
        """The rules of this mixture's covariance type (:mod:`overgmm.covariances`)."""
        return C.of(self.covariance_type)

    @property
    def variances(self) -> jax.Array:
        """Per-axis variances ``(n, d)``: the diagonal of each ``Sigma_i``."""
        return _view(self, which="variances")

    @property
    def covariances(self) -> jax.Array:
        """Covariances in their natural shape: ``(n,)`` spherical (and identity: ones),
        ``(n, d)`` diag, ``(n, d, d)`` full."""
        return _view(self, which="natural")

    @property
    def covariance_matrices(self) -> jax.Array:
        """Covariance matrices ``(n, d, d)`` for every type."""
        return _view(self, which="matrices")

    def replace(self, *, means=None, log_weights=None, cov_params=None) -> Mixture:
        """A copy with some fields replaced (no validation; for algorithm steps)."""
        return Mixture.tree_unflatten(
            self.covariance_type,
            (
                self.means if means is None else means,
                self.log_weights if log_weights is None else log_weights,
                self.cov_params if cov_params is None else cov_params,
            ),
        )

    def with_covariances(self, covariances: jax.Array) -> Mixture:
        """A copy with covariances given in their natural shape (no validation)."""
        return self.replace(cov_params=_to_params(covariances, kind=self.covariance_type))

    def __repr__(self) -> str:
        extra = "" if not self.cov_type.learned else f", covariance_type={self.covariance_type!r}"
        return f"Mixture(n_components={self.n_components}, dim={self.dim}{extra})"

    # -- densities ----------------------------------------------------------
    def _check_x(self, x) -> jax.Array:
        x = jnp.asarray(x, dtype=jnp.float64)
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have last dimension {self.dim}, got shape {tuple(x.shape)}")
        return x

    def component_logits(self, x: jax.Array) -> jax.Array:
        """Identity covariances: ``<x, mu_i> - |mu_i|^2/2 + log pi_i``, shape ``(..., n)`` for
        ``x`` of shape ``(..., d)``; ``log p(x) = logsumexp(logits) - |x|^2/2 - d/2 log(2 pi)``.

        The log-weights are renormalised here so that derivatives with respect to them are
        derivatives along the simplex (softmax parametrisation).
        """
        if self.cov_type.learned:
            raise ValueError(
                f"component_logits is defined for identity covariances; this mixture has "
                f"covariance_type={self.covariance_type!r}: use component_log_prob"
            )
        lw = self.log_weights - logsumexp(self.log_weights)
        return x @ self.means.T - 0.5 * jnp.sum(self.means**2, axis=-1) + lw

    def component_log_prob(self, x, *, missing: bool = False) -> jax.Array:
        """``log pi_i + log N(x; mu_i, Sigma_i)``, shape ``(..., n)`` for ``x`` of shape ``(..., d)``
        (``-inf`` for a pruned component; ``missing``: as :meth:`log_posterior`)."""
        return _component_log_prob(self, self._check_x(x), missing=missing)

    def log_posterior(self, x, *, missing: bool = False) -> tuple[jax.Array, jax.Array]:
        """``(log p(x), psi(x))`` at ``x`` of shape ``(..., d)``: shapes ``(...)`` and ``(..., n)``,
        from one exponential per entry (:func:`overgmm.covariances.log_posterior`, the same
        expression the E-step reads).

        ``missing=True``: NaN entries of ``x`` are missing (at random), and each row's
        density is its marginal over its observed features (a row with none observed has
        log-density 0 and the weights as its responsibilities). Rows ``x`` of shape (N, d)."""
        return _log_posterior(self, self._check_x(x), missing=missing)

    def log_prob(self, x, *, missing: bool = False) -> jax.Array:
        """Log-density at ``x`` of shape ``(..., d)``; returns shape ``(...)`` (``missing``: as
        :meth:`log_posterior`)."""
        return self.log_posterior(x, missing=missing)[0]

    def responsibilities(self, x, *, missing: bool = False) -> jax.Array:
        """``psi_i(x)``, shape ``(..., n)``, computed as a log-domain softmax (0 for pruned
        components; ``missing``: as :meth:`log_posterior`)."""
        return self.log_posterior(x, missing=missing)[1]

    def sample(self, key: jax.Array, n_samples: int, *, return_labels: bool = False):
        """Draw ``n_samples`` points, shape ``(n_samples, d)``, using the PRNG ``key``
        (with ``return_labels=True`` also their components, shape ``(n_samples,)``)."""
        n_samples = v.check_positive_int(n_samples, "n_samples")
        x, comp = _sample(self, key, n_samples=n_samples)
        return (x, comp) if return_labels else x


# -- compiled when called eagerly (overgmm._eager): one program per shape -------------------
@compiled_when_eager(static_argnames=("kind",))
def _to_params(cov: jax.Array, *, kind: str) -> jax.Array | None:
    return C.of(kind).to_params(cov)


@compiled_when_eager(static_argnames=("which",))
def _view(m: Mixture, *, which: str) -> jax.Array:
    return getattr(m.cov_type, which)(m.cov_params, m.means)


@compiled_when_eager(static_argnames=("missing",))
def _component_log_prob(m: Mixture, x: jax.Array, *, missing: bool) -> jax.Array:
    lw = m.log_weights - logsumexp(m.log_weights)
    if missing:
        x0, o = C.observed(x)
        lg = m.cov_type.logits_observed(x0, o, m.means, lw, m.cov_params)
        return lg.values if lg.offset is None else lg.values + lg.offset[..., None]
    return m.cov_type.component_log_prob(x, m.means, lw, m.cov_params)


@compiled_when_eager(static_argnames=("missing",))
def _log_posterior(m: Mixture, x: jax.Array, *, missing: bool) -> tuple[jax.Array, jax.Array]:
    lw = m.log_weights - logsumexp(m.log_weights)
    if missing:
        x0, o = C.observed(x)
        return C.log_posterior(m.cov_type.logits_observed(x0, o, m.means, lw, m.cov_params))
    return C.log_posterior(m.cov_type.logits(x, m.means, lw, m.cov_params))


@compiled_when_eager(static_argnames=("n_samples",))
def _sample(m: Mixture, key: jax.Array, *, n_samples: int) -> tuple[jax.Array, jax.Array]:
    kc, kz = jax.random.split(key)
    comp = jax.random.categorical(kc, m.log_weights, shape=(n_samples,))
    z = jax.random.normal(kz, (n_samples, m.dim), dtype=jnp.float64)
    return m.means[comp] + m.cov_type.noise(m.cov_params, m.means, comp, z), comp
