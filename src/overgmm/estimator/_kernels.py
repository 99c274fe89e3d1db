"""Pure JAX kernels behind :class:`~overgmm.OverparamGMM`: Gaussian mixtures with
diagonal covariances on weighted data, in float64 and in the log domain.

The estimator's numerics live here and nowhere else. Every function is pure; the
ones the estimator calls repeatedly are compiled once per (shapes, static options) by
``jax.jit`` at module level, so refitting data of the same shape does not recompile
(rows are padded to a power of two with zero weight to share compilations).

Conventions:
  * data ``X`` has shape ``(N, d)`` and weights ``w`` shape ``(N,)``, non-negative and
    summing to 1 (padding rows carry weight 0);
  * a mixture is a :class:`Params` record: log-weights ``(n,)`` (``-inf`` for a component
    that was pruned or merged away: "dead"), means ``(n, d)``, variances ``(n, d)``
    (spherical: equal along the last axis; fixed: all ones, the papers' identity
    covariance; diag: learned);
  * ``floor`` ``(d,)`` is the variance floor, in the same units as ``X``.

Algorithms (one step each, SPEC section 4, written for learned variances):
  * ``em``: ``pi <- E[psi]``, ``mu <- E[psi x] / E[psi]``, ``var <- E[psi (x - mu)^2] / E[psi]``;
  * ``gradient_em`` (Zhou et al., Algorithm 1): EM weight step, then a gradient step on the
    means, ``mu_i <- mu_i + eta E[psi_i (x - mu_i)]`` = ``mu_i - eta var_i dL/dmu_i`` (the
    papers' gradient EM, preconditioned by the variance so that eta has no units; with
    identity covariances exactly the papers' step), and the same relaxed step on the
    variances, ``var_i <- var_i + eta E[psi_i ((x - mu_i)^2 - var_i)]``;
  * ``polyak`` (Wang, Fazel, Charisopoulos): ``n_short`` short steps in EM's own scaling
    (``mu_i <- mu_i + eta E[psi_i (x - mu_i)] / E[psi_i]``: EM itself at ``eta = 1``; the
    papers' fixed ``pi_i`` in place of ``E[psi_i]`` overshoots once weights are learned,
    by the factor ``E[psi_i] / pi_i``), then one long Polyak step on the means in the metric
    ``mu <- mu - (L - L*) / <g, P g> P g``, ``P = diag(var_i / pi_i)``, with ``L*`` unknown on
    data and estimated as ``L - (L_prev - L)`` (the last cycle's decrease taken as the
    remaining gap); a long step that raises the loss is undone.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

LOG_2PI = math.log(2.0 * math.pi)
TINY = 1e-300
ALGORITHMS = ("em", "gradient_em", "polyak")
COVARIANCE_TYPES = ("spherical", "diag", "fixed")
INITS = ("data", "kmeans++")


class Params(NamedTuple):
    """A diagonal Gaussian mixture.

    Fields:
      log_weights: ``Float[Array, "n"]``, normalised over the live components, ``-inf`` for dead ones.
      means: ``Float[Array, "n d"]``.
      variances: ``Float[Array, "n d"]``.
    """

    log_weights: jax.Array
    means: jax.Array
    variances: jax.Array


class Stats(NamedTuple):
    """Weighted E-step statistics: loss ``L = -sum_k w_k log p(x_k)`` (scalar), masses
    ``N_i = sum_k w_k psi_ik`` (n,), first moments ``S1_i = sum_k w_k psi_ik x_k`` (n, d) and
    second moments ``S2_i = sum_k w_k psi_ik x_k^2`` (n, d)."""

    loss: jax.Array
    mass: jax.Array
    s1: jax.Array
    s2: jax.Array


class Carry(NamedTuple):
    """Loop state of :func:`fit_all`: one row per restart (leading axis R), H = history length.

    Fields:
      params: current mixtures (the last finite ones if a run failed).
      seg_it: ``(R,)`` E-steps in the current segment (the main fit, or a polishing fit
        after a round of merges).
      evals: ``(R,)`` E-steps in all; ``steps``: ``(R,)`` update steps applied in all.
      loss: ``(R,)`` loss at the last E-step; ``ref_loss``: at the start of the Polyak cycle.
      lower_bounds: ``(R, H)`` mean log-likelihood per sample at each E-step (NaN after the end).
      weights: ``(R, H, n)`` weights after each step (row 0: the start).
      active: ``(R,)`` still fitting.
      converged: ``(R,)`` the last segment stopped because the loss changed by less than ``tol``.
      failed: ``(R,)`` the loss or the parameters turned non-finite; ``failed_at`` the step (-1 if not).
      n_merges: ``(R,)`` pairs merged; ``n_rounds``: rounds of merges.
    """

    params: Params
    seg_it: jax.Array
    evals: jax.Array
    steps: jax.Array
    loss: jax.Array
    ref_loss: jax.Array
    lower_bounds: jax.Array
    weights: jax.Array
    active: jax.Array
    converged: jax.Array
    failed: jax.Array
    failed_at: jax.Array
    n_merges: jax.Array
    n_rounds: jax.Array


# ----------------------------------------------------------------------------- densities
def component_log_prob(X: jax.Array, p: Params) -> jax.Array:
    """``log pi_i + log N(x_k; mu_i, diag var_i)``, shape ``(N, n)``; ``-inf`` for dead components."""
    d = X.shape[-1]
    prec = 1.0 / p.variances
    quad = (X**2) @ prec.T - 2.0 * X @ (p.means * prec).T + jnp.sum(p.means**2 * prec, axis=-1)
    quad = jnp.maximum(quad, 0.0)
    logdet = jnp.sum(jnp.log(p.variances), axis=-1)
    return p.log_weights - 0.5 * (d * LOG_2PI + logdet) - 0.5 * quad


def log_prob(X: jax.Array, p: Params) -> jax.Array:
    """Mixture log-density, shape ``(N,)``."""
    return logsumexp(component_log_prob(X, p), axis=-1)


def responsibilities(X: jax.Array, p: Params) -> jax.Array:
    """Posterior probabilities ``psi``, shape ``(N, n)``, a log-domain softmax (0 for dead components)."""
    return jax.nn.softmax(component_log_prob(X, p), axis=-1)


def e_step(X: jax.Array, w: jax.Array, p: Params) -> Stats:
    """Weighted E-step statistics (see :class:`Stats`)."""
    logits = component_log_prob(X, p)
    ll = logsumexp(logits, axis=-1)
    resp = jnp.exp(logits - ll[:, None])
    wr = w[:, None] * resp
    # padding rows (w = 0) may hold any value; keep them out of the loss
    loss = -jnp.sum(jnp.where(w > 0, w * ll, 0.0))
    return Stats(loss, jnp.sum(wr, axis=0), wr.T @ X, wr.T @ X**2)


# ----------------------------------------------------------------------------- updates
def _shape_variances(var: jax.Array, cov: str, floor: jax.Array) -> jax.Array:
    """Impose the covariance type on diagonal variances ``(n, d)`` and apply the floor."""
    if cov == "fixed":
        return jnp.ones_like(var)
    if cov == "spherical":
        var = jnp.broadcast_to(jnp.mean(var, axis=-1, keepdims=True), var.shape)
        return jnp.maximum(var, jnp.max(floor))
    return jnp.maximum(var, floor)


def _normalise(log_w: jax.Array) -> jax.Array:
    return log_w - logsumexp(log_w)


def _weights_from_mass(mass: jax.Array) -> jax.Array:
    return _normalise(jnp.where(mass > TINY, jnp.log(jnp.maximum(mass, TINY)), -jnp.inf))


def em_step(p: Params, s: Stats, cov: str, floor: jax.Array) -> Params:
    """One EM M-step from the statistics; a component whose mass underflows keeps its mean."""
    ok = (s.mass > TINY)[:, None]
    safe = jnp.where(ok, s.mass[:, None], 1.0)
    means = jnp.where(ok, s.s1 / safe, p.means)
    var = jnp.where(ok, s.s2 / safe - means**2, p.variances)
    return Params(_weights_from_mass(s.mass), means, _shape_variances(var, cov, floor))


def relaxed_step(p: Params, s: Stats, cov: str, floor: jax.Array, rate: jax.Array) -> Params:
    """Means and variances move ``rate_i * N_i`` of the way to their EM targets (at the
    current means): ``mu_i <- mu_i + rate_i E[psi_i (x - mu_i)]``, likewise the variances.
    ``rate = eta`` is gradient EM; ``rate = eta / N_i`` the Polyak method's short step."""
    r = rate[:, None]
    shift = s.s1 - s.mass[:, None] * p.means  # E[psi (x - mu)]
    around = s.s2 - 2.0 * p.means * s.s1 + s.mass[:, None] * p.means**2  # E[psi (x - mu)^2]
    means = p.means + r * shift
    var = p.variances + r * (around - s.mass[:, None] * p.variances)
    return Params(_weights_from_mass(s.mass), means, _shape_variances(var, cov, floor))


def polyak_long_step(p: Params, s: Stats, gap: jax.Array) -> Params:
    """``mu <- mu - gap / <g, P g> P g`` with ``g = dL/dmu = -E[psi (x - mu)] / var`` and
    ``P = diag(var_i / pi_i)``; no step when ``gap <= 0`` or the gradient vanishes."""
    pi = jnp.exp(p.log_weights)
    live = (pi > 0)[:, None]
    shift = jnp.where(live, s.s1 - s.mass[:, None] * p.means, 0.0)
    direction = shift / jnp.where(live, pi[:, None], 1.0)  # -P g
    denom = jnp.sum(jnp.where(live, shift**2 / (p.variances * jnp.where(live, pi[:, None], 1.0)), 0.0))
    ok = (denom > 0) & (gap > 0)
    alpha = jnp.where(ok, gap / jnp.where(ok, denom, 1.0), 0.0)
    return p._replace(means=p.means + alpha * direction)


def prune(p: Params, threshold: jax.Array) -> Params:
    """Kill the components whose weight is below ``threshold`` (never the heaviest one)."""
    pi = jnp.exp(p.log_weights)
    keep = (pi >= threshold) | (jnp.arange(pi.shape[0]) == jnp.argmax(pi))
    return p._replace(log_weights=_normalise(jnp.where(keep, p.log_weights, -jnp.inf)))


def _finite(p: Params) -> jax.Array:
    live = p.log_weights > -jnp.inf
    ok_w = jnp.all(jnp.isfinite(p.log_weights) | ~live) & jnp.any(live)
    ok_m = jnp.all(jnp.isfinite(p.means))
    ok_v = jnp.all(jnp.isfinite(p.variances) & (p.variances > 0))
    return ok_w & ok_m & ok_v


# ----------------------------------------------------------------------------- initialisation
def _pick(cdf: jax.Array, u: jax.Array) -> jax.Array:
    """Inverse-CDF draw: the row whose cumulative-weight interval holds ``u * total``.
    Rows of zero weight own an empty interval and are never picked."""
    idx = jnp.searchsorted(cdf, u * cdf[-1], side="right")
    return jnp.minimum(idx, cdf.shape[0] - 1)


def init_means(X: jax.Array, w: jax.Array, key: jax.Array, n: int, method: str) -> jax.Array:
    """``n`` starting means, shape ``(n, d)``: rows drawn with probability ``w`` (``"data"``,
    with replacement, as Zhou et al. draw from samples of p*) or by k-means++ D^2 sampling.
    The rows of ``X`` are in a canonical (sorted) order, so the draw depends only on the
    weighted empirical distribution, not on the order or multiplicity of rows."""
    u = jax.random.uniform(key, (n,), dtype=jnp.float64)
    cdf = jnp.cumsum(w)
    if method == "data":
        return X[_pick(cdf, u)]

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


def init_restarts(X, w, keys, floor, n_live, *, n: int, method: str, cov: str) -> Params:
    """Starting mixtures for each key (leading axis: restarts): ``n_live`` live components
    with uniform weights, means from :func:`init_means` and every variance the data's
    (weighted) variance, then ``n - n_live`` dead ones (padding that keeps compiled shapes few)."""
    mean = w @ X
    var = w @ (X - mean) ** 2
    means = jax.vmap(lambda k: init_means(X, w, k, n, method))(keys)
    r = keys.shape[0]
    variances = _shape_variances(jnp.broadcast_to(var, (r, n, X.shape[1])), cov, floor)
    live = jnp.arange(n) < n_live
    log_w = jnp.where(live, -jnp.log(n_live.astype(jnp.float64)), -jnp.inf)
    return Params(jnp.broadcast_to(log_w, (r, n)).astype(jnp.float64), means, variances)


# ----------------------------------------------------------------------------- merging
def _moment_match(p: Params, i: jax.Array, j: jax.Array, cov: str, floor: jax.Array):
    """The single Gaussian with the first two moments of components ``i`` and ``j``:
    weight ``pi_i + pi_j``, mean and diagonal variance matched; shapes ``()``, ``(d,)``, ``(d,)``."""
    pi, pj = jnp.exp(p.log_weights[i]), jnp.exp(p.log_weights[j])
    tot = pi + pj
    a, b = pi / tot, pj / tot
    mu = a * p.means[i] + b * p.means[j]
    var = a * (p.variances[i] + p.means[i] ** 2) + b * (p.variances[j] + p.means[j] ** 2) - mu**2
    return jnp.log(tot), mu, _shape_variances(var[None], cov, floor)[0]


def pair_costs(X, w, p: Params, floor, *, cov: str) -> jax.Array:
    """``(n, n)`` matrix: the loss in mean log-likelihood per sample when components ``i < j``
    are replaced by their moment-matched merge (``inf`` for ``i >= j`` or a dead component).
    About 0 when the two nearly coincide in mean and variance; about the pair's mass times
    the log of the variance inflation when they are distinct clusters.

    The density of the other components is ``p(x) * sum_{k != i, j} psi_k(x)``: a sum of
    positive terms, free of cancellation."""
    n = p.log_weights.shape[0]
    ii, jj = jnp.triu_indices(n, k=1)
    pairs = jnp.arange(ii.shape[0])
    logits = component_log_prob(X, p)
    ll = logsumexp(logits, axis=-1)
    resp = jnp.exp(logits - ll[:, None])
    keep = jnp.ones((ii.shape[0], n)).at[pairs, ii].set(0.0).at[pairs, jj].set(0.0)
    others = ll[:, None] + jnp.log(resp @ keep.T)
    lw, mu, var = jax.vmap(lambda i, j: _moment_match(p, i, j, cov, floor))(ii, jj)
    merged = component_log_prob(X, Params(lw, mu, var))
    ll2 = jnp.logaddexp(others, merged)
    costs = jnp.sum(jnp.where(w[:, None] > 0, w[:, None] * (ll[:, None] - ll2), 0.0), axis=0)
    live = (p.log_weights[ii] > -jnp.inf) & (p.log_weights[jj] > -jnp.inf)
    costs = jnp.where(live & jnp.isfinite(costs), costs, jnp.inf)
    return jnp.full((n, n), jnp.inf).at[ii, jj].set(costs)


def merge_round(X, w, p: Params, floor, threshold, *, cov: str) -> tuple[Params, jax.Array]:
    """Merge every pair of mutually cheapest partners whose :func:`pair_costs` entry is below
    ``threshold`` (such pairs are disjoint, and the cheapest pair overall is one of them).
    The lower index keeps the moment-matched merge, the other dies. Returns the new
    mixture and the number of pairs merged."""
    n = p.log_weights.shape[0]
    if n < 2:
        return p, jnp.zeros((), jnp.int32)
    costs = pair_costs(X, w, p, floor, cov=cov)
    costs = jnp.minimum(costs, costs.T)
    idx = jnp.arange(n)
    partner = jnp.argmin(costs, axis=1)
    ok = (partner[partner] == idx) & (costs[idx, partner] < threshold)
    keeper, dead = ok & (idx < partner), ok & (idx > partner)
    lw, mu, var = jax.vmap(lambda i, j: _moment_match(p, i, j, cov, floor))(idx, partner)
    new = Params(
        jnp.where(keeper, lw, jnp.where(dead, -jnp.inf, p.log_weights)),
        jnp.where(keeper[:, None], mu, p.means),
        jnp.where(keeper[:, None], var, p.variances),
    )
    return new, jnp.sum(keeper).astype(jnp.int32)


def _update(p: Params, s: Stats, steps, ref_loss, X, w, step_size, floor, *, algorithm, cov, n_short):
    """One step of ``algorithm`` from the E-step statistics ``s`` (one restart)."""
    n = p.log_weights.shape[0]
    if algorithm == "em":
        return em_step(p, s, cov, floor), ref_loss
    if algorithm == "gradient_em":
        return relaxed_step(p, s, cov, floor, jnp.full((n,), step_size)), ref_loss
    ref_loss = jnp.where(jnp.isfinite(ref_loss), ref_loss, s.loss)
    ok = s.mass > TINY
    rate = jnp.where(ok, step_size / jnp.where(ok, s.mass, 1.0), 0.0)
    is_long = (steps % (n_short + 1)) == n_short
    short = relaxed_step(p, s, cov, floor, rate)
    long = polyak_long_step(p, s, ref_loss - s.loss)
    long_loss = e_step(X, w, long).loss
    long = jax.tree_util.tree_map(lambda a, b: jnp.where(long_loss <= s.loss, a, b), long, p)
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(is_long, a, b), long, short)
    return new, jnp.where(is_long, s.loss, ref_loss)


def _rows(mask, a, b):
    """``where(mask, a, b)`` with ``mask`` of shape (R,) broadcast over trailing axes."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)


class FitResult(NamedTuple):
    """What :func:`fit_all` returns: the final :class:`Carry` of every restart and the index
    ``best`` of the kept one (lowest ``loss + threshold * live components`` among the finite)."""

    carry: Carry
    best: jax.Array


@functools.partial(jax.jit, static_argnames=("n", "method", "algorithm", "cov", "max_iter", "n_short"))
def fit_all(
    X,
    w,
    keys,
    floor,
    n_live,
    step_size,
    tol,
    prune_at,
    threshold,
    *,
    n: int,
    method: str,
    algorithm: str,
    cov: str,
    max_iter: int,
    n_short: int,
) -> FitResult:
    """The whole fit in one compiled loop, all restarts together (one per key).

    Each restart: initialise (``n`` components, ``n_live`` of them live); take steps of
    ``algorithm`` (one E-step each, its loss recorded before the step) until the loss
    changes by less than ``tol`` or ``max_iter`` steps; prune weights below ``prune_at``
    after each step. At the end of such a segment, if ``threshold > 0``, run a
    :func:`merge_round` (pairs cheaper than ``threshold``, in mean log-likelihood per
    sample); if it merged something, start a new (polishing) segment, else stop. A
    non-finite loss or state stops the restart at its last finite state.
    """
    R = keys.shape[0]
    H = (max_iter + 1) * n
    e_step_b = jax.vmap(e_step, in_axes=(None, None, 0))
    update_b = jax.vmap(
        functools.partial(_update, algorithm=algorithm, cov=cov, n_short=n_short),
        in_axes=(0, 0, 0, 0, None, None, None, None),
    )
    merge_b = jax.vmap(functools.partial(merge_round, cov=cov), in_axes=(None, None, 0, None, None))
    set_row = jax.vmap(lambda a, i, v: a.at[i].set(v))
    rows = jnp.arange(R)

    def cond(c: Carry):
        return jnp.any(c.active)

    def body(c: Carry) -> Carry:
        s = e_step_b(X, w, c.params)
        bad = c.active & ~jnp.isfinite(s.loss)
        # a Polyak long step is followed by a short one before convergence is judged
        after_long = (algorithm == "polyak") & (c.steps > 0) & (((c.steps - 1) % (n_short + 1)) == n_short)
        conv = (c.seg_it > 0) & (jnp.abs(c.loss - s.loss) < tol) & ~after_long
        end = c.active & ~bad & (conv | (c.seg_it >= max_iter))
        lb = set_row(c.lower_bounds, c.evals, jnp.where(c.active & ~bad, -s.loss, jnp.nan))
        new, ref = update_b(c.params, s, c.steps, c.ref_loss, X, w, step_size, floor)
        new = jax.vmap(prune, in_axes=(0, None))(new, prune_at)
        finite = jax.vmap(_finite)(new)
        ok = c.active & ~bad & ~end & finite
        params = jax.tree_util.tree_map(lambda a, b: _rows(ok, a, b), new, c.params)
        steps = c.steps + ok.astype(jnp.int32)
        weights = c.weights.at[rows, steps].set(_rows(ok, jnp.exp(params.log_weights), c.weights[rows, steps]))
        failed_now = bad | (c.active & ~bad & ~end & ~finite)

        want = end & (threshold > 0)
        merged, k = jax.lax.cond(
            jnp.any(want),
            lambda: merge_b(X, w, params, floor, threshold),
            lambda: (params, jnp.zeros(R, jnp.int32)),
        )
        do = want & (k > 0)
        params = jax.tree_util.tree_map(lambda a, b: _rows(do, a, b), merged, params)
        return Carry(
            params,
            jnp.where(do, 0, c.seg_it + 1),
            c.evals + c.active.astype(jnp.int32),
            steps,
            jnp.where(c.active & ~bad, s.loss, c.loss),
            jnp.where(do, jnp.inf, jnp.where(ok, ref, c.ref_loss)),
            lb,
            weights,
            c.active & ~failed_now & ~(end & ~do),
            jnp.where(end, conv, c.converged),
            c.failed | failed_now,
            jnp.where(failed_now, c.steps, c.failed_at),
            c.n_merges + jnp.where(do, k, 0),
            c.n_rounds + do.astype(jnp.int32),
        )

    p0 = init_restarts(X, w, keys, floor, n_live, n=n, method=method, cov=cov)
    zeros = jnp.zeros(R, jnp.int32)
    inf = jnp.full(R, jnp.inf)
    weights = jnp.zeros((R, H, n)).at[:, 0].set(jnp.exp(p0.log_weights))
    c0 = Carry(
        p0,
        zeros,
        zeros,
        zeros,
        inf,
        inf,
        jnp.full((R, H), jnp.nan),
        weights,
        jnp.ones(R, bool),
        jnp.zeros(R, bool),
        jnp.zeros(R, bool),
        zeros - 1,
        zeros,
        zeros,
    )
    c = jax.lax.while_loop(cond, body, c0)
    live = jnp.sum(c.params.log_weights > -jnp.inf, axis=1)
    best = jnp.argmin(jnp.where(c.failed, jnp.inf, c.loss + threshold * live))
    return FitResult(c, best)


@functools.partial(jax.jit, static_argnames=("n", "method", "cov"))
def init_only(X, w, keys, floor, n_live, *, n: int, method: str, cov: str) -> Params:
    """:func:`init_restarts`, compiled on its own (for :meth:`OverparamGMM.partial_fit`)."""
    return init_restarts(X, w, keys, floor, n_live, n=n, method=method, cov=cov)


# ----------------------------------------------------------------------------- evaluation and streaming
@jax.jit
def evaluate(X: jax.Array, p: Params) -> tuple[jax.Array, jax.Array]:
    """Log-density ``(N,)`` and responsibilities ``(N, n)`` of ``X`` under ``p``."""
    logits = component_log_prob(X, p)
    ll = logsumexp(logits, axis=-1)
    return ll, jnp.exp(logits - ll[:, None])


@functools.partial(jax.jit, static_argnames=("cov",))
def stochastic_step(X, w, p: Params, rate, prune_at, floor, *, cov: str) -> tuple[Params, jax.Array]:
    """One stochastic (stepwise) EM step on a mini-batch: the sufficient statistics implied
    by ``p`` (``pi``, ``pi mu``, ``pi (var + mu^2)``) move ``rate`` of the way to the batch's,
    then the M-step. For the means this is ``mu_i <- mu_i + rate' E_batch[psi_i (x - mu_i)] / pi_i'``:
    a stochastic gradient-EM step in EM's metric. Returns the new mixture and the batch loss."""
    s = e_step(X, w, p)
    pi = jnp.exp(p.log_weights)
    mass = (1 - rate) * pi + rate * s.mass
    s1 = (1 - rate) * pi[:, None] * p.means + rate * s.s1
    s2 = (1 - rate) * pi[:, None] * (p.variances + p.means**2) + rate * s.s2
    new = em_step(p, Stats(s.loss, mass, s1, s2), cov, floor)
    return prune(new, prune_at), s.loss


@functools.partial(jax.jit, static_argnames=("n_samples",))
def sample(key: jax.Array, p: Params, n_samples: int) -> tuple[jax.Array, jax.Array]:
    """Draw ``n_samples`` points ``(n_samples, d)`` and their component labels ``(n_samples,)``."""
    kc, kz = jax.random.split(key)
    comp = jax.random.categorical(kc, p.log_weights, shape=(n_samples,))
    z = jax.random.normal(kz, (n_samples, p.means.shape[1]), dtype=jnp.float64)
    return p.means[comp] + jnp.sqrt(p.variances[comp]) * z, comp
