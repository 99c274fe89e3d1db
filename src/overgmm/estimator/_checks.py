"""Checks of the data's features before a fit, from their weighted means and variances
(one pass, in memory or over chunks): a feature too large for float64 arithmetic is an
error, a constant one a warning (:class:`ConstantFeatureWarning`)."""

from __future__ import annotations

import warnings

import numpy as np

# a feature whose standard deviation is at most this fraction of its mean's magnitude is
# constant to rounding (a column of 5.0 has a computed variance of about 1e-30)
CONSTANT_RELATIVE = 1e-10


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


def feature_label(est, j: int) -> str:
    names = getattr(est, "feature_names_in_", None)
    return f"feature {j} ({names[j]!r})" if names is not None else f"feature {j}"


def check_features(est, mean: np.ndarray, var: np.ndarray) -> None:
    """Raise on a feature whose variance overflows float64; warn on a constant one.

    ``mean``, ``var``: the weighted mean and variance of each feature, shape (d,)."""
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    for j in map(int, np.flatnonzero(~(np.isfinite(mean) & np.isfinite(var)))):
        raise FeatureOverflowError(
            feature_label(est, j),
            "holds values too large for float64 arithmetic (its variance overflows; values must stay below "
            "about 1e150 in magnitude); rescale it before fitting",
            int(j),
        )
    sd = np.sqrt(np.maximum(var, 0.0))
    for j in map(int, np.flatnonzero(sd <= CONSTANT_RELATIVE * np.abs(mean))):
        warnings.warn(
            ConstantFeatureWarning(
                feature_label(est, j),
                f"is constant (standard deviation {sd[j]:.3g}, mean {mean[j]:.6g}): its variance is set by "
                "var_floor alone and the log-likelihood depends on that choice; drop the feature before fitting",
                int(j),
            ),
            stacklevel=3,
        )
