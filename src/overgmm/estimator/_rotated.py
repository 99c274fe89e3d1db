"""``covariance_type="rotated"``: diagonal covariances in one orthonormal basis shared by
every component, ``Sigma_i = R diag(v_i) R^T`` (mclust's "VVE", with fixed axes).

The starting axes ``R`` (d, d) are the common principal axes (:func:`common_axes`) of a
full fit's covariances in the units of X (the directions along which the clusters are
elongated together: correlated measurements of size, say), and the principal axes of a
tied fit's shared covariance (the within-cluster axes, which a full fit that merged its
clusters into one no longer sees). The fit (:func:`fit`) is then the
estimator's "diag" fit of the rows rotated onto the axes, ``X @ R``: ``R`` is orthonormal,
so a density of ``X @ R`` is the same density of ``X`` and log-likelihoods compare as they
are. The axes are then turned by the fit's own components (:func:`refined`): the common
axes of their scatter matrices, mclust's M-step for the orientation, and the diag fit
again, for up to :data:`ROUNDS` rounds while the training objective falls; the start
with the lowest training objective is kept. The result is
kept as "full" matrices in the standardized units of ``X`` (:func:`to_full`), so
inference, model files and sampling are those of "full", and
:class:`overgmm.covariances.Rotated` counts its parameters for BIC.
"""

from __future__ import annotations

import jax
import numpy as np

from overgmm.estimator import _fit as F
from overgmm.estimator._checks import log_jacobian
from overgmm.mixture import Mixture

AXES_FROM = ("full", "tied")  # the covariance types whose fits give the starting axes
# ... and for the "auto" candidate (both faces): the tied start there moved no real_data_cv
# choice for the better (wine -0.12, ais -0.02) and cost 25-30% of the default fit (two
# more diag fits)
AUTO_AXES_FROM = ("full",)
SWEEPS = 8  # at most this many Jacobi sweeps in common_axes
COARSE = 32  # the grid of pair angles (2.8 degrees of turn apart) that brackets each pair's best turn
TRIES = 3  # the best starts of each pair polished by Newton steps
NEWTON = 6  # safeguarded Newton steps from each of those starts to the pair's exact best turn
STILL = 1e-9  # a pair turned by less than this (radians) is left as it is
SETTLED = 1e-7  # the sweeps stop once one lowers the profile loss by less than this (nats)
ROUNDS = 1  # at most this many re-estimates of the axes from the rotated fit's components


def pairings(d: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The round-robin order of Jacobi sweeps over ``d`` axes: ``d - 1`` rounds (``d``
    when ``d`` is odd) of disjoint pairs ``(a, b)``, ``a < b``, which together hold every
    pair once. The pairs of a round turn at once."""
    m = d + d % 2
    players = list(range(m))
    out = []
    for _ in range(m - 1):
        ends = zip(players[: m // 2], players[::-1][: m // 2], strict=True)
        pairs = sorted((min(a, b), max(a, b)) for a, b in ends if max(a, b) < d)
        out.append((np.array([a for a, _ in pairs], dtype=int), np.array([b for _, b in pairs], dtype=int)))
        players = [players[0], players[-1], *players[1:-1]]
    return out


def best_turns(p: np.ndarray, va: np.ndarray, vb: np.ndarray, vab: np.ndarray) -> np.ndarray:
    """The turn ``theta`` (P,) in ``[-pi/4, pi/4)`` of each of ``P`` pairs of axes ``(a,
    b)`` that minimises ``sum_i p_i log(along_a_i along_b_i)``, the pair's share of the
    profile loss of :func:`common_axes`, from the covariances' entries ``va = M_aa``,
    ``vb = M_bb``, ``vab = M_ab`` (k, P) on the current axes. With ``phi = 2 theta``,
    ``along_a = m + g`` and ``along_b = m - g``, ``g = u cos phi + w sin phi`` (``m``,
    ``u``: the half sum and half difference of ``va`` and ``vb``; ``w = vab``): the loss
    has period pi in ``phi``, and component i's term is least at its own axes, ``phi =
    atan2(w_i, u_i)``, where a nearly flat component dips sharply. The best of a grid of
    :data:`COARSE` angles and those k starts, then :data:`NEWTON` safeguarded Newton steps
    (bisection where Newton leaves the bracket of a grid step either side) from each of
    the :data:`TRIES` best starts. 0 where no turn lowers the loss beyond rounding. Each
    component's entries are divided by its ``m`` first (the loss moves by a constant), so
    that no product of variances overflows; a product that rounding makes negative (a
    singular component) counts as no candidate."""
    m = 0.5 * (va + vb)
    m = np.where(m > 0, m, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _polished_turns(p, 0.5 * (va - vb) / m, vab / m)


def _log_along(g):
    """``log(along_a along_b) = log((1 + g)(1 - g))`` (per unit ``m``), +inf where
    rounding made it NaN."""
    out = np.log((1.0 + g) * (1.0 - g))
    return np.where(np.isnan(out), np.inf, out)


def _polished_turns(p, u, w):
    """:func:`best_turns` of the entries divided by ``m``: ``u``, ``w`` (k, P)."""
    h = np.pi / COARSE
    starts = np.concatenate([np.broadcast_to(np.arange(COARSE) * h, (u.shape[1], COARSE)), np.arctan2(w, u).T], 1)
    g = u[..., None] * np.cos(starts) + w[..., None] * np.sin(starts)  # (k, P, COARSE + k)
    f = np.einsum("i,ipt->pt", p, _log_along(g))
    f = np.where(np.isnan(f), np.inf, f)  # -inf + inf: no candidate
    j = np.argsort(f, axis=1)[:, :TRIES]  # the best starts, each polished: the loss can dip more than once
    x0, f_x0 = np.take_along_axis(starts, j, 1), np.take_along_axis(f, j, 1)  # (P, TRIES)
    x, lo, hi = x0, x0 - h, x0 + h
    u, w, p = u.T[..., None], w.T[..., None], p[:, None]  # (P, k, 1) against (P, TRIES)
    for _ in range(NEWTON):
        c, s = np.cos(x)[:, None], np.sin(x)[:, None]
        g, gp = u * c + w * s, w * c - u * s  # g and its derivative in phi, (P, k, TRIES)
        P = (1.0 + g) * (1.0 - g)
        d1 = np.sum(p * (-2.0 * g * gp / P), axis=1)
        d2 = np.sum(p * (2.0 * (g * g - gp * gp) / P - 4.0 * (g * gp / P) ** 2), axis=1)
        hi, lo = np.where(d1 > 0, x, hi), np.where(d1 < 0, x, lo)
        step = -d1 / np.where(d2 > 0, d2, np.inf)
        newton = (d2 > 0) & (((x + step > lo) & (x + step < hi)) | (np.abs(step) < 1e-13))  # in, or there
        x = np.where(newton, x + step, 0.5 * (lo + hi))
    f_x = np.sum(p * _log_along(u * np.cos(x)[:, None] + w * np.sin(x)[:, None]), axis=1)
    x, f_x = np.where(f_x < f_x0, x, x0), np.where(f_x < f_x0, f_x, f_x0)
    best = np.argmin(f_x, axis=1)[:, None]
    x, f_x = np.take_along_axis(x, best, 1)[:, 0], np.take_along_axis(f_x, best, 1)[:, 0]
    x = np.mod(x + 0.5 * np.pi, np.pi) - 0.5 * np.pi  # the same turn, the smaller way (period pi)
    rounding = 1e-14 * (1.0 + np.abs(f[:, 0]))
    lower = f_x < f[:, 0] - np.where(np.isfinite(rounding), rounding, 0.0)
    return np.where(lower & (np.abs(x) > 2 * STILL), 0.5 * x, 0.0)


def common_axes(cov: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The common principal axes (Flury) of covariances ``cov`` (k, d, d) with weights
    ``weights`` (k,): the orthonormal ``R`` (d, d) that minimises
    ``sum_i weights_i sum_j log (R^T cov_i R)_jj``, the profile log-likelihood of
    covariances ``R diag(v_i) R^T`` fitted to ``cov_i`` (exact where the ``cov_i`` share
    their axes). Jacobi sweeps from the axes of the pooled covariance, in the round-robin
    order of :func:`pairings`: each pair of axes turns by its exact best angle
    (:func:`best_turns`), all pairs of a round at once, for up to :data:`SWEEPS` sweeps or
    until one lowers the loss by less than :data:`SETTLED`. Columns by decreasing pooled
    variance, each with its largest entry positive."""
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    p = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    d = cov.shape[-1]
    R = np.linalg.eigh(np.einsum("i,ijk->jk", p, cov))[1]
    M = R.T @ cov @ R
    rounds = pairings(d)
    loss = _profile_loss(M, p)
    for _ in range(SWEEPS if d > 1 else 0):
        for a, b in rounds:
            theta = best_turns(p, M[:, a, a], M[:, b, b], M[:, a, b])
            if not theta.any():
                continue
            # the Givens turns of the disjoint pairs: R G and G^T M G, two rows and columns per pair
            c, s = np.cos(theta), np.sin(theta)
            Ra, Rb = R[:, a], R[:, b]
            R[:, a], R[:, b] = c * Ra + s * Rb, c * Rb - s * Ra
            Ma, Mb = M[:, a, :], M[:, b, :]
            M[:, a, :], M[:, b, :] = c[:, None] * Ma + s[:, None] * Mb, c[:, None] * Mb - s[:, None] * Ma
            Ma, Mb = M[:, :, a], M[:, :, b]
            M[:, :, a], M[:, :, b] = c * Ma + s * Mb, c * Mb - s * Ma
        loss, before = _profile_loss(M, p), loss
        if not before - loss > SETTLED:  # NaN (a singular component) stops too
            break
    order = np.argsort(-(p @ np.diagonal(M, axis1=-2, axis2=-1)), kind="stable")
    return signed(R[:, order])


def _profile_loss(M: np.ndarray, p: np.ndarray) -> float:
    """``sum_i p_i sum_j log M_ijj``, the loss :func:`common_axes` lowers (NaN or -inf
    where a singular component's variance along an axis rounds to 0 or below)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(p @ np.log(np.diagonal(M, axis1=-2, axis2=-1)).sum(axis=1))


def signed(R: np.ndarray) -> np.ndarray:
    """``R`` (d, d) with each column's largest entry positive (the same axes, one sign)."""
    lead = R[np.argmax(np.abs(R), axis=0), np.arange(R.shape[1])]
    return R * np.where(lead < 0, -1.0, 1.0)


def no_missing() -> ValueError:
    """The error for "rotated" on data with missing values."""
    return ValueError(
        "covariance_type='rotated' rotates the rows, which needs every value: it does not fit data "
        "with missing values; use 'full', 'diag' or 'auto'."
    )


def axes(res, scale: np.ndarray) -> np.ndarray:
    """The common axes ``R`` (d, d) of the kept restart of a "full" or "tied" fit ``res``
    (:class:`._fit.FitResult`) whose rows were scaled by ``scale`` (d,): of its live
    components' covariances in the units of X, weighted by their weights (tied: the
    principal axes of the one shared covariance, the within-cluster axes)."""
    cov = np.asarray(res.covariances[0][res.best]) * np.outer(scale, scale)
    if cov.ndim == 2:  # tied: (d, d)
        return common_axes(cov[None], np.ones(1))
    lw = np.asarray(res.students.log_weights[res.best])
    live = np.isfinite(lw)
    return common_axes(cov[live], np.exp(lw[live]))


def least(R: np.ndarray, units: tuple) -> np.ndarray:
    """The floor (d,) of the rotated fit in the units of ``X @ R``: along every axis at
    least the floor of X's features seen along it, ``sum_j R_jk^2 floor_j``, from X's
    standardization ``units = (shift, scale, floor)`` (a feature that is constant in the
    training rows keeps its floor)."""
    return (R**2).T @ (units[2] * units[1] ** 2)


def fit(est, X: np.ndarray, sw: np.ndarray, total: float, progress, grid: np.ndarray):
    """:meth:`OverparamGMM.fit` with ``covariance_type="rotated"`` on rows ``X`` (N, d) in
    memory with weights ``sw`` (N,) summing to ``total``; ``grid``: the features' rounding
    grid. A fit of each type of :data:`AXES_FROM` gives starting axes (:func:`axes`); from
    each, the diag fit of ``X @ R`` with the floor :func:`least` (:func:`on_axes`), its
    axes turned by its own components; the lowest training objective is kept
    (:func:`refined`)."""
    if np.isnan(X).any():
        raise no_missing()
    w = sw / total
    starts: list[np.ndarray] = []
    failed, n = 0, est._resolve_n_components(total)
    units: tuple = ()
    for kind in AXES_FROM:
        res, _, units_k = est._fit_type(X, w, total, kind, None, progress, f"rotated: {kind} axes", grid=grid)
        if res.best < 0:
            failed = res.restarts[0].failed_at
            continue
        units = units_k
        starts.append(axes(res, units[1]))
    if not starts:
        est._raise_non_finite(failed)
    price = est._price(X.shape[1], total, "diag")
    res, n, units_r, R = refined(
        lambda R: on_axes(est, X, w, total, R, units, n, progress, "fit (rotated)"), starts, price
    )
    return est._finish(res, n, units_r, "rotated", log_jacobian(X, units_r[1], w), (R, units))


def on_axes(
    est,
    X: np.ndarray,
    w: np.ndarray,
    total: float,
    R: np.ndarray,
    units: tuple,
    n: int,
    progress,
    stage: str,
    candidate=False,
    price_total=None,
):
    """The estimator's "diag" fit of the rows ``X @ R`` in memory (weights ``w`` (N,), which
    sum to 1, of ``total``), with ``n`` starting components and the floor :func:`least` of
    X's standardization ``units``: (:class:`._fit.FitResult`, n, the units of ``X @ R``,
    the E-step sums of a batch of students on those rows, as :func:`own_axes` takes them);
    ``candidate``: the "auto" candidate's fit (:func:`._fit.coarse_polish`); ``price_total``:
    as in :meth:`OverparamGMM._fit_type`."""
    zeros = np.zeros(X.shape[1])  # the rotated values have no rounding grid
    res, n, units_r = est._fit_type(
        X,
        w,
        total,
        "diag",
        n,
        progress,
        stage,
        grid=zeros,
        candidate=candidate,
        price_total=price_total,
        least=least(R, units),
        rotation=R,
    )
    shift_r, scale_r, floor_r = units_r

    def sums(students):
        return F.InMemory(F.problem(*F.pad_rows((X @ R - shift_r) / scale_r, w), floor_r), None).sums(students)

    return res, n, units_r, sums


def own_axes(res, units_r: tuple, R: np.ndarray, sums) -> np.ndarray:
    """The common axes (:func:`common_axes`) of the kept restart of a rotated fit ``res``
    (diag in the standardized units ``units_r`` of ``X @ R``): its components' scatter
    matrices about their means (plus the fit's variance floor), in the units of X, weighted
    by their masses (mclust's M-step for a shared orientation). ``sums(students)``: the E-step sums
    (:class:`overgmm.statistics.Raw`) of a batch of "full" students on the rows the fit saw
    (its engine's ``sums``)."""
    student = F.take(res.students, res.best)
    d = R.shape[0]
    # the same diagonal covariances as "full" parameters: U = Sigma^{-1/2}, log diag U = -log v / 2
    params = -0.5 * np.asarray(student.cov_params)[:, :, None] * np.eye(d)
    full = Mixture.tree_unflatten("full", (np.asarray(student.means), np.asarray(student.log_weights), params))
    raw = sums(jax.tree_util.tree_map(lambda a: a[None], full))
    mass, s1, s2 = np.asarray(raw.mass)[0], np.asarray(raw.s1)[0], np.asarray(raw.s2)[0]
    keep = np.isfinite(np.asarray(student.log_weights)) & (mass > 0)
    mu = s1[keep] / mass[keep, None]
    W = s2[keep] / mass[keep, None, None] - np.einsum("ij,ik->ijk", mu, mu)
    W = W + np.diag(np.asarray(units_r[2]))  # the fit's floor: a feature constant in a component keeps a variance
    scale_r = np.asarray(units_r[1])
    A = R * scale_r
    W_x = A @ W @ A.T  # R S W S R^T (a matmul: einsum's loops took 0.19 s in d = 61)
    return common_axes(W_x, mass[keep])


def refined(fit_on, starts: list, price: float):
    """The rotated fit from each of the axes ``starts`` (d, d), turned by its own
    components: ``fit_on(R)`` fits the rows ``X @ R`` and returns ``(res, n, units_r,
    sums)`` (``sums``: its engine's, as :func:`own_axes` takes it). From each start, after
    the fit on ``R``, up to :data:`ROUNDS` times: the axes of its components
    (:func:`own_axes`) and a new fit on them, kept while the training objective
    (``loss + price * live components``, in the units of X) falls. Returns the ``(res, n,
    units_r, R)`` of the lowest objective over all starts (the first fit when none is
    finite)."""
    best, best_obj, first = None, np.inf, None
    for R in starts:
        start_obj = np.inf
        for r in range(ROUNDS + 1):
            res, n, units_r, sums = fit_on(R)
            first = (res, n, units_r, R) if first is None else first
            if res.best < 0:
                break
            obj = float(res.loss[res.best]) + float(np.sum(np.log(units_r[1]))) + price * F.live_components(res)
            if not obj < start_obj:
                break
            start_obj = obj
            if obj < best_obj:
                best, best_obj = (res, n, units_r, R), obj
            if r < ROUNDS:
                R = own_axes(res, units_r, R, sums)
    return first if best is None else best


def as_candidate(res, units_r: tuple, R: np.ndarray, units: tuple) -> Mixture:
    """The kept restart of a rotated fit ``res`` as a batch of one "full" student in the
    standardized units ``units`` of X (:func:`to_full`): "auto" scores it as it scores the
    other candidates."""
    full, _ = to_full(F.take(res.students, res.best), units_r, R, units)
    return jax.tree_util.tree_map(lambda a: a[None], full)


def to_full(student: Mixture, units_r: tuple, R: np.ndarray, units: tuple) -> tuple[Mixture, tuple]:
    """The diag ``student`` (n components) of the rotated fit, standardized by
    ``units_r = (shift, scale, floor)`` of ``X @ R``, as a "full" mixture in the
    standardized units ``units`` of ``X``, and its covariances as :func:`._fit._covariances`
    gives them: ``(Sigma (n, d, d), precision Cholesky factors (n, d, d))``. Pruned
    components (log-weight -inf) are carried over as they are. In NumPy (host arrays): no
    JAX operation runs, so nothing is compiled (the "auto" candidate calls it every fit)."""
    shift_r, scale_r = np.asarray(units_r[0]), np.asarray(units_r[1])
    shift, scale = np.asarray(units[0]), np.asarray(units[1])
    d = shift.shape[0]
    means_x = (np.asarray(student.means) * scale_r + shift_r) @ R.T  # (n, d), units of X
    var_x = np.exp(np.asarray(student.cov_params)) * scale_r**2  # (n, d) along the axes (diag: log variances)
    cov_x = np.einsum("jk,nk,lk->njl", R, var_x, R)
    cov_z = cov_x / np.outer(scale, scale)
    cov_z = 0.5 * (cov_z + np.swapaxes(cov_z, -1, -2))
    # the "full" parameters (overgmm.covariances.precision_params): U = inv(L)^T, Sigma = L L^T
    U = np.swapaxes(np.linalg.inv(np.linalg.cholesky(cov_z)), -1, -2)
    params = np.triu(U, 1) + np.log(np.diagonal(U, axis1=-2, axis2=-1))[..., None] * np.eye(d)
    full = Mixture.tree_unflatten("full", ((means_x - shift) / scale, np.asarray(student.log_weights), params))
    return full, (cov_z, U)
