"""What a fitted :class:`~overgmm.OverparamGMM` answers: log-densities, component
probabilities and labels (in memory, or lazily over a dask array's row blocks), samples,
BIC and AIC. A mixin: it reads the fitted state ``_fit_type`` and ``_finish`` leave
(``_student``, ``_live``, ``_shift``, ``_scale``) and the estimator's ``_validate`` and
``_seed``."""

from __future__ import annotations

import math
import numbers

import numpy as np
from sklearn.utils.validation import check_is_fitted

from overgmm.estimator import _fit as F
from overgmm.estimator import _stream as S
from overgmm.estimator._checks import log_jacobian
from overgmm.estimator._slots import for_scoring
from overgmm.mixture import Mixture


class Inference:
    """Inference methods of :class:`~overgmm.OverparamGMM` (see the module docstring)."""

    _student: Mixture
    _live: np.ndarray
    _shift: np.ndarray
    _scale: np.ndarray
    means_: np.ndarray
    covariance_type_: str

    def _validate(self, X, **kwargs) -> np.ndarray:  # the estimator's (scikit-learn's validate_data)
        raise NotImplementedError

    def _seed(self) -> int:  # the estimator's (from random_state)
        raise NotImplementedError

    def _evaluate(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        student, live = for_scoring(self._student, self._live, X.shape[0])
        ll, resp = F.evaluate(student, (X - self._shift) / self._scale)
        return ll - log_jacobian(X, self._scale), resp[:, live]

    def score_samples(self, X) -> np.ndarray:
        """Log-density of each sample, array of shape (n_samples,), for X of shape (n_samples, n_features).
        A dask array gives a dask array, evaluated block by block when computed (also
        ``predict_proba``, ``predict``; ``score`` computes its mean so)."""
        return S.lazy(self, X, "score_samples") if S.is_dask(X) else self._evaluate(X)[0]

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample of X, array-like of shape (n_samples, n_features)."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component, array of shape (n_samples, n_components_)."""
        return S.lazy(self, X, "predict_proba") if S.is_dask(X) else self._evaluate(X)[1]

    def predict(self, X) -> np.ndarray:
        """Most probable component of each sample, array of shape (n_samples,)."""
        return np.argmax(self.predict_proba(X), axis=1)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples from the fitted mixture.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,), the component of each sample.
        """
        check_is_fitted(self)
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}. It must be an int >= 1.")
        Z, comp = F.sample(self._student, self._seed(), int(n_samples))
        # labels index the live components, as in predict
        return Z * self._scale + self._shift, np.searchsorted(self._live, comp)

    def _n_parameters(self) -> int:
        return F.count_parameters(self.covariance_type_, self.means_.shape[1], self.means_.shape[0])

    def bic(self, X) -> float:
        """Bayesian information criterion on X of shape (n_samples, n_features) (lower is better)."""
        X = self._validate(X, reset=False)
        return -2 * self.score(X) * X.shape[0] + self._n_parameters() * math.log(X.shape[0])

    def aic(self, X) -> float:
        """Akaike information criterion on X of shape (n_samples, n_features) (lower is better)."""
        X = self._validate(X, reset=False)
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()
