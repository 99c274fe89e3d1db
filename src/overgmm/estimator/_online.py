"""Stochastic EM on mini-batches: :meth:`OverparamGMM.partial_fit`'s steps.

The first batch fixes the standardization and the starting components (as a fit's start,
:meth:`OverparamGMM._start`); each batch moves the mixture's sufficient statistics part of
the way to the batch's (:func:`overgmm.stepwise_em`, through ``_fit.stepwise``), and a
finer grid of rounded values in a later batch lowers the rounding floor."""

from __future__ import annotations

import math

import numpy as np

from overgmm import _mappings, rounding
from overgmm.estimator import _fit as F
from overgmm.estimator._checks import check_features, feature_moments, log_jacobian


def partial_fit(est, X, sample_weight):
    """One stochastic EM step of the estimator ``est`` on the batch ``X`` (N, d) with
    ``sample_weight`` (N,) or None; returns ``est``, fitted (its docstring: the method's)."""
    _mappings.release_if_crowded()
    first = not hasattr(est, "_student")
    if first:
        est._check_params()
    if (est.covariance_type if first else est.covariance_type_) == "rotated":
        raise ValueError(
            "partial_fit does not fit or continue covariance_type 'rotated' (its axes come from all the "
            "rows); use fit, or partial_fit with 'diag' or 'full'."
        )
    X, sw, total = est._validate_fit_input(X, sample_weight, reset=first)
    w = sw / total
    with np.errstate(over="ignore", invalid="ignore"):  # every batch, before the model changes
        check_features(est, *feature_moments(X, w), constant=first)
    part = rounding.grid_parts(X, w)
    if first:
        kind = "diag" if est.covariance_type == "auto" else est.covariance_type
        n, units, _, students, _ = est._start(X, w, total, 1, kind)
        student = F.take(students, 0)
        lower_bounds, n_iter = np.zeros(0), 0
        trajectory = np.exp(np.asarray(student.log_weights))[None, :n]
        # the floor without the grid's share, for the batches to come (below)
        est._base_floor = est._standardization(X, w, kind, np.zeros(X.shape[1]))[2]
    else:
        n, units, student = est.n_components_init_, (est._shift, est._scale, est._floor), est._student
        lower_bounds, n_iter, trajectory = est.lower_bounds_, est.n_iter_, est.weight_trajectory_
        earlier, base = est.__dict__.get("_grid_part"), est.__dict__.get("_base_floor")
        if est.rounding_floor and earlier is not None and base is not None:
            # the grid of every batch so far: a finer one in a later batch lowers the floor
            part = rounding.combined_part([earlier, part])
            grid = rounding.combine([part])
            floor = np.maximum(base, rounding.sheppard_variance(grid) / units[1] ** 2)
            units = (units[0], units[1], floor)
    est._grid_part = part
    shift, scale, floor = units
    Zp, wp = F.pad_rows((X - shift) / scale, w)
    rate = min(1.0, float(est.step_size) * (n_iter + 2) ** -0.6)
    new, loss, cov = F.stepwise(F.problem(Zp, wp, floor), student, rate, float(est.prune))
    leaves = [np.asarray(a) for a in (new.means, new.cov_params) if a is not None]
    if not (math.isfinite(loss) and all(np.all(np.isfinite(a)) for a in leaves)):
        raise FloatingPointError(
            f"the log-likelihood of this batch is non-finite; increase var_floor (now {est.var_floor}) "
            f"or use standardize=True (now {est.standardize}). The model was left unchanged."
        )
    if first:
        est.covariance_type_ = kind
        est.validation_scores_ = {}  # no candidates compared (as a fit of one type): save() needs it
    est._set_fitted(new, cov, shift, scale, floor)
    est.n_components_init_, est.n_merges_ = n, 0
    est.weight_trajectory_ = np.vstack([trajectory, np.exp(np.asarray(new.log_weights))[:n]])
    est.lower_bounds_ = np.append(lower_bounds, -loss - log_jacobian(X, scale, w))
    est.lower_bound_ = float(est.lower_bounds_[-1])
    est.n_iter_ = n_iter + 1
    est.converged_ = False
    return est
