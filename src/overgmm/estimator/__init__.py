"""The scikit-learn estimator :class:`OverparamGMM` (``_estimator``), a face over the
core's initialisation, algorithms, driver and reduction (called in ``_fit``). Importing
this package imports scikit-learn."""

from overgmm.estimator._estimator import OverparamGMM
from overgmm.estimator._fit import auto_n_components

__all__ = ["OverparamGMM", "auto_n_components"]
