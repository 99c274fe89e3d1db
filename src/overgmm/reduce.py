"""Fewer components: pruning small weights and merging pairs the data cannot tell apart.

Both keep the arrays' shapes: a removed component stays in the :class:`~overgmm.Mixture`
with weight exactly 0 (log-weight ``-inf``), so compilations are reused.

* :func:`prune`: weights below a threshold go to 0 (never the heaviest component).
* :func:`moment_match`: the single Gaussian with the first two moments of two components.
* :func:`pair_costs`: the loss in mean log-likelihood per sample of each such merge on data
  (:func:`pair_cost_sums`: the same as sums over rows, which chunks of data add up), for the
  :func:`candidate_pairs` (the ``CANDIDATES * n`` pairs with the smallest Runnalls bound,
  found from the mixture alone; all pairs when there are no more than that).
* :func:`merge_round`: merge every pair of mutually cheapest partners below a price (in the
  estimator: a multiple of the BIC price of one component).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jax.typing import ArrayLike

from overgmm._eager import compiled_when_eager
from overgmm.covariances import LOG_2PI, observed, precision_cholesky
from overgmm.covariances.base import apply_observed
from overgmm.mixture import Mixture
from overgmm.problem import Problem
from overgmm.statistics import block_rows, blocked_sum, rows_for_width

CANDIDATES = 2  # pairs whose merge cost is measured on the data, per component
ALL_PAIRS_UP_TO = 1 << 16  # rows x pairs up to which every pair is measured (no ranking to compile)
EXP_MAX = 700.0  # exp of at most this is finite in float64


def _normalise(lw: jax.Array) -> jax.Array:
    return lw - logsumexp(lw)


@compiled_when_eager
def prune(student: Mixture, threshold) -> Mixture:
    """Set the weights below ``threshold`` to exactly 0 (the heaviest component is kept)."""
    pi = student.weights
    keep = (pi >= threshold) | (jnp.arange(pi.shape[0]) == jnp.argmax(pi))
    return student.replace(log_weights=_normalise(jnp.where(keep, student.log_weights, -jnp.inf)))


@compiled_when_eager
def moment_match(student: Mixture, i: jax.Array, j: jax.Array):
    """Log-weight ``()``, mean ``(d,)`` and covariance (natural shape of one component) of
    the single Gaussian with the first two moments of components ``i`` and ``j``."""
    pi, pj = jnp.exp(student.log_weights[i]), jnp.exp(student.log_weights[j])
    tot = pi + pj
    a, b = pi / tot, pj / tot
    mu = a * student.means[i] + b * student.means[j]
    t = student.cov_type
    m2 = t.second_moments(student.covariances, student.means)
    second = a * m2[i] + b * m2[j]
    cov = t.from_second(second, mu)
    return jnp.log(tot), mu, cov


def _merged(student: Mixture, ii: jax.Array, jj: jax.Array, floor: jax.Array) -> Mixture:
    """The moment-matched merges of the pairs ``(ii[k], jj[k])`` as one mixture (unnormalised
    log-weights: each the pair's total). Identity students merge into identity components
    (means matched only)."""
    student = jax.tree_util.tree_map(jnp.asarray, student)
    lw, mu, cov = jax.vmap(lambda i, j: moment_match(student, i, j))(ii, jj)
    t = student.cov_type
    params = t.merged_params(student.cov_params, cov, floor) if t.learned else None
    return Mixture.tree_unflatten(student.covariance_type, (mu, lw, params))


def _loss_of_merge(others: jax.Array, t: jax.Array) -> jax.Array:
    """``-log(others + exp(t))`` elementwise, exact to rounding over float64's range: ``others``
    >= 0 (the responsibilities of the components a merge keeps), ``t`` the merged component's
    log-density less the mixture's (``-inf`` allowed). Two transcendentals per entry, a sum
    of positive terms; ``jnp.logaddexp`` took 5-10x as long in the merge costs' row pass."""
    big = jnp.maximum(t - EXP_MAX, 0.0)  # exp(t) would overflow: -log(exp(t)) = -t
    t = t - big
    v = others + jnp.exp(t)
    return jnp.where(v > 0, -jnp.log(jnp.where(v > 0, v, 1.0)), -t) - big  # v = 0: exp(t) underflowed


def _logaddexp(a: jax.Array, b: jax.Array) -> jax.Array:
    """``log(exp(a) + exp(b))`` elementwise for finite or ``-inf`` log-densities (``-inf``
    where both are; no ``+inf`` or NaN handling): ``jnp.logaddexp`` without its special-value
    branches, which made it 5-10x slower on XLA:CPU."""
    top = jnp.maximum(a, b)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    return top + jnp.log(jnp.exp(a - top) + jnp.exp(b - top))


def _component_log_prob_unnormalised(m: Mixture, X: jax.Array, missing: bool = False) -> jax.Array:
    # component_log_prob renormalises the log-weights; add back their total
    return m.component_log_prob(X, missing=missing) + logsumexp(m.log_weights)


@compiled_when_eager
def runnalls_bound(student: Mixture, ii: jax.Array, jj: jax.Array) -> jax.Array:
    """Runnalls' (2007) upper bound on the KL divergence between the pairs ``(ii, jj)`` and
    their moment-matched merges, ``((w_i + w_j) log|S_ij| - w_i log|S_i| - w_j log|S_j|) / 2``
    (shape of ``ii``): a cheap, data-free ranking of which merges may cost little."""
    t, d = student.cov_type, student.dim
    student = jax.tree_util.tree_map(jnp.asarray, student)  # NumPy leaves index by tracers too
    lw, _, cov = jax.vmap(lambda i, j: moment_match(student, i, j))(ii, jj)
    own = t.component_log_dets(student.cov_params, student.means)
    pi = student.weights
    return 0.5 * (jnp.exp(lw) * t.log_det(cov, d) - pi[ii] * own[ii] - pi[jj] * own[jj])


@compiled_when_eager(static_argnames=("rows",))
def candidate_pairs(student: Mixture, rows: int | None = None) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """The pairs ``i < j`` whose merge cost :func:`pair_cost_sums` measures on ``rows`` rows
    (padded; None: many): ``(ii, jj, idx)``, ``idx`` their positions in ``np.triu_indices``
    order; NumPy constants when every pair is measured, so that the program holds no index
    arithmetic for them. All pairs when there are at most ``CANDIDATES * n``, or when
    ``rows x pairs`` is at most :data:`ALL_PAIRS_UP_TO` (small data: measuring every pair
    costs less than compiling the ranking); else ``CANDIDATES * n`` pairs of live components with the smallest
    :func:`runnalls_bound` (a function of the mixture only, so every chunk of data picks the
    same pairs)."""
    n = student.n_components
    ii, jj = np.triu_indices(n, k=1)  # static: constants in the program
    pairs = ii.shape[0]
    k = min(pairs, CANDIDATES * n)
    if rows is not None and rows * pairs <= ALL_PAIRS_UP_TO:
        k = pairs
    if k == pairs:
        return ii, jj, np.arange(pairs)
    bound = runnalls_bound(student, ii, jj)
    bound = jnp.where(student.live[ii] & student.live[jj] & jnp.isfinite(bound), bound, jnp.inf)
    _, idx = jax.lax.top_k(-bound, k)
    return jnp.asarray(ii)[idx], jnp.asarray(jj)[idx], idx


@compiled_when_eager(static_argnames=("missing",))
def pair_cost_sums(student: Mixture, X: jax.Array, w: jax.Array, floor: jax.Array, missing: bool = False) -> jax.Array:
    """``(n (n - 1) / 2,)``: ``sum_k w_k (log p(x_k) - log p_ij(x_k))`` over the rows of ``X``
    (N, d), one entry per pair ``i < j`` (``np.triu_indices`` order), ``p_ij`` the mixture
    with the pair replaced by its moment-matched merge; NaN for the pairs that are not
    :func:`candidate_pairs`. Unnormalised sums over rows, in row blocks, so that chunks of
    data add up (:mod:`overgmm.streaming`).

    The density of the other components is ``p(x) sum_{k != i, j} psi_k(x)``, a sum of
    positive terms free of cancellation. ``missing``: NaN entries are missing (each row's
    marginal over its observed features, as :meth:`Mixture.log_posterior`).

    "tied": the merge widens the shared covariance by the pair's between scatter, as the
    next M-step does (:func:`_tied_pair_block`); with it kept, a merge of two pieces of one
    cluster looked costly and tied fits kept them apart."""
    n = student.n_components
    all_pairs = n * (n - 1) // 2
    ii, jj, chosen = candidate_pairs(student, X.shape[0])
    if student.covariance_type == "tied":
        tied_block = _tied_pair_block(student, ii, jj, missing)
        width = ii.shape[0] * (n + (2 * X.shape[1] if missing else 0))
        sums = blocked_sum(tied_block, X, w, rows_for_width(X.shape[0], width))
        return _by_pair(sums, chosen, all_pairs)
    keep = jnp.asarray(_others(ii, jj, n), jnp.float64)
    merged_mix = _merged(student, ii, jj, floor)

    def block(xb, wb):
        ll, resp = student.log_posterior(xb, missing=missing)
        # log p(x) - log p_ij(x) = -log(sum_{k != i, j} psi_k(x) + p_merged(x) / p(x))
        loss = _loss_of_merge(resp @ keep.T, _component_log_prob_unnormalised(merged_mix, xb, missing) - ll[:, None])
        return jnp.sum(jnp.where(wb[:, None] > 0, wb[:, None] * loss, 0.0), axis=0)

    # the E-step's block rule, for the n components and the P merged ones (by the P pairs
    # alone, full covariances' (rows, P, d) temporaries ran 10240 rows in one block: 2x slower)
    rows = block_rows(X.shape[0], n + ii.shape[0], X.shape[1], student.covariance_type, missing=missing)
    sums = blocked_sum(block, X, w, rows)
    return _by_pair(sums, chosen, all_pairs)


def _by_pair(sums: jax.Array, chosen, all_pairs: int) -> jax.Array:
    """``(all_pairs,)``: ``sums`` at the positions ``chosen``, NaN elsewhere (no scatter
    when every pair was chosen)."""
    if isinstance(chosen, np.ndarray) and chosen.shape[0] == all_pairs:
        return sums
    return jnp.full((all_pairs,), jnp.nan, sums.dtype).at[chosen].set(sums)


def _others(ii, jj, n: int):
    """``(P, n)`` mask: the components other than pair ``p``'s two (NumPy for static pairs)."""
    xp = np if isinstance(ii, np.ndarray) and isinstance(jj, np.ndarray) else jnp
    k = xp.arange(n)[None, :]
    return (k != ii[:, None]) & (k != jj[:, None])


def tied_pair_widening(student: Mixture, ii: jax.Array, jj: jax.Array):
    """What merging the pairs ``(ii[p], jj[p])`` of a "tied" student does to its shared
    covariance: ``Sigma + c_p delta_p delta_p^T`` with ``delta_p = mu_i - mu_j`` (P, d) and
    ``c_p = pi_i pi_j / (pi_i + pi_j)`` (P,) (0 for a pair without weight): the pooled
    scatter gains the pair's between scatter, as the next M-step computes it. Returns
    ``(c, delta)``; :func:`merge_pairs` and the merge costs share it."""
    pi = jnp.exp(student.log_weights - logsumexp(student.log_weights))
    tot = pi[ii] + pi[jj]
    c = jnp.where(tot > 0, pi[ii] * pi[jj] / jnp.where(tot > 0, tot, 1.0), 0.0)
    return c, student.means[ii] - student.means[jj]


def _tied_pair_block(student: Mixture, ii: jax.Array, jj: jax.Array, missing: bool = False):
    """The row-block function of :func:`pair_cost_sums` for a "tied" student: each pair
    ``(ii[p], jj[p])`` is replaced by its moment-matched merge, and the shared covariance
    becomes ``Sigma' = Sigma + c delta delta^T`` (:func:`tied_pair_widening`). A rank-one
    change: with whitened values (``x U``, ``Sigma^-1 = U U^T``), every component's
    log-density under ``Sigma'`` is its own under ``Sigma`` plus
    ``c (delta~ . (x~ - mu~_k))^2 / (2 s) - log(s) / 2``, ``s = 1 + c |delta~|^2``
    (Sherman-Morrison and the matrix determinant lemma): no factorisation per pair.
    ``missing``: each row's marginal over its observed features ``o``, whose covariance
    ``Sigma_oo + c delta_o delta_o^T`` is the same rank-one change: the terms come from the
    row's own ``Sigma_oo^{-1}`` (:meth:`Tied.logits_observed`)."""
    student = jax.tree_util.tree_map(jnp.asarray, student)
    n, d = student.means.shape
    lw = student.log_weights - logsumexp(student.log_weights)
    c, delta = tied_pair_widening(student, ii, jj)
    pi = jnp.exp(lw)
    tot = pi[ii] + pi[jj]
    log_tot = jnp.log(tot)  # the merged component's log-weight
    merged_mu = (pi[ii, None] * student.means[ii] + pi[jj, None] * student.means[jj]) / jnp.where(tot > 0, tot, 1.0)[
        :, None
    ]  # (P, d)
    others_mask = _others(ii, jj, n)

    def costs(wb, ll, others, merged, s):
        ll2 = _logaddexp(others, merged) - 0.5 * jnp.log(s)
        return jnp.sum(jnp.where(wb[:, None] > 0, wb[:, None] * (ll[:, None] - ll2), 0.0), axis=0)

    if missing:
        t = student.cov_type

        def block_observed(xb, wb):
            x0, o = observed(xb)
            lg = t.logits_observed(x0, o, student.means, lw, student.cov_params)
            # the row's Sigma_oo^{-1} (b, 1, d, d), residuals (b, n, d), log det Sigma_oo (b, 1)
            p_o, r, _, logdet = lg.feats
            d_o = delta * o[:, None, :]  # (b, P, d)
            v = apply_observed(p_o, d_o)  # Sigma_oo^{-1} delta_o
            s = 1.0 + c * jnp.sum(v * d_o, axis=-1)  # (b, P)
            g = 0.5 * c / s
            wide = lg.values[:, None, :] + g[:, :, None] * jnp.einsum("bpd,bnd->bpn", v, r) ** 2
            others = logsumexp(jnp.where(others_mask, wide, -jnp.inf), axis=2)
            r_m = (x0[:, None, :] - merged_mu) * o[:, None, :]  # (b, P, d)
            seen = jnp.sum(o, axis=-1, keepdims=True)
            quad_m = jnp.sum(r_m * apply_observed(p_o, r_m), axis=-1)
            merged = log_tot - 0.5 * (seen * LOG_2PI + logdet + quad_m)
            merged = merged + g * jnp.sum(v * r_m, axis=-1) ** 2
            return costs(wb, logsumexp(lg.values, axis=1), others, merged, s)

        return block_observed

    u = precision_cholesky(student.cov_params)  # (d, d)
    mu, dt, mu_m = student.means @ u, delta @ u, merged_mu @ u  # whitened
    s = 1.0 + c * jnp.sum(dt**2, axis=-1)  # (P,)
    g = 0.5 * c / s
    b, b_m = mu @ dt.T, jnp.sum(mu_m * dt, axis=-1)  # (n, P), (P,)
    const = jnp.sum(jnp.diagonal(student.cov_params)) - 0.5 * d * LOG_2PI  # log |U| - d log(2 pi) / 2

    def block(xb, wb):
        xt = xb @ u  # (N, d)
        logit = lw + const - 0.5 * jnp.sum((xt[:, None, :] - mu) ** 2, axis=-1)  # (N, n)
        a = xt @ dt.T  # (N, P)
        wide = logit[:, None, :] + g[None, :, None] * (a[:, :, None] - b.T[None]) ** 2  # (N, P, n)
        others = logsumexp(jnp.where(others_mask, wide, -jnp.inf), axis=2)
        merged = log_tot + const - 0.5 * jnp.sum((xt[:, None, :] - mu_m) ** 2, axis=-1) + g * (a - b_m) ** 2
        return costs(wb, logsumexp(logit, axis=1), others, merged, s)

    return block


@compiled_when_eager
def cost_matrix(student: Mixture, sums: jax.Array, total: ArrayLike) -> jax.Array:
    """The ``(n, n)`` :func:`pair_costs` matrix from :func:`pair_cost_sums` and the total weight."""
    n = student.n_components
    ii, jj = np.triu_indices(n, k=1)
    costs = sums / total
    live = student.live[ii] & student.live[jj]
    costs = jnp.where(live & jnp.isfinite(costs), costs, jnp.inf)  # NaN: not a candidate
    if ii.shape[0] == 0:
        return jnp.full((n, n), jnp.inf)
    # the (n, n) matrix by a gather of static indices (a scatter compiles to a loop)
    pos, upper = np.zeros((n, n), np.int32), np.zeros((n, n), bool)
    pos[ii, jj], upper[ii, jj] = np.arange(ii.shape[0]), True
    return jnp.where(upper, costs[pos], jnp.inf)


@compiled_when_eager
def pair_costs(problem: Problem, student: Mixture) -> jax.Array:
    """``(n, n)`` matrix: the loss in mean log-likelihood per sample (weighted) when
    components ``i < j`` are replaced by their moment-matched merge (``inf`` for ``i >= j``
    or a pruned component). About 0 when the two nearly coincide."""
    X = problem.data
    if X is None:
        raise ValueError("merge costs are measured on data: the problem holds none")
    w = jnp.ones(X.shape[:1]) if problem.sample_weight is None else problem.sample_weight
    return cost_matrix(student, pair_cost_sums(student, X, w, problem.floor, problem.missing), jnp.sum(w))


@compiled_when_eager
def merge_round(problem: Problem, student: Mixture, price) -> tuple[Mixture, jax.Array]:
    """Merge every pair of mutually cheapest partners whose :func:`pair_costs` entry is below
    ``price`` (such pairs are disjoint; the cheapest pair overall is one of them). The lower
    index keeps the moment-matched merge, the other gets weight 0. Returns the new mixture
    and the number of pairs merged."""
    if student.n_components < 2:
        return student, jnp.zeros((), jnp.int32)
    return merge_pairs(student, pair_costs(problem, student), price, problem.floor)


@compiled_when_eager
def merge_pairs(student: Mixture, costs: jax.Array, price, floor: jax.Array) -> tuple[Mixture, jax.Array]:
    """:func:`merge_round` given the ``(n, n)`` cost matrix (:func:`cost_matrix`)."""
    n = student.n_components
    if n < 2:
        return student, jnp.zeros((), jnp.int32)
    costs = jnp.minimum(costs, costs.T)
    idx = jnp.arange(n)
    partner = jnp.argmin(costs, axis=1)
    ok = (partner[partner] == idx) & (costs[idx, partner] < price)
    keeper, dead = ok & (idx < partner), ok & (idx > partner)
    merged = _merged(student, idx, partner, floor)
    lw = jnp.where(keeper, merged.log_weights, jnp.where(dead, -jnp.inf, student.log_weights))
    sel = keeper.reshape((n,) + (1,) * (student.means.ndim - 1))
    new = student.replace(log_weights=_normalise(lw), means=jnp.where(sel, merged.means, student.means))
    if student.covariance_type == "tied":  # the shared covariance widens by each merged pair's between scatter
        c, delta = tied_pair_widening(student, idx, partner)
        wide = student.cov_type.widened(student.cov_params, jnp.where(keeper, c, 0.0), delta)
        new = new.replace(cov_params=jnp.where(jnp.any(keeper), wide, student.cov_params))
    elif student.cov_params is not None:
        new = new.replace(cov_params=student.cov_type.merge_params(keeper, merged.cov_params, student.cov_params))
    return new, jnp.sum(keeper).astype(jnp.int32)
