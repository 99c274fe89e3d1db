"""The estimator's fit on data in chunks (:mod:`overgmm.chunks`): the same steps as in
memory (:mod:`._fit`), each data operation a pass over the chunks (:mod:`overgmm.streaming`).

* moments: :func:`overgmm.streaming.scan` (finiteness first: a non-finite value is
  reported with its row and column before any iteration);
* starting students: drawn from :func:`overgmm.streaming.subsample`, the rows whose hash
  falls below ``SUBSAMPLE_ROWS / count``. The in-memory fit draws from the same rows
  (:func:`init_rows`), so both start alike whatever the chunking or row order;
* the fit, its summary and the merges: :class:`Streamed`, the engine :func:`._fit.fit` runs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import numpy as np
from sklearn.utils.validation import check_is_fitted

from overgmm import chunks as C
from overgmm import streaming
from overgmm._running import LOCK
from overgmm.algorithms.base import Method
from overgmm.estimator import _auto as A
from overgmm.estimator import _fit as F
from overgmm.estimator import _rotated as Rot
from overgmm.estimator._checks import check_features, feature_label
from overgmm.estimator._progress import Progress
from overgmm.estimator._slots import bucket_components, compact
from overgmm.mixture import Mixture


class Streamed(NamedTuple):
    """:class:`._fit.InMemory`'s operations on chunked data seen through ``view``
    (standardized, and which rows count); ``total``: the weight the view counts."""

    chunks: object
    view: streaming.View
    method: Method
    floor: np.ndarray
    total: float
    progress: Progress | None = None

    def solve(self, students: Mixture, keys, max_iter: int, tol: float):
        return streaming.solve(
            self.method,
            students,
            self.chunks,
            floor=self.floor,
            total=self.total,
            view=self.view,
            max_steps=max_iter,
            tol=tol,
            keys=keys,
            record=F.RECORD,
            on_step=None if self.progress is None else self.progress.step,
        )

    def summary(self, students: Mixture):
        loss = streaming.loss(self.chunks, self.view, students, self.total)
        return loss, F.host(jax.vmap(F._covariances)(students))

    def merge(self, students: Mixture, price: float):
        merged, k = streaming.merge_round(self.chunks, self.view, students, self.floor, self.total, price)
        return F.host(merged), np.asarray(k)

    def sums(self, students: Mixture):
        return streaming.statistics_sums(self.chunks, self.view, students)


def init_rows(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Indices of the rows the starting students are drawn from (in memory), in the
    canonical order: :func:`overgmm.streaming.subsample_mask` at ``SUBSAMPLE_ROWS`` rows,
    sorted lexicographically by value, as :func:`overgmm.streaming.subsample` gives them."""
    count = int(np.count_nonzero(w > 0))
    idx = np.flatnonzero(streaming.subsample_mask(X, w, streaming.SUBSAMPLE_ROWS / max(count, 1)))
    return idx[np.lexsort(X[idx].T[::-1])]


def init_bucket(n_rows: int) -> int:
    """Rows the starting students' draw is padded to: that of all rows, up to twice the
    subsample's target (one compiled shape for every fit of a data set, whatever rows a
    view counts)."""
    return F.bucket_rows(min(n_rows, 2 * streaming.SUBSAMPLE_ROWS))


def method_of(est, floor: np.ndarray) -> Method:
    """The estimator's (streamable) method: :func:`._fit.algorithm`'s, bound to nothing."""
    if est.algorithm == "polyak":
        raise ValueError(
            "algorithm='polyak' evaluates the loss at trial points, several passes per step; data in chunks "
            "(a dask array, a memmap or a file larger than memory_budget) are fitted with 'em' or 'gradient_em'"
        )
    dummy = F.problem(np.zeros((1, floor.shape[0])), np.ones(1), floor)
    return F.algorithm(dummy, est.algorithm, float(est.step_size), int(est.n_short), float(est.prune)).method


def start(est, chunks, view: streaming.View, moments: streaming.Moments, kind: str, n: int, least=None, warm=None):
    """Standardization from the view's moments (those of the rows it rotates to, when it
    rotates; ``least``, ``warm``: as in :meth:`OverparamGMM._start`), the subsample, and
    starting students."""
    var = np.diag(moments.cov)
    shift, scale, floor = est._standardization_from(moments.mean, var, kind, moments.grid, least)
    first = warm_students(est, warm, (shift, scale), est.n_init)
    if first is not None:  # no subsample pass, no draw
        return (shift, scale, floor), *first
    Xs, ws = streaming.subsample(chunks, view, moments.count)  # by X's own values, as in memory
    # missing values: the starting draw sees each gap at its feature's mean (0), as in memory
    Z = np.nan_to_num(dataclasses.replace(view, shift=shift, scale=scale).data(Xs))
    students, keys = starting_students(est, Z, ws, n, floor, est.n_init, kind, chunks.n_rows)
    return (shift, scale, floor), students, keys


def warm_students(est, warm, units: tuple, n_init: int):
    """The start of a final fit from the chosen "auto" candidate ``warm = (res, units)``:
    its students in ``units`` (:func:`._fit.warm_start`) and the restarts' keys from the
    seed a fresh draw would have taken; None (and no seed taken) when there is none."""
    students = None if warm is None else F.warm_start(warm[0], warm[1], units)
    return None if students is None else (students, F.start_keys(est._seed(), n_init))


def starting_students(est, Z, w, n: int, floor, n_init: int, kind: str, n_rows: int, seed=None):
    """``n_init`` starting students (host) and their keys, drawn from the standardized rows
    ``Z`` with weights ``w`` (the subsample, canonical order) of data of ``n_rows`` rows
    (``seed``: of the draw; None: the next from the estimator's ``random_state``)."""
    Zp, wp = F.pad_rows(Z, w / w.sum(), at_least=init_bucket(n_rows))
    return F.init_students(
        est._seed() if seed is None else seed,
        Zp,
        wp,
        n,
        floor,
        n=bucket_components(n),
        n_init=n_init,
        method=est.init,
        covariance_type=kind,
    )


def is_dask(X) -> bool:
    """Whether ``X`` is a dask array."""
    return type(X).__module__.startswith("dask.") and hasattr(X, "to_delayed")


def lazy(est, X, method: str):
    """``est.score_samples`` or ``est.predict_proba`` (``method``) of a dask array ``X``
    (N, d): a dask array over the same row chunks, nothing computed yet; each block of
    rows is evaluated as NumPy where it lives (on a cluster's workers), so memory is one
    block's, whatever N (dask-ml's ``ParallelPostFit`` convention). The shape is checked
    now, the values block by block."""
    check_is_fitted(est)
    if X.ndim != 2 or X.shape[1] != est.n_features_in_:
        raise ValueError(
            f"X is a dask array of shape {X.shape}; {type(est).__name__} was fitted on "
            f"{est.n_features_in_} features: expected (n_samples, {est.n_features_in_})"
        )
    X = X.rechunk({1: -1})  # whole rows in every block
    fn, k = getattr(est, method), est.n_components_
    empty = np.empty((0, k)) if method == "predict_proba" else np.empty(0)

    def block(b):
        if not b.shape[0]:
            return empty
        with LOCK:  # Dask's threads: one block's compiled work at a time (overgmm._running)
            return fn(b)

    if method == "predict_proba":
        return X.map_blocks(block, chunks=(X.chunks[0], (k,)), dtype=np.float64, meta=empty)
    return X.map_blocks(block, drop_axis=1, dtype=np.float64, meta=empty)


def as_chunks(est, X, sample_weight):
    """The chunked source ``fit`` streams, or None for a fit in memory: a dask array
    (always), an :mod:`overgmm.chunks` source (always), or a NumPy array / memmap whose
    working copies (4 x its float64 size) exceed ``memory_budget``."""
    if hasattr(X, "map") and hasattr(X, "bounds") and hasattr(X, "n_rows"):
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported with an overgmm.chunks source; weight its rows instead")
        return X
    if is_dask(X):
        return C.DaskChunks(X, sample_weight)
    if isinstance(X, np.ndarray) and X.ndim == 2 and 4 * 8 * X.size > float(est.memory_budget):
        return C.ArrayChunks(X, sample_weight, chunk_rows=C.chunk_rows_for(X.shape[1], float(est.memory_budget)))
    return None


def fit_chunks(est, chunks):
    """:meth:`OverparamGMM.fit` on chunked data (module docstring)."""
    est.n_features_in_ = chunks.n_features
    if hasattr(est, "feature_names_in_"):
        del est.feature_names_in_
    # non-finite values are reported here, before any step (NaN too, unless allow_missing)
    moments = streaming.scan(chunks, missing=bool(est.allow_missing))
    if not moments.total > 0:
        raise ValueError("sample_weight must have a positive sum; all weights are zero.")
    if chunks.n_rows < 2:
        raise ValueError(f"Found array with {chunks.n_rows} sample(s) while a minimum of 2 is required.")
    for j in np.flatnonzero(~(moments.seen > 0)):
        raise ValueError(f"{feature_label(est, int(j))} has no observed value (all NaN); drop it before fitting.")
    check_features(est, moments.mean, np.diag(moments.cov))
    est.validation_scores_ = {}
    with Progress(int(est.verbose) > 0) as progress:
        auto = est.covariance_type == "auto"
        kind, warm, _ = _choose_type(est, chunks, moments, progress) if auto else A.Choice(est.covariance_type)
        if kind == "rotated":  # a full fit for the axes, then diag on rotated rows (as in memory)
            if moments.gaps:
                raise Rot.no_missing()
            starts, units, failed = [], None, 0
            for axes_kind in Rot.AXES_FROM:
                res, _, units_k = _fit_type(
                    est, chunks, "all", moments, axes_kind, None, progress, f"rotated: {axes_kind} axes"
                )
                if res.best < 0:
                    failed = res.restarts[0].failed_at
                    continue
                units = units_k
                starts.append(Rot.axes(res, units[1]))
            if not starts:
                est._raise_non_finite(failed)
            n = est._resolve_n_components(moments.total)  # the diag fit on the axes
            res, n, units_r, R = Rot.refined(
                lambda R: _on_axes(est, chunks, "all", moments, R, units, n, progress, "fit (rotated)"),
                starts,
                est._price(chunks.n_features, moments.total, "diag"),
            )
            return est._finish(res, n, units_r, kind, jacobian(moments, units_r[1]), (R, units))
        res, n, units = _fit_type(
            est, chunks, "all", moments, kind, None, progress=progress, stage=f"fit ({kind})", warm=warm
        )
    return est._finish(res, n, units, kind, jacobian(moments, units[1]))


def jacobian(moments: streaming.Moments, scale: np.ndarray) -> float:
    """What standardization adds to the mean log-density: ``sum_j log scale_j`` over each
    row's observed features, averaged (:func:`._checks.log_jacobian` in memory)."""
    return float((moments.seen / moments.total) @ np.log(scale))


def _fit_type(
    est,
    chunks,
    rows: str,
    moments,
    kind: str,
    n: int | None,
    progress=None,
    stage="fit",
    R=None,
    least=None,
    candidate=False,
    price_total=None,
    warm=None,
):
    """One fit on the rows ``rows`` counts (their ``moments``; ``R``: fit the rows
    ``X @ R``, ``moments`` still those of X), as :meth:`OverparamGMM._fit_type`
    (``candidate``: an "auto" candidate's; ``price_total``, ``warm``: as there; ``n`` starting
    components, None: the rule for ``kind`` from ``moments``' total weight)."""
    n = est._resolve_n_components(moments.total, kind, chunks.n_features) if n is None else n
    if R is not None:
        grid = np.zeros(R.shape[1])  # the rotated values have no rounding grid
        moments = dataclasses.replace(moments, mean=moments.mean @ R, cov=R.T @ moments.cov @ R, grid=grid)
    view = streaming.View(rows=rows, rotation=R)
    units, students, keys = start(est, chunks, view, moments, kind, n, least, warm)
    shift, scale, floor = units
    engine = Streamed(
        chunks,
        streaming.View(shift, scale, rows, missing=moments.gaps, rotation=R),
        method_of(est, floor),
        floor,
        moments.total,
        progress=progress,
    )
    price = est._price(chunks.n_features, moments.total if price_total is None else price_total, kind)
    if progress is not None:
        progress.stage(stage, float(np.sum(np.log(scale))))
    res = F.fit(
        engine,
        students,
        keys,
        max_iter=int(est.max_iter),
        tol=float(est.tol),
        price=price,
        progress=progress,
        polish_steps=F.POLISH_STEPS if moments.gaps else None,
        coarse_polish=F.coarse_polish(moments.total, candidate),
        compact=compact(moments.total),
    )
    return res, n, units


def _on_axes(
    est, chunks, rows: str, moments, R, units, n: int, progress, stage: str, candidate=False, price_total=None
):
    """:func:`._rotated.on_axes` on chunks: the "diag" fit of ``X @ R``, and the E-step sums
    of a batch of students on the rows it saw."""
    res, n, units_r = _fit_type(
        est, chunks, rows, moments, "diag", n, progress, stage, R, Rot.least(R, units), candidate, price_total
    )
    shift_r, scale_r, floor_r = units_r
    view = streaming.View(shift_r, scale_r, rows, rotation=R)
    return res, n, units_r, Streamed(chunks, view, method_of(est, floor_r), floor_r, moments.total).sums


def _choose_type(est, chunks, moments: streaming.Moments, progress=None) -> A.Choice:
    """The ``"auto"`` rule of :func:`._auto.choose_type` on chunked data."""
    missing = bool(est.allow_missing)
    fit_m = streaming.scan(chunks, streaming.View(rows="fit"), missing=missing)
    held_m = streaming.scan(chunks, streaming.View(rows="held"), missing=missing)
    if held_m.count < 1 or fit_m.count < 2 or fit_m.total <= 1:
        return A.Choice("diag")
    n = est._resolve_n_components(moments.total)
    data, rows, sub_total = chunks, "fit", None
    if fit_m.count > F.AUTO_ROWS:  # as in memory: the candidates fit on AUTO_ROWS rows chosen by value
        sub_total = moments.total  # ... priced as a fit of all rows (the final fit starts from one)
        below = streaming.first_by_hash(chunks, streaming.View(rows="fit"), F.AUTO_ROWS)
        # gathered in one pass, as in memory (X[sub]): each candidate step is then a pass over
        # those rows alone, not over every chunk hashing every row to find them (measured: a
        # 1e6-row chunked fit spent most of its time so)
        data = C.ArrayChunks(
            *streaming.gather(chunks, streaming.View(rows="fit", below=below)),
            chunk_rows=C.chunk_rows_for(chunks.n_features, float(est.memory_budget)),
        )
        rows = "all"
        fit_m = streaming.scan(data, missing=missing)
    fit_m = dataclasses.replace(fit_m, grid=moments.grid)  # as in memory: every candidate uses all rows' grid
    scores: dict[str, float] = {}
    models: dict[str, tuple] = {}
    fitted: dict[str, tuple] = {}
    sizes: dict[str, int] = {}
    for kind in F.auto_types(chunks.n_features):
        if kind == "rotated":  # as in memory: the diag fit of X @ R, R the AUTO_AXES_FROM candidates' axes
            starts = [Rot.axes(fitted[k][0], fitted[k][1][1]) for k in Rot.AUTO_AXES_FROM if k in fitted]
            if not starts or chunks.n_features < 2 or moments.gaps:
                continue
            units = fitted[next(k for k in Rot.AUTO_AXES_FROM if k in fitted)][1]
            res, _, units_r, R = Rot.refined(
                functools.partial(
                    _on_axes,
                    est,
                    data,
                    rows,
                    fit_m,
                    units=units,
                    n=n,
                    progress=progress,
                    stage="auto: rotated",
                    candidate=True,
                    price_total=sub_total,
                ),
                starts,
                est._price(chunks.n_features, sub_total or fit_m.total, "diag"),
            )
            if res.best < 0:
                scores[kind] = -np.inf
                continue
            one = Rot.as_candidate(res, units_r, R, units)
        else:
            n_kind = est._resolve_n_components(moments.total, kind, chunks.n_features)  # as the final fit's
            res, _, units = _fit_type(
                est, data, rows, fit_m, kind, n_kind, progress, f"auto: {kind}", candidate=True, price_total=sub_total
            )
            if res.best < 0:
                scores[kind] = -np.inf
                continue
            fitted[kind] = (res, units)
            one = jax.tree_util.tree_map(lambda a, b=res.best: a[b : b + 1], res.students)
        sizes[kind] = F.n_parameters(res, kind, chunks.n_features)
        shift, scale, _ = units
        held = streaming.View(shift, scale, "held", missing=held_m.gaps)
        nll = streaming.loss(chunks, held, one, held_m.total)[0]
        scores[kind] = -float(nll) - jacobian(held_m, scale)
        models[kind] = (F.take(one, 0), shift, scale)
    est.validation_scores_ = scores
    if held_m.count > F.AUTO_ROWS:  # as in memory: many held-out rows, the margin alone
        kind = F.simplest_type(scores, sizes=sizes)
    else:
        names, models_ = list(models), list(models.values())
        sums = C.map_sum(chunks, A.held_moments, streaming.View(rows="held"), models_)
        kind = F.simplest_type(scores, lambda a, b: sums.se(names, a, b), sizes)
    return A.Choice(kind, fitted.get(kind) if sub_total is not None else None)
