"""The isotropic Gaussian mixture, a JAX pytree.

``p(x) = sum_i pi_i N(x; mu_i, I_d)`` with means of shape ``(n, d)`` and weights on
the simplex, stored as log-weights of shape ``(n,)``. Identity covariances throughout
(theory mode). Construction validates shapes always and values when they are
concrete, so a ``Mixture`` can be built inside ``jax.grad``/``jit``/``vmap``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from overgmm import _validation as v

LOG_2PI = math.log(2.0 * math.pi)


@jax.tree_util.register_pytree_node_class
class Mixture:
    """Isotropic Gaussian mixture ``sum_i pi_i N(mu_i, I_d)``.

    Args:
      means: array of shape ``(n, d)``, the component means.
      weights: array of shape ``(n,)`` on the simplex; uniform when omitted.
      log_weights: alternatively, log-weights of shape ``(n,)`` (exclusive with
        ``weights``). They are normalised: ``logsumexp(log_weights) = 0``.

    Attributes:
      means: ``Float[Array, "n d"]``.
      log_weights: ``Float[Array, "n"]``, normalised.
    """

    def __init__(self, means, weights=None, *, log_weights=None):
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
        self.means = means
        self.log_weights = lw

    # -- pytree -------------------------------------------------------------
    def tree_flatten(self):
        return (self.means, self.log_weights), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.means, obj.log_weights = children
        return obj

    # -- properties ---------------------------------------------------------
    @property
    def weights(self) -> jax.Array:
        """Weights ``pi``, shape ``(n,)``."""
        return jnp.exp(self.log_weights)

    @property
    def n_components(self) -> int:
        return self.means.shape[-2]

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    def replace(self, *, means=None, log_weights=None) -> Mixture:
        """A copy with some fields replaced (no validation; for algorithm steps)."""
        return Mixture.tree_unflatten(
            None,
            (self.means if means is None else means, self.log_weights if log_weights is None else log_weights),
        )

    def __repr__(self) -> str:
        return f"Mixture(n_components={self.n_components}, dim={self.dim})"

    # -- densities ----------------------------------------------------------
    def component_logits(self, x: jax.Array) -> jax.Array:
        """``<x, mu_i> - |mu_i|^2/2 + log pi_i``, shape ``(..., n)`` for ``x`` of shape ``(..., d)``.

        ``log p(x) = logsumexp(logits) - |x|^2/2 - d/2 log(2 pi)``. The log-weights are
        renormalised here so that derivatives with respect to them are derivatives
        along the simplex (softmax parametrisation).
        """
        lw = self.log_weights - logsumexp(self.log_weights)
        return x @ self.means.T - 0.5 * jnp.sum(self.means**2, axis=-1) + lw

    def log_prob(self, x) -> jax.Array:
        """Log-density at ``x`` of shape ``(..., d)``; returns shape ``(...)``."""
        x = jnp.asarray(x, dtype=jnp.float64)
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have last dimension {self.dim}, got shape {tuple(x.shape)}")
        return logsumexp(self.component_logits(x), axis=-1) - 0.5 * jnp.sum(x**2, axis=-1) - 0.5 * self.dim * LOG_2PI

    def responsibilities(self, x) -> jax.Array:
        """``psi_i(x)``, shape ``(..., n)``, computed as a log-domain softmax."""
        x = jnp.asarray(x, dtype=jnp.float64)
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have last dimension {self.dim}, got shape {tuple(x.shape)}")
        return jax.nn.softmax(self.component_logits(x), axis=-1)

    def sample(self, key: jax.Array, n_samples: int) -> jax.Array:
        """Draw ``n_samples`` points, shape ``(n_samples, d)``, using the PRNG ``key``."""
        n_samples = v.check_positive_int(n_samples, "n_samples")
        kc, kz = jax.random.split(key)
        comp = jax.random.categorical(kc, self.log_weights, shape=(n_samples,))
        z = jax.random.normal(kz, (n_samples, self.dim), dtype=jnp.float64)
        return self.means[comp] + z
