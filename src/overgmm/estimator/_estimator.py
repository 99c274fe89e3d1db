"""``OverparamGMM``: the scikit-learn face over the JAX kernels in :mod:`._kernels`.

This module validates input, resolves options and random state, standardizes, and
turns kernel output into fitted attributes. All numerics (E-steps, updates, merging
costs, sampling) run in the jitted pure functions of :mod:`._kernels`.
"""

from __future__ import annotations

import math
import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from overgmm.estimator import _kernels as K

AUTO_MAX = 25
AUTO_SAMPLES_PER_COMPONENT = 10
MIN_ROWS = 128


def auto_n_components(n_samples: float) -> int:
    """The ``n_components="auto"`` rule: one component per 10 samples, at least 1, at most 25.

    25 exceeds Zhou et al.'s ``n = Omega(m log m)`` for every m <= 8 (8 ln 8 = 17) and
    leaves ten samples per component on small data sets.
    """
    return int(max(1, min(AUTO_MAX, math.floor(n_samples / AUTO_SAMPLES_PER_COMPONENT))))


def _bucket(n_rows: int) -> int:
    """Rows are padded (with zero weight) to a power of two so refits share compilations."""
    return max(MIN_ROWS, 1 << (int(n_rows) - 1).bit_length())


def _n_bucket(n: int) -> int:
    """Components are padded (dead, weight 0) to a power of two up to 16 for the same reason."""
    return n if n > 16 else 1 << (int(n) - 1).bit_length()


def _pad(Z: np.ndarray, w: np.ndarray | None = None):
    size = _bucket(Z.shape[0])
    Zp = np.zeros((size, Z.shape[1]))
    Zp[: Z.shape[0]] = Z
    if w is None:
        return jnp.asarray(Zp)
    wp = np.zeros(size)
    wp[: Z.shape[0]] = w
    return jnp.asarray(Zp), jnp.asarray(wp)


class OverparamGMM(DensityMixin, BaseEstimator):
    """An over-parameterized Gaussian mixture that prunes and merges what it does not need.

    The model starts with many more components than the data is likely to hold
    (``n_components="auto"``), fits them all (EM, gradient EM or the alternating Polyak
    method, as in Zhou et al. 2025 and Wang, Fazel, Charisopoulos 2026), drops components
    whose weight falls below ``prune`` and merges pairs that the data cannot tell apart
    (``merge_tol``). ``n_components_`` is then the number of components the data has.

    Parameters
    ----------
    n_components : int or "auto", default="auto"
        Components to start from. ``"auto"``: one per 10 samples, at least 1, at most 25
        (sample weights count as repetitions).
    covariance_type : {"diag", "spherical", "fixed"}, default="diag"
        ``"diag"``: a learned diagonal covariance per component; ``"spherical"``: a learned
        variance per component; ``"fixed"``: the identity (after standardization when
        ``standardize=True``): the papers' model.
    algorithm : {"em", "gradient_em", "polyak"}, default="em"
        ``"em"``: EM. ``"gradient_em"``: EM weight step and a gradient step of size
        ``step_size`` on means and variances (Zhou et al., Algorithm 1; each parameter moves
        ``step_size * pi_i`` of the way to its EM target, so it needs more iterations).
        ``"polyak"``: ``n_short`` short steps ``mu_i += step_size E[psi_i (x - mu_i)] / E[psi_i]``
        (EM's scaling; EM itself at ``step_size=1``), then a long Polyak step on
        the means (``L*`` estimated from the last cycle's decrease; a long step that raises
        the loss is undone).
    step_size : float, default=1.0
        Step of gradient EM and of the Polyak method's short steps; in :meth:`partial_fit`,
        the step of the stochastic EM is ``min(1, step_size * (t + 2) ** -0.6)`` at batch t.
    n_short : int, default=10
        Short steps per Polyak cycle (``algorithm="polyak"``).
    max_iter : int, default=200
        Maximum number of steps per fit (and per polishing fit after each round of merges).
    tol : float, default=1e-4
        Stop when the mean log-likelihood per sample changes by less than ``tol``.
    init : {"data", "kmeans++"}, default="data"
        Starting means: training rows drawn with probability proportional to their
        weight (as Zhou et al. initialise from samples) or k-means++ seeding. Starting
        weights are uniform and starting variances those of the data. The draw depends
        only on the weighted data, not on the order of its rows.
    prune : float, default=0.01
        Components whose weight falls below ``prune`` are removed during the fit.
    merge_tol : float, default=1.0
        After the fit, a pair of components is merged into its moment-matched Gaussian
        when that costs less than ``merge_tol`` times the BIC price of one component,
        ``(p / 2) log N`` nats in total log-likelihood (p parameters per component, N the
        sum of sample weights); pairs whose means and variances nearly coincide cost
        about 0. Merges go in rounds of disjoint pairs, each followed by a polishing fit.
        0 disables merging.
    n_init : int, default=1
        Restarts, run together (``jax.vmap``); the one with the highest likelihood is kept.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and :meth:`sample`.
    standardize : bool, default=True
        Fit on features centred and scaled to unit (weighted) variance; all outputs are in
        the units of ``X``. For "spherical" one common scale is used for all features (the
        root mean feature variance), so that spherical clusters stay spherical.
    var_floor : float, default=1e-3
        Variance floor relative to each feature's variance (spherical and diag).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components_,)
    means_ : ndarray of shape (n_components_, n_features)
    covariances_ : ndarray
        In the units of ``X``: shape (n_components_,) for "spherical" (one variance per
        component), (n_components_, n_features) for "diag" (diagonal covariances),
        (n_features,) for "fixed" (the diagonal covariance shared by all components: the
        squared feature scales when ``standardize=True``, ones otherwise).
    n_components_ : int
        Components left after pruning and merging.
    n_components_init_ : int
        Components the fit started from.
    converged_ : bool
        Whether the last fit stopped on ``tol`` (False after :meth:`partial_fit`).
    n_iter_ : int
        Steps taken in all (main fit and polishing fits; batches for :meth:`partial_fit`).
    lower_bounds_ : ndarray of shape (n_evaluations,)
        Mean log-likelihood per sample (units of ``X``) at each E-step of the kept run,
        polishing fits appended; per batch for :meth:`partial_fit`.
    lower_bound_ : float
        The last entry of ``lower_bounds_``.
    weight_trajectory_ : ndarray of shape (n_iter_ + 1, n_components_init_)
        Weights after each step, one column per starting component; a pruned or merged
        component's column drops to 0. Plot it to watch the pruning.
    n_merges_ : int
        Pairs merged after the fit.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.

    Notes
    -----
    Sample weights are frequency weights: weight 2 is the same as the row twice
    (``n_components="auto"`` and the merge price use their sum as the number of samples).

    ``sklearn.utils.estimator_checks.parametrize_with_checks`` passes in full
    (``tests/test_estimator.py``, with ``n_components=2, max_iter=30`` to keep compilation
    short). No check is skipped or marked as an expected failure; scikit-learn itself skips
    its array-API check when the environment variable ``SCIPY_ARRAY_API`` is not set. The
    sample-weight equivalence checks pass because the initial draw is by inverse CDF over a
    canonical (sorted) row order.
    """

    def __init__(
        self,
        n_components="auto",
        *,
        covariance_type="diag",
        algorithm="em",
        step_size=1.0,
        n_short=10,
        max_iter=200,
        tol=1e-4,
        init="data",
        prune=0.01,
        merge_tol=1.0,
        n_init=1,
        random_state=None,
        standardize=True,
        var_floor=1e-3,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.algorithm = algorithm
        self.step_size = step_size
        self.n_short = n_short
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.prune = prune
        self.merge_tol = merge_tol
        self.n_init = n_init
        self.random_state = random_state
        self.standardize = standardize
        self.var_floor = var_floor

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        def choice(name, options):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in options:
                raise ValueError(
                    f"The '{name}' parameter of {type(self).__name__} must be one of {options}; got {value!r}."
                )

        def integer(name, low):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(
                    f"The '{name}' parameter of {type(self).__name__} must be an int >= {low}; got {value!r}."
                )

        def real(name, low, *, strict):
            value = getattr(self, name)
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < low or (strict and value == low):
                rel = ">" if strict else ">="
                raise ValueError(
                    f"The '{name}' parameter of {type(self).__name__} must be a finite number {rel} {low}; "
                    f"got {value!r}."
                )

        if isinstance(self.n_components, str):
            if self.n_components != "auto":
                raise ValueError(
                    f"The 'n_components' parameter of {type(self).__name__} must be an int >= 1 or 'auto'; "
                    f"got {self.n_components!r}."
                )
        else:
            integer("n_components", 1)
        choice("covariance_type", K.COVARIANCE_TYPES)
        choice("algorithm", K.ALGORITHMS)
        choice("init", K.INITS)
        real("step_size", 0.0, strict=True)
        integer("n_short", 1)
        integer("max_iter", 1)
        real("tol", 0.0, strict=False)
        real("prune", 0.0, strict=False)
        if self.prune >= 1:
            raise ValueError(f"The 'prune' parameter must be a weight threshold in [0, 1); got {self.prune!r}.")
        real("merge_tol", 0.0, strict=False)
        integer("n_init", 1)
        real("var_floor", 0.0, strict=False)
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise ValueError(f"The 'standardize' parameter must be a bool; got {self.standardize!r}.")

    def _validate_fit_input(self, X, sample_weight, *, reset: bool):
        X = validate_data(self, X, reset=reset, dtype=np.float64, ensure_min_samples=2)
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        total = float(sw.sum())
        if not total > 0:
            raise ValueError("sample_weight must have a positive sum; all weights are zero.")
        return X, sw, total

    def _resolve_n_components(self, total: float) -> int:
        n = auto_n_components(total) if self.n_components == "auto" else int(self.n_components)
        if n > total:
            raise ValueError(
                f"n_components={n} must be at most the number of samples ({total:g}, the sum of sample "
                "weights); lower n_components or use n_components='auto'."
            )
        return n

    def _standardization(self, X: np.ndarray, w: np.ndarray):
        d = X.shape[1]
        mean = w @ X
        var = w @ (X - mean) ** 2
        if self.standardize:
            # spherical: one scale for all features, so spherical clusters stay spherical
            scale = np.sqrt(var) if self.covariance_type != "spherical" else np.full(d, np.sqrt(np.mean(var)))
            scale[~(scale > 1e-150)] = 1.0
            shift = mean
        else:
            shift, scale = np.zeros(d), np.ones(d)
        zvar = var / scale**2
        floor = self.var_floor * np.where(zvar > 0, zvar, 1.0)
        return shift, scale, floor

    def _seed_key(self) -> jax.Array:
        rs = check_random_state(self.random_state)
        return jax.random.key(int(rs.randint(np.iinfo(np.int32).max)))

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, sample_weight=None) -> OverparamGMM:
        """Fit the over-parameterized mixture, then prune and merge.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative frequency weights (None: all ones).

        Returns
        -------
        self : OverparamGMM
        """
        self._check_params()
        X, sw, total = self._validate_fit_input(X, sample_weight, reset=True)
        n = self._resolve_n_components(total)
        w = sw / total
        shift, scale, floor = self._standardization(X, w)
        Z = (X - shift) / scale
        order = np.lexsort(Z.T[::-1])  # canonical row order: the draw ignores row order
        Zp, wp = _pad(Z[order], w[order])
        cov = self.covariance_type

        keys = jax.random.split(self._seed_key(), self.n_init)
        threshold = 0.0
        if self.merge_tol > 0 and total > 1:
            p_comp = Z.shape[1] + {"diag": Z.shape[1], "spherical": 1, "fixed": 0}[cov] + 1
            threshold = self.merge_tol * 0.5 * p_comp * math.log(total) / total
        nb = _n_bucket(n)
        res = K.fit_all(
            Zp,
            wp,
            keys,
            jnp.asarray(floor),
            jnp.asarray(n),
            jnp.asarray(float(self.step_size)),
            jnp.asarray(float(self.tol)),
            jnp.asarray(float(self.prune)),
            jnp.asarray(threshold),
            n=nb,
            method=self.init,
            algorithm=self.algorithm,
            cov=cov,
            max_iter=int(self.max_iter),
            n_short=int(self.n_short),
        )
        res = jax.device_get(res)
        c = res.carry
        failed = np.asarray(c.failed)
        if failed.all():
            self._raise_non_finite(int(c.failed_at[0]))
        if failed.any():
            warnings.warn(
                f"{int(failed.sum())} of {self.n_init} restarts stopped on a non-finite likelihood and were "
                "discarded; a larger var_floor or standardize=True avoids this.",
                RuntimeWarning,
                stacklevel=2,
            )
        b = int(res.best)
        params = K.Params(*(np.asarray(a)[b] for a in c.params))
        self._set_fitted(params, shift, scale, floor)
        self.lower_bounds_ = c.lower_bounds[b, : int(c.evals[b])] - float(np.sum(np.log(scale)))
        self.lower_bound_ = float(self.lower_bounds_[-1])
        self.n_iter_ = int(c.steps[b])
        self.weight_trajectory_ = c.weights[b, : self.n_iter_ + 1, :n]
        self.converged_ = bool(c.converged[b])
        self.n_components_init_ = n
        self.n_merges_ = int(c.n_merges[b])
        if not self.converged_:
            warnings.warn(
                f"{type(self).__name__} did not converge within max_iter={self.max_iter} steps "
                f"(tol={self.tol}); increase max_iter or tol.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _raise_non_finite(self, at: int):
        raise FloatingPointError(
            f"the log-likelihood became non-finite after {at} steps (a component's variance collapsed); "
            f"increase var_floor (now {self.var_floor}), use standardize=True (now {self.standardize}), "
            "or lower n_components. No parameters from this fit were stored."
        )

    def _set_fitted(self, params: K.Params, shift, scale, floor) -> None:
        """Keep the mixture (standardized units, dead components included so that shapes
        and compilations stay fixed) and expose its live components in the units of X."""
        lw = np.asarray(params.log_weights)
        live = np.isfinite(lw)
        self._params = K.Params(lw, np.asarray(params.means), np.asarray(params.variances))
        self._live = np.flatnonzero(live)
        self._shift, self._scale, self._floor = np.asarray(shift), np.asarray(scale), np.asarray(floor)
        self.weights_ = np.exp(lw[live] - np.log(np.sum(np.exp(lw[live]))))
        self.means_ = self._params.means[live] * self._scale + self._shift
        var = self._params.variances[live] * self._scale**2
        if self.covariance_type == "spherical":
            var = var[:, 0]
        elif self.covariance_type == "fixed":
            var = var[0]
        self.covariances_ = var
        self.n_components_ = int(live.sum())

    def partial_fit(self, X, y=None, sample_weight=None) -> OverparamGMM:
        """One stochastic EM step on a mini-batch (for data that does not fit in memory).

        The first call (on an unfitted estimator) fixes the standardization and the
        starting components from its batch (``n_components="auto"`` from its size); each
        call moves the mixture's sufficient statistics ``min(1, step_size * (t + 2) ** -0.6)``
        of the way to the batch's (stepwise EM, a stochastic gradient-EM step in EM's
        metric). Components below ``prune`` are removed; no merging.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : OverparamGMM
        """
        first = not hasattr(self, "_params")
        if first:
            self._check_params()
        X, sw, total = self._validate_fit_input(X, sample_weight, reset=first)
        w = sw / total
        if first:
            n = self._resolve_n_components(total)
            shift, scale, floor = self._standardization(X, w)
            Z = (X - shift) / scale
            order = np.lexsort(Z.T[::-1])
            Zp, wp = _pad(Z[order], w[order])
            key = jax.random.split(self._seed_key(), 1)
            p0 = K.init_only(
                Zp,
                wp,
                key,
                jnp.asarray(floor),
                jnp.asarray(n),
                n=_n_bucket(n),
                method=self.init,
                cov=self.covariance_type,
            )
            self._set_fitted(jax.tree_util.tree_map(lambda a: a[0], p0), shift, scale, floor)
            self.n_components_init_ = n
            self.n_iter_, self.n_merges_ = 0, 0
            self.lower_bounds_ = np.zeros(0)
            self.weight_trajectory_ = np.exp(self._params.log_weights)[None, :n]
        Zp, wp = _pad((X - self._shift) / self._scale, w)
        rate = min(1.0, float(self.step_size) * (self.n_iter_ + 2) ** -0.6)
        params = K.Params(*(jnp.asarray(a) for a in self._params))
        new, loss = K.stochastic_step(
            Zp, wp, params, rate, float(self.prune), jnp.asarray(self._floor), cov=self.covariance_type
        )
        new, loss = jax.device_get((new, float(loss)))
        if not (math.isfinite(loss) and all(np.all(np.isfinite(a)) for a in new[1:])):
            raise FloatingPointError(
                f"the log-likelihood of this batch is non-finite; increase var_floor (now {self.var_floor}) "
                f"or use standardize=True (now {self.standardize}). The model was left unchanged."
            )
        self._set_fitted(K.Params(*new), self._shift, self._scale, self._floor)
        n0 = self.weight_trajectory_.shape[1]
        self.weight_trajectory_ = np.vstack([self.weight_trajectory_, np.exp(new.log_weights)[:n0]])
        self.lower_bounds_ = np.append(self.lower_bounds_, -loss - float(np.sum(np.log(self._scale))))
        self.lower_bound_ = float(self.lower_bounds_[-1])
        self.n_iter_ += 1
        self.converged_ = False
        return self

    # ------------------------------------------------------------------ inference
    def _evaluate(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        Zp = _pad((X - self._shift) / self._scale)
        ll, resp = K.evaluate(Zp, K.Params(*(jnp.asarray(a) for a in self._params)))
        n = X.shape[0]
        return np.asarray(ll)[:n] - float(np.sum(np.log(self._scale))), np.asarray(resp)[:n][:, self._live]

    def score_samples(self, X) -> np.ndarray:
        """Log-density of each sample, array of shape (n_samples,), for X of shape (n_samples, n_features)."""
        return self._evaluate(X)[0]

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample of X, array-like of shape (n_samples, n_features)."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component, array of shape (n_samples, n_components_)."""
        return self._evaluate(X)[1]

    def predict(self, X) -> np.ndarray:
        """Most probable component of each sample, array of shape (n_samples,)."""
        return np.argmax(self.predict_proba(X), axis=1)

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit, then return the labels of X, array of shape (n_samples,)."""
        return self.fit(X, y, sample_weight=sample_weight).predict(X)

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
        Z, comp = K.sample(self._seed_key(), K.Params(*(jnp.asarray(a) for a in self._params)), int(n_samples))
        # labels index the live components, as in predict
        return np.asarray(Z) * self._scale + self._shift, np.searchsorted(self._live, np.asarray(comp))

    def _n_parameters(self) -> int:
        k, d = self.means_.shape
        cov = {"diag": k * d, "spherical": k, "fixed": 0}[self.covariance_type]
        return k * d + cov + k - 1

    def bic(self, X) -> float:
        """Bayesian information criterion on X of shape (n_samples, n_features) (lower is better)."""
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return -2 * self.score(X) * X.shape[0] + self._n_parameters() * math.log(X.shape[0])

    def aic(self, X) -> float:
        """Akaike information criterion on X of shape (n_samples, n_features) (lower is better)."""
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()
