"""Checks before a fit: the estimator's parameters (:func:`check_params`), and the data's
features from their weighted means and variances (one pass, in memory or over chunks): a
feature too large or too small for float64 arithmetic is an error, a constant one a warning
(:class:`ConstantFeatureWarning`)."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from overgmm.estimator import _fit as F

# a feature whose standard deviation is at most this fraction of its mean's magnitude is
# constant to rounding (a column of 5.0 has a computed variance of about 1e-30)
CONSTANT_RELATIVE = 1e-10
# a feature whose variance is below this, but whose values are not all 0, is too small for
# float64 arithmetic: the fit multiplies the variance by var_floor and its squares reach
# the subnormal range (values of 1e-152 failed, 1e-151 fitted the same model as at scale 1)
TINY_VARIANCE = 1e-290


class ConstantFeatureWarning(UserWarning):
    """A feature that is constant (to rounding). ``feature``: its index (from 0);
    ``detail``: the message after the feature's label."""

    def __init__(self, label: str, detail: str, feature: int):
        super().__init__(f"{label} {detail}")
        self.feature, self.detail = feature, detail


class FeatureOverflowError(ValueError):
    """A feature too large for float64 arithmetic. ``feature``: its index (from 0);
    ``detail``: the message after the feature's label."""

    def __init__(self, label: str, detail: str, feature: int):
        super().__init__(f"{label} {detail}")
        self.feature, self.detail = feature, detail

    def __reduce__(self):
        return type(self), (str(self).removesuffix(" " + self.detail), self.detail, self.feature)


class FeatureUnderflowError(FeatureOverflowError):
    """A feature too small for float64 arithmetic (its values' squares underflow)."""


def feature_label(est, j: int) -> str:
    names = getattr(est, "feature_names_in_", None)
    return f"feature {j} ({names[j]!r})" if names is not None else f"feature {j}"


def feature_moments(X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weighted mean and variance of each feature of ``X`` (N, d) with weights ``w``
    (N,) summing to 1, over the rows where the feature is observed (NaN: missing), (d,) each."""
    seen = ~np.isnan(X)
    if seen.all():
        mean = w @ X
        return mean, w @ (X - mean) ** 2
    ws = w[:, None] * seen
    total = ws.sum(axis=0)
    total = np.where(total > 0, total, 1.0)
    X0 = np.where(seen, X, 0.0)
    mean = np.sum(ws * X0, axis=0) / total
    return mean, np.sum(ws * np.where(seen, X0 - mean, 0.0) ** 2, axis=0) / total


def constant_as_zero(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``var`` (d,) with 0 for the features :func:`check_features` calls constant: a constant
    feature of value 5.0 has a computed variance of about 1e-29 (the mean's rounding), which
    would otherwise set its scale and floor, and a new value there would cost 1e30 nats."""
    return np.where(np.sqrt(np.maximum(var, 0.0)) <= CONSTANT_RELATIVE * np.abs(mean), 0.0, var)


def log_jacobian(X: np.ndarray, scale: np.ndarray, w: np.ndarray | None = None):
    """What standardization adds to a row's log-density: ``sum_j log scale_j`` over the
    row's observed features (all of them without missing values); per row (N,), or its
    mean with weights ``w`` (N,) summing to 1."""
    logs = np.log(scale)
    gaps = np.isnan(X)
    per_row = np.where(gaps, 0.0, logs).sum(axis=1) if gaps.any() else np.full(X.shape[0], logs.sum())
    return per_row if w is None else float(w @ per_row)


def check_missing(est, X: np.ndarray) -> None:
    """With ``allow_missing=True``: every row and every feature has an observed value."""
    gaps = np.isnan(X)
    if not gaps.any():
        return
    empty_rows = np.flatnonzero(gaps.all(axis=1))
    if empty_rows.size:
        raise ValueError(
            f"{empty_rows.size} row(s) of X have no observed value (all NaN), first row {int(empty_rows[0])}; "
            "drop them before fitting: they carry no information."
        )
    for j in map(int, np.flatnonzero(gaps.all(axis=0))):
        raise ValueError(f"{feature_label(est, j)} has no observed value (all NaN); drop it before fitting.")


def check_features(est, mean: np.ndarray, var: np.ndarray, *, constant: bool = True) -> None:
    """Raise on a feature whose variance overflows float64 or underflows it (values of about
    1e-145 or less, not all 0); warn on a constant one (``constant``: a later batch of
    ``partial_fit`` may hold one value of a feature without it being constant).

    ``mean``, ``var``: the weighted mean and variance of each feature, shape (d,)."""
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    for j in map(int, np.flatnonzero(~(np.isfinite(mean) & np.isfinite(var)))):
        raise FeatureOverflowError(
            feature_label(est, j),
            "holds values too large for float64 arithmetic (its variance overflows; values must stay below "
            "about 1e150 in magnitude); rescale it before fitting",
            int(j),
        )
    tiny = (var < TINY_VARIANCE) & ((var > 0) | ((mean != 0) & (np.abs(mean) < math.sqrt(TINY_VARIANCE))))
    for j in map(int, np.flatnonzero(tiny)):
        raise FeatureUnderflowError(
            feature_label(est, j),
            f"holds values too small for float64 arithmetic (mean {mean[j]:.3g}, variance {var[j]:.3g}: their "
            "squares underflow; values must be about 1e-145 or more in magnitude, or all 0); rescale it before "
            "fitting",
            int(j),
        )
    sd = np.sqrt(np.maximum(var, 0.0))
    for j in map(int, np.flatnonzero(sd <= CONSTANT_RELATIVE * np.abs(mean)) if constant else ()):
        warnings.warn(
            ConstantFeatureWarning(
                feature_label(est, j),
                f"is constant (standard deviation {sd[j]:.3g}, mean {mean[j]:.6g}): its variance is set by "
                "var_floor alone and the log-likelihood depends on that choice; drop the feature before fitting",
                int(j),
            ),
            stacklevel=3,
        )


def check_params(est) -> None:
    """Every parameter of the estimator ``est``: a ValueError naming the bad one."""

    def choice(name, options):
        value = getattr(est, name)
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"The '{name}' parameter of {type(est).__name__} must be one of {options}; got {value!r}.")

    def integer(name, low):
        value = getattr(est, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"The '{name}' parameter of {type(est).__name__} must be an int >= {low}; got {value!r}.")

    def real(name, low, *, strict):
        value = getattr(est, name)
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < low or (strict and value == low):
            rel = ">" if strict else ">="
            raise ValueError(
                f"The '{name}' parameter of {type(est).__name__} must be a finite number {rel} {low}; got {value!r}."
            )

    if isinstance(est.n_components, str):
        if est.n_components != "auto":
            raise ValueError(
                f"The 'n_components' parameter of {type(est).__name__} must be an int >= 1 or 'auto'; "
                f"got {est.n_components!r}."
            )
    else:
        integer("n_components", 1)
    choice("covariance_type", F.COVARIANCE_TYPES + ("auto",))
    choice("algorithm", F.ALGORITHMS)
    choice("init", F.INITS)
    real("step_size", 0.0, strict=True)
    integer("n_short", 1)
    integer("max_iter", 1)
    real("tol", 0.0, strict=False)
    real("prune", 0.0, strict=False)
    if est.prune >= 1:
        raise ValueError(f"The 'prune' parameter must be a weight threshold in [0, 1); got {est.prune!r}.")
    real("merge_tol", 0.0, strict=False)
    integer("n_init", 1)
    real("var_floor", 0.0, strict=False)
    real("memory_budget", 0.0, strict=True)
    integer("verbose", 0)
    for flag in ("standardize", "rounding_floor", "allow_missing"):
        if not isinstance(getattr(est, flag), (bool, np.bool_)):
            raise ValueError(f"The '{flag}' parameter must be a bool; got {getattr(est, flag)!r}.")
