"""``OverparamGMM``: the scikit-learn face over the core.

This module validates input and options, resolves the random state, standardizes, and
turns results into fitted attributes. All numerics (initialisation, the fit, merging,
evaluation, sampling, stepwise EM) are the core's, called through :mod:`._fit`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, validate_data

from overgmm import _mappings, chunks, rounding
from overgmm import covariances as C
from overgmm.estimator import _auto as A
from overgmm.estimator import _checks, _online, _persist
from overgmm.estimator import _fit as F
from overgmm.estimator import _rotated as Rot
from overgmm.estimator import _stream as S
from overgmm.estimator._checks import check_features, check_missing, check_params, feature_moments, log_jacobian
from overgmm.estimator._inference import Inference
from overgmm.estimator._precompile import Awaiting, for_widths
from overgmm.estimator._progress import Progress
from overgmm.estimator._slots import compact
from overgmm.mixture import Mixture


class OverparamGMM(Inference, DensityMixin, BaseEstimator):
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
        (sample weights count as repetitions); full covariances (also "rotated"'s axes)
        at most one per ``(n_features + 1) / 2`` (no more parameters than X has values).
    covariance_type : {"auto", "full", "tied", "rotated", "diag", "spherical", "fixed"}, default="auto"
        ``"full"``: a learned covariance matrix per component (a sheared cluster is one
        component); ``"tied"``: one learned covariance matrix shared by all components
        (scikit-learn's "tied"); ``"rotated"``: learned diagonal covariances in one rotated
        basis shared by all components (from the common principal axes of a full fit or
        those of a tied fit, whichever fits better; kept as full matrices; without
        missing values); ``"diag"``: a learned diagonal
        covariance per component;
        ``"spherical"``: a learned variance per component; ``"fixed"``: the identity (after
        standardization when ``standardize=True``): the papers' model. ``"auto"``: hold
        out about one training row in five (chosen by the rows' values), fit "spherical",
        "diag", "tied", "full" and "rotated" (on the full fit's axes; not with missing
        values; in one feature "spherical" and "tied" alone, as "diag" and "full" are
        "spherical"'s model there) on the rest (on 2^14 of them, chosen by value, when
        there are more), of the types whose held-out log-likelihood is within 0.02 nats/sample
        of the best (or half a standard error of the per-row difference, when that is
        more) keep the fit with the fewest free parameters (the simplest type, in that
        order, among equals; "rotated" only where it leads every type), and refit it on
        all rows (six fits, more when "rotated" is kept; :meth:`partial_fit` uses
        "diag"). ``covariance_type_`` says which type was fitted.
        Measurements behind the choices: ``docs/estimator.md``.
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
        weights are uniform and starting covariances the data's. The draw depends
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
        Restarts, run together (``jax.vmap``); the kept one has the highest likelihood less
        ``merge_tol`` times the BIC price of its components.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and :meth:`sample`.
    standardize : bool, default=True
        Fit on features centred and scaled to unit (weighted) variance; all outputs are in
        the units of ``X``. For "spherical" one common scale is used for all features (the
        root mean feature variance), so that spherical clusters stay spherical; the other
        types scale each feature.
    var_floor : float, default=1e-4
        Variance floor relative to each feature's variance: spherical and diagonal
        variances are clamped at it; for "full" it is added to the diagonal of each
        covariance at every update (scikit-learn's ``reg_covar``, in relative units).
    rounding_floor : bool, default=True
        Where every value of a feature is a multiple of a step ``g`` (after an offset;
        integers, counts, values recorded to a fixed number of decimals, at most 6), floor
        that feature's variance at ``g^2 / 12`` as well, the variance of a value rounded to
        the grid (Sheppard's correction; "full" and "tied" add it to the diagonal, as
        ``var_floor``; "spherical" takes the largest floor of all features): no component
        then collapses onto a tied value (:mod:`overgmm.rounding`). Continuous values have
        no grid and are unaffected. :meth:`partial_fit` reads the grid of every batch so
        far (a finer grid in a later batch lowers the floor).
    allow_missing : bool, default=False
        Accept NaN in ``X`` as a missing value (missing at random), in :meth:`fit`,
        :meth:`partial_fit` and inference. The fit is exact EM on the observed data: the
        E-step uses each row's marginal over its observed features, the M-step the
        conditional expectations of its missing ones (and their conditional covariance),
        for every covariance type; no imputation. ``score_samples`` is then the log-density
        of each row's observed features, and ``predict``/``predict_proba`` label rows
        from their observed features. A row or feature with no observed value is an error.
        Standardization uses each feature's observed values. False: NaN is an error, as in
        scikit-learn. In memory and on chunks alike (a dask array, a memmap over
        ``memory_budget``, Parquet read with ``chunks.ParquetChunks(path, missing=True)``).
    memory_budget : float, default=2**30
        Bytes the fit may hold for the data. A NumPy array or ``np.memmap`` whose working
        copies (about 4 x its float64 size) exceed it is fitted in chunks of rows sized
        from it (:func:`overgmm.chunks.chunk_rows_for`), never loaded whole; a
        ``dask.array.Array`` or an :mod:`overgmm.chunks` source always is. Each step of a
        chunked fit is exact full-data EM: one pass over every chunk.
    verbose : int, default=0
        1 or more: a progress bar on stderr for fits longer than a second (steps, the
        mean log-likelihood per sample in the units of ``X``, ETA; each "auto" candidate
        and each polishing fit is a stage of the one bar).

    Attributes
    ----------
    covariance_type_ : str
        The covariance type fitted: ``covariance_type``, or the one "auto" chose.
    validation_scores_ : dict
        For ``covariance_type="auto"``: held-out log-likelihood per sample (units of X) of
        each candidate type; empty otherwise.
    weights_ : ndarray of shape (n_components_,)
    means_ : ndarray of shape (n_components_, n_features)
    covariances_ : ndarray
        In the units of ``X``, shaped as scikit-learn's ``GaussianMixture``:
        (n_components_, n_features, n_features) for "full", (n_components_, n_features)
        for "diag" (diagonal covariances), (n_components_,) for "spherical" (one variance
        per component); (n_features,) for "fixed" (the diagonal covariance shared by all
        components: the squared feature scales when ``standardize=True``, ones otherwise).
    precisions_cholesky_ : ndarray
        Same shape as ``covariances_``: for "full" the upper-triangular ``U`` with
        ``inv(covariances_[i]) = U[i] @ U[i].T`` (scikit-learn's convention), otherwise
        ``1 / sqrt(covariances_)``.
    n_components_ : int
        Components left after pruning and merging.
    n_components_init_ : int
        Components the fit started from. Beyond 2^14 training rows, ``"auto"`` fits its
        candidate types on a subsample and the final fit starts from the chosen one: the
        components it had merged away start at weight 0, and ``n_iter_``, ``n_merges_``
        and the trajectories count the final fit's own steps and merges.
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

    ``sklearn.utils.estimator_checks.parametrize_with_checks`` passes in full for every
    covariance type (``tests/test_estimator.py``, with ``n_components=2, max_iter=30`` to
    keep compilation short). No check is skipped or marked as an expected failure; scikit-learn itself skips
    its array-API check when the environment variable ``SCIPY_ARRAY_API`` is not set. The
    sample-weight equivalence checks pass because the initial draw is by inverse CDF over a
    canonical (sorted) row order.
    """

    def __init__(
        self,
        n_components="auto",
        *,
        covariance_type="auto",
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
        var_floor=1e-4,
        rounding_floor=True,
        allow_missing=False,
        memory_budget=chunks.DEFAULT_MEMORY_BUDGET,
        verbose=0,
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
        self.rounding_floor = rounding_floor
        self.allow_missing = allow_missing
        self.memory_budget = memory_budget
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = bool(self.allow_missing)
        return tags

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        check_params(self)

    @property
    def _finite(self):
        """``ensure_all_finite`` for scikit-learn's validation: NaN allowed with allow_missing."""
        return "allow-nan" if self.allow_missing else True

    def _validate(self, X, **kwargs):
        """scikit-learn's ``validate_data``; NaN without ``allow_missing`` names the option."""
        try:
            return validate_data(self, X, dtype=np.float64, ensure_all_finite=self._finite, **kwargs)
        except ValueError as err:
            if self.allow_missing or "NaN" not in str(err):
                raise
            raise ValueError(
                f"{err}\nOverparamGMM(allow_missing=True) fits NaN as missing values (exact EM on the observed "
                "values, no imputation)."
            ) from None

    def _validate_fit_input(self, X, sample_weight, *, reset: bool):
        X = self._validate(X, reset=reset, ensure_min_samples=2)
        check_missing(self, X)
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        total = float(sw.sum())
        if not total > 0:
            raise ValueError("sample_weight must have a positive sum; all weights are zero.")
        return X, sw, total

    def _resolve_n_components(self, total: float, kind: str = "diag", d: int | None = None) -> int:
        """Starting components of a fit of type ``kind`` to ``total`` weight in ``d`` features."""
        n = F.auto_n_components(total, kind, d) if self.n_components == "auto" else int(self.n_components)
        if n > total:
            raise ValueError(
                f"n_components={n} must be at most the number of samples ({total:g}, the sum of sample "
                "weights); lower n_components or use n_components='auto'."
            )
        return n

    def _standardization(self, X: np.ndarray, w: np.ndarray, kind: str, grid: np.ndarray | None = None, least=None):
        """:meth:`_standardization_from` of the rows ``X`` with weights ``w``; ``grid``: all the data's
        (:func:`overgmm.rounding.grid`; None: ``X``'s); ``least`` (d,): a floor in X's units, or None."""
        grid = rounding.grid(X, w) if grid is None else grid
        return self._standardization_from(*feature_moments(X, w), kind, grid, least)

    def _standardization_from(self, mean: np.ndarray, var: np.ndarray, kind: str, grid: np.ndarray, least=None):
        """(shift, scale, floor) from the weighted feature means and variances (d,), the
        features' rounding grid (d,) (:func:`overgmm.rounding.grid`) and ``least``."""
        d = mean.shape[0]
        var = _checks.constant_as_zero(mean, var)
        if self.standardize:
            # spherical: one scale for all features, so spherical clusters stay spherical
            scale = np.full(d, np.sqrt(np.mean(var))) if C.public(kind).common_scale else np.sqrt(var)
            scale[~(scale > 1e-150)] = 1.0
            shift = mean
        else:
            shift, scale = np.zeros(d), np.ones(d)
        zvar = var / scale**2
        floor = self.var_floor * np.where(zvar > 0, zvar, 1.0)
        if self.rounding_floor:
            floor = np.maximum(floor, rounding.sheppard_variance(grid) / scale**2)
        return shift, scale, floor if least is None else np.maximum(floor, least / scale**2)

    def _seed(self) -> int:
        """A seed from ``random_state`` (the JAX key is made inside the compiled code)."""
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _price(self, d: int, total: float, kind: str) -> float:
        """``merge_tol`` times the BIC price of one component, ``(p / 2) log N / N`` in mean
        log-likelihood per sample (p parameters per component, N the sum of sample weights)."""
        if not (self.merge_tol > 0 and total > 1):
            return 0.0
        p_comp = d + F.n_covariance_parameters(kind, d) + 1
        return self.merge_tol * 0.5 * p_comp * math.log(total) / total

    def _start(self, X, w, total, n_init, kind, n=None, grid=None, least=None, rotation=None, warm=None, seed=None):
        """Standardization, the problem on the padded rows, starting students (``n``
        components, default from ``total``; ``grid``, ``least``: as in :meth:`_standardization`;
        ``rotation`` (d, d): fit the rows ``X @ rotation``; ``warm``: a fit ``(res, units)``
        of this type to start from instead, :func:`._fit.warm_start`; ``seed``: of the
        starting draw, None: the next from ``random_state``)."""
        n = self._resolve_n_components(total, kind, X.shape[1]) if n is None else n
        Xv = X if rotation is None else X @ rotation
        shift, scale, floor = self._standardization(Xv, w, kind, grid, least)
        Z = (Xv - shift) / scale
        first = S.warm_students(self, warm, (shift, scale), n_init)
        if first is not None:
            students, keys = first
        else:
            # starting students from the rows of init_rows (canonical order, about 65k rows; by
            # X's own values): the draw ignores row order and chunking, as on data in chunks
            rows = S.init_rows(X, w)
            # missing values: the starting draw sees each gap at its feature's mean (0)
            students, keys = S.starting_students(
                self, np.nan_to_num(Z[rows]), w[rows], n, floor, n_init, kind, X.shape[0], seed
            )
        Zp, wp = F.pad_rows(Z, w)
        return n, (shift, scale, floor), F.problem(Zp, wp, floor), students, keys

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, sample_weight=None) -> OverparamGMM:
        """Fit the over-parameterized mixture, then prune and merge.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), np.memmap, dask.array.Array or
            an :mod:`overgmm.chunks` source
            A dask array, a chunk source, or an array / memmap over ``memory_budget`` is
            fitted in chunks: exact EM, one pass over the chunks per step, on the cluster
            of the current ``distributed.Client`` if there is one (same result as in memory).
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative frequency weights (None: all ones).

        Returns
        -------
        self : OverparamGMM
        """
        _mappings.release_if_crowded()  # see overgmm._mappings: a long session of many shapes
        self._check_params()
        for stale in ("_grid_part", "_base_floor"):  # partial_fit's, from an earlier model
            self.__dict__.pop(stale, None)
        chunks = S.as_chunks(self, X, sample_weight)
        if chunks is not None:
            return S.fit_chunks(self, chunks)
        X, sw, total = self._validate_fit_input(X, sample_weight, reset=True)
        with np.errstate(over="ignore", invalid="ignore"):
            check_features(self, *feature_moments(X, sw / total))
        self.validation_scores_: dict[str, float] = {}
        grid = rounding.grid(X, sw)  # of all rows, once: the "auto" candidates and the fit share it
        with Progress(int(self.verbose) > 0) as progress:
            auto = self.covariance_type == "auto"
            choice = A.choose_type(self, X, sw, progress, grid) if auto else A.Choice(self.covariance_type)
            kind = choice.kind
            if kind == "rotated":  # a full fit for the axes, then diag on rotated rows
                return Rot.fit(self, X, sw, total, progress, grid)
            try:
                res, n, units = self._fit_type(
                    X,
                    sw / total,
                    total,
                    kind,
                    progress=progress,
                    stage=f"fit ({kind})",
                    grid=grid,
                    warm=choice.warm,
                    compiling=choice.compiling,
                )
            finally:
                if choice.compiling is not None:  # a program the fit did not call is dropped
                    choice.compiling.close(wait=False)
        return self._finish(res, n, units, kind, log_jacobian(X, units[1], sw / total))

    def _finish(self, res, n: int, units, kind: str, jacobian: float | None = None, rotation=None) -> OverparamGMM:
        """Fitted attributes from the kept restart of :func:`._fit.fit`; ``rotation``: for
        "rotated", (axes, the standardization of X) (:func:`._rotated.to_full`)."""
        if res.best < 0:
            self._raise_non_finite(res.restarts[0].failed_at)
        n_failed = sum(r.failed_at >= 0 for r in res.restarts)
        if n_failed:
            warnings.warn(
                f"{n_failed} of {self.n_init} restarts stopped on a non-finite likelihood and were "
                "discarded; a larger var_floor or standardize=True avoids this.",
                RuntimeWarning,
                stacklevel=2,
            )
        b = res.best
        run = res.restarts[b]
        student, cov = F.take(res.students, b), tuple(None if a is None else a[b] for a in res.covariances)
        if rotation is not None:
            student, cov = Rot.to_full(student, units, *rotation)
            units = rotation[1]
        self.covariance_type_ = kind
        self._set_fitted(student, cov, *units)
        self.lower_bounds_ = -run.losses - (self._log_scale if jacobian is None else jacobian)
        self.lower_bound_ = float(self.lower_bounds_[-1])
        self.n_iter_ = run.n_steps
        self.weight_trajectory_ = run.weights[:, :n]
        self.converged_ = run.converged
        self.n_components_init_ = n
        self.n_merges_ = run.n_merges
        if not self.converged_:
            warnings.warn(
                f"{type(self).__name__} did not converge within max_iter={self.max_iter} steps "
                f"(tol={self.tol}); increase max_iter or tol.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _fit_type(
        self,
        X,
        w,
        total,
        kind,
        n=None,
        progress=None,
        stage="fit",
        pre=None,
        grid=None,
        candidate=False,
        price_total=None,
        compiling=None,
        **rotated,
    ):
        """One fit with covariance type ``kind``: (:class:`~._fit.FitResult`, starting
        components, (shift, scale, floor)); ``progress`` shows it as ``stage``; ``pre``: a
        :class:`~._precompile.Precompiler` for the "auto" candidates, started here; ``candidate``:
        one of them (:func:`~._fit.coarse_polish`); ``price_total``: the total weight whose
        merge price the fit pays (None: ``total``; a candidate on a subsample: all rows');
        ``compiling``: a :func:`~._precompile.final_fit` of this fit's programs, waited for;
        ``grid`` and ``rotated`` (``least``, ``rotation``, ``warm``, ``seed``): as in :meth:`_start`."""
        n, units, prob, students, keys = self._start(X, w, total, self.n_init, kind, n, grid, **rotated)
        alg = F.algorithm(prob, self.algorithm, float(self.step_size), int(self.n_short), float(self.prune))
        price = self._price(X.shape[1], total if price_total is None else price_total, kind)
        engine = F.InMemory(prob, alg)
        if compiling is not None:
            engine = Awaiting(engine, compiling, kind)
        if pre is not None:
            pre.start(engine, students, keys, int(self.max_iter), merge=price > 0)
        if progress is not None:
            progress.stage(stage, float(np.sum(np.log(units[1]))))
        gaps = prob.missing and bool((np.isnan(X).any(axis=1) & (w > 0)).any())  # in rows that count, as on chunks
        cap = F.POLISH_STEPS if gaps else None
        kw = {"max_iter": int(self.max_iter), "tol": float(self.tol), "price": price, "progress": progress}
        if compact(total) and pre is None:  # the narrower widths' programs, compiled meanwhile
            kw["widths"] = for_widths(engine, students, keys, kind, int(self.max_iter), price > 0)
        coarse = F.coarse_polish(total, candidate)
        res = F.fit(engine, students, keys, polish_steps=cap, coarse_polish=coarse, compact=compact(total), **kw)
        return res, n, units

    def _raise_non_finite(self, at: int):
        # a step too long for the data diverges as a collapsed variance does (gradient EM at step 100)
        step = "" if self.algorithm == "em" else f"lower step_size (now {self.step_size}), "
        raise FloatingPointError(
            f"the log-likelihood became non-finite after {at} steps (a component's variance collapsed, or a "
            f"step diverged); {step}increase var_floor (now {self.var_floor}), use standardize=True (now "
            f"{self.standardize}), or lower n_components. No parameters from this fit were stored."
        )

    def _set_fitted(self, student: Mixture, cov: tuple, shift, scale, floor) -> None:
        """Keep the mixture (standardized units, pruned components included so that shapes
        and compilations stay fixed) and expose its live components in the units of X.

        ``cov``: the covariances in natural shape and, for "full", the precision Cholesky
        factors (standardized units)."""
        self._student = student
        self._shift, self._scale, self._floor = np.asarray(shift), np.asarray(scale), np.asarray(floor)
        self._log_scale = float(np.sum(np.log(self._scale)))
        lw = np.asarray(student.log_weights)
        live = np.isfinite(lw)
        self._live = np.flatnonzero(live)
        self.weights_ = np.exp(lw[live] - np.log(np.sum(np.exp(lw[live]))))
        self.means_ = np.asarray(student.means)[live] * self._scale + self._shift
        t, s = C.public(self.covariance_type_), self._scale
        var, u = cov
        self.covariances_ = t.in_units(t.select(np.asarray(var), live), s)
        self.precisions_cholesky_ = t.precisions_in_units(
            self.covariances_, None if u is None else t.select(u, live), s
        )
        self.n_components_ = int(live.sum())

    def partial_fit(self, X, y=None, sample_weight=None) -> OverparamGMM:
        """One stochastic EM step on a mini-batch (for data that does not fit in memory).

        The first call (on an unfitted estimator) fixes the standardization and the
        starting components from its batch (``n_components="auto"`` from its size); each
        call moves the mixture's sufficient statistics ``min(1, step_size * (t + 2) ** -0.6)``
        of the way to the batch's (stepwise EM, :func:`overgmm.stepwise_em`: a stochastic
        gradient-EM step in EM's metric). Components below ``prune`` are removed; no merging.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : OverparamGMM
        """
        return _online.partial_fit(self, X, sample_weight)

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit, then return the labels of X, array of shape (n_samples,)."""
        return self.fit(X, y, sample_weight=sample_weight).predict(X)

    # ------------------------------------------------------------------ model files
    def save(self, path) -> None:
        """Write the fitted model to ``path``: strict JSON, versioned, with every fitted
        attribute (:mod:`overgmm.estimator._persist`). :meth:`load` reads it back."""
        _persist.write_json(Path(path), _persist.to_dict(self))

    @classmethod
    def load(cls, path) -> OverparamGMM:
        """The fitted estimator saved at ``path`` (by :meth:`save` or ``overgmm fit``'s
        ``model.json``): same parameters and attributes, bit-for-bit the same
        ``score_samples``, ``predict`` and ``predict_proba``. Errors name the file."""
        return _persist.load(cls, path)
