"""Starting students from data: means drawn from the rows (as Zhou et al. initialise
from samples of p*) or by k-means++ seeding, uniform weights over the live components,
and every covariance the data's (weighted) covariance.

The draw is by inverse CDF over the rows in the order given: callers that want it to
depend only on the weighted empirical distribution (not on row order or multiplicity)
pass the rows in a canonical order (the estimator sorts them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from overgmm import covariances as C
from overgmm.mixture import Mixture

INITS = ("data", "kmeans++")


def _pick(cdf: jax.Array, u: jax.Array) -> jax.Array:
    """Inverse-CDF draw: the row whose cumulative-weight interval holds ``u * total``.
    Rows of zero weight own an empty interval and are never picked."""
    idx = jnp.searchsorted(cdf, u * cdf[-1], side="right")
    return jnp.minimum(idx, cdf.shape[0] - 1)


def init_means(key: jax.Array, X: jax.Array, w: jax.Array, n: int, method: str = "data") -> jax.Array:
    """``n`` starting means ``(n, d)`` from rows of ``X`` (N, d) with weights ``w`` (N,):
    drawn with probability ``w`` (``"data"``, with replacement) or by k-means++ D^2 sampling."""
    u = jax.random.uniform(key, (n,), dtype=jnp.float64)
    cdf = jnp.cumsum(w)
    if method == "data":
        return X[_pick(cdf, u)]
    if method != "kmeans++":
        raise ValueError(f"unknown init {method!r}; expected one of {list(INITS)}")

    first = X[_pick(cdf, u[0])]
    d2 = jnp.sum((X - first) ** 2, axis=-1)
    means = jnp.zeros((n, X.shape[1])).at[0].set(first)

    def body(i, carry):
        means, d2 = carry
        prob = w * d2
        prob = jnp.where(jnp.sum(prob) > 0, prob, w)
        c = X[_pick(jnp.cumsum(prob), u[i])]
        return means.at[i].set(c), jnp.minimum(d2, jnp.sum((X - c) ** 2, axis=-1))

    means, _ = jax.lax.fori_loop(1, n, body, (means, d2))
    return means


def from_data(
    key: jax.Array,
    X: jax.Array,
    w: jax.Array,
    n: int,
    *,
    n_live: jax.Array | int | None = None,
    method: str = "data",
    covariance_type: str = "identity",
    floor: jax.Array | None = None,
) -> Mixture:
    """A starting student with ``n`` components: the first ``n_live`` live (uniform weights;
    default all), the rest pruned (weight 0: padding that keeps compiled shapes few).

    Means by :func:`init_means`; covariances the data's weighted covariance (its diagonal
    for "diag", its mean variance for "spherical"), at least ``floor`` (d,)."""
    w = w / jnp.sum(w)
    means = init_means(key, X, w, n, method)
    n_live = n if n_live is None else n_live
    live = jnp.arange(n) < n_live
    log_w = jnp.where(live, -jnp.log(jnp.asarray(n_live, jnp.float64)), -jnp.inf)
    m = Mixture.tree_unflatten("identity", (means, log_w, None))
    return with_data_covariances(m, X, w, covariance_type, floor)


def with_data_covariances(student: Mixture, X: jax.Array, w: jax.Array, covariance_type: str, floor=None) -> Mixture:
    """``student`` (its means and log-weights; leading batch axes allowed) with every component's covariance the data's
    weighted covariance (its diagonal for "diag", its mean variance for "spherical"), at
    least ``floor`` (d,) (added to the diagonal for "full"); "identity" leaves it as it is.

    What :func:`from_data` gives its students; the estimator draws the means once per fit
    and calls this per covariance type."""
    t = C.of(covariance_type)
    if not t.learned:
        return Mixture.tree_unflatten("identity", (student.means, student.log_weights, None))
    lead, d = student.means.shape[:-1], student.means.shape[-1]  # (n,) or (batch, n)
    w = w / jnp.sum(w)
    centred = X - w @ X
    floor = jnp.zeros((d,)) if floor is None else floor
    cov = t.from_data(centred, w, lead, floor)
    params0 = t.zeros(lead, d)
    m = Mixture.tree_unflatten(covariance_type, (student.means, student.log_weights, params0))
    return m.with_covariances(cov)
