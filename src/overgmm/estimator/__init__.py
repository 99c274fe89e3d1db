"""The scikit-learn estimator :class:`OverparamGMM` (``_estimator``) over pure JAX
kernels (``_kernels``). Importing this package imports scikit-learn."""

from overgmm.estimator._estimator import OverparamGMM, auto_n_components

__all__ = ["OverparamGMM", "auto_n_components"]
