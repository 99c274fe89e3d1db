"""``covariance_type="auto"`` on data in memory: fit each candidate type on most rows,
score it on the rows held out, keep the simplest type within a margin of the best
(:func:`overgmm.estimator._fit.simplest_type`, the rule the chunked fit shares).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from overgmm import rounding, streaming
from overgmm.estimator import _fit as F
from overgmm.estimator import _rotated as Rot
from overgmm.estimator._checks import log_jacobian
from overgmm.estimator._precompile import Precompiler, final_fit
from overgmm.estimator._progress import Progress
from overgmm.estimator._slots import bucket_components

VALIDATION_FOLDS = streaming.HOLDOUT_FOLDS  # one row in 5 (chosen by its values) is held out to choose the type


def validation_mask(X: np.ndarray) -> np.ndarray:
    """Rows held out by ``covariance_type="auto"``: about one in :data:`VALIDATION_FOLDS`,
    chosen by a hash of each row's values (:func:`overgmm.streaming.holdout_mask`), so that
    the choice ignores row order, chunking and duplicated rows (sample weights as
    repetitions fall on the same side)."""
    return streaming.holdout_mask(np.asarray(X, dtype=np.float64))


class HeldMoments(NamedTuple):
    """Weighted sums over held-out rows of the per-row log-likelihoods ``ll_t`` (units of
    X) of T candidate types (in the order of the ``names`` given to :meth:`se`):
    ``total = sum w``, ``s1 = sum w ll`` (T,), ``s2 = sum w ll_a ll_b`` (T, T); summed
    over chunks with :func:`overgmm.chunks.add`."""

    total: float
    s1: np.ndarray
    s2: np.ndarray

    def se(self, names: list, a: str, b: str) -> float:
        """Standard error of the mean difference ``ll_a - ll_b`` (weights as repetitions)."""
        i, j = names.index(a), names.index(b)
        mean = (self.s1[i] - self.s1[j]) / self.total
        var = (self.s2[i, i] + self.s2[j, j] - 2 * self.s2[i, j]) / self.total - mean**2
        return math.sqrt(max(var, 0.0) / self.total) if self.total > 0 else 0.0


def held_moments(X: np.ndarray, w: np.ndarray, start: int, view: streaming.View, models: list) -> HeldMoments:
    """:class:`HeldMoments` of the rows of ``X`` (N, d) that ``view`` weighs (weights ``w``
    (N,)), for ``models``: (mixture, shift, scale) per type, each in its standardized
    units. A chunk function (``start`` unused) for :func:`overgmm.chunks.map_sum`; in
    memory it is called once on the held-out rows."""
    w = view.weights(X, w)
    X, w = X[w > 0], w[w > 0]
    ll = np.zeros((len(models), X.shape[0]))
    for t, (student, shift, scale) in enumerate(models):
        ll[t] = F.evaluate(student, (X - shift) / scale)[0] - log_jacobian(X, scale)
    return HeldMoments(float(w.sum()), ll @ w, (ll * w) @ ll.T)


def held_nll(students, Z: np.ndarray, w: np.ndarray, floor, rows: int) -> np.ndarray:
    """Mean negative log-likelihood (R,) of a batch of students (leading axis R) on the
    standardized held-out rows ``Z`` (N, d) with weights ``w`` (N,) summing to 1, through
    the fit's own summary program: in pieces of at most ``rows`` rows (the fit's row count),
    each padded as the fit's rows are, so that no summary program of another shape is
    compiled (at 1e5 rows the held-out rows' own shape cost 0.2-0.35 s of compilation per
    candidate type). One missing-value flag for every piece: that of all of ``Z``."""
    missing = bool(np.isnan(Z).any())

    def nll(Z, w):
        Zp, wp = F.pad_rows(Z, w, at_least=rows)
        return F.InMemory(F.problem(Zp, wp, floor, missing), None).summary(students)[0]

    if Z.shape[0] <= rows:
        return nll(Z, w)
    out = np.zeros(students.means.shape[0])
    for a in range(0, Z.shape[0], rows):
        piece, weight = w[a : a + rows], float(w[a : a + rows].sum())
        if weight > 0:  # the summary's loss is the piece's weighted mean
            out = out + weight * nll(Z[a : a + rows], piece)
    return out


class Choice(NamedTuple):
    """What ``"auto"`` chose: the covariance type, and the chosen candidate's fit and
    standardization ``(res, units)`` when the candidates were fitted on a subsample of
    :data:`~._fit.AUTO_ROWS` rows (None otherwise, and for "rotated"): the final fit on
    all rows starts from it (:func:`._fit.warm_start`), and ``compiling``: its programs,
    compiling in the background (:func:`final_programs`; None: the fit compiles them)."""

    kind: str
    warm: tuple | None = None
    compiling: Precompiler | None = None


def in_turn(pre: Precompiler, kinds):
    """The candidate types ``kinds`` in the order they are fitted: first whichever of them
    has its programs compiled (:meth:`Precompiler.take`: a cold fit does not wait for the
    background thread while another type is ready), "rotated" last (it starts from the
    others' axes)."""
    todo = [k for k in kinds if k != "rotated"]
    while todo:
        kind = pre.take(todo)
        todo.remove(kind)
        yield kind
    if "rotated" in kinds:
        yield "rotated"


def final_programs(est, X: np.ndarray, sw: np.ndarray, kind: str, res) -> Precompiler | None:
    """The final fit's programs for type ``kind`` (solver, merge round, summary), compiled in
    background threads (one per spare core): on all of ``X``'s rows (their shapes: the
    programs take the data as arguments), from the students of the candidate fit ``res``
    (where the final fit of subsampled "auto" starts, :func:`._fit.warm_start`). Compile
    only, into the persistent cache; nothing without it. None where the stand-in data do
    not fit in memory (the fit then compiles them itself)."""
    try:
        return _final_programs(est, X, sw, kind, res)
    except MemoryError:  # an optimisation only; any other error is a bug to see
        return None


def _final_programs(est, X: np.ndarray, sw: np.ndarray, kind: str, res) -> Precompiler:
    size, d = F.bucket_rows(X.shape[0]), X.shape[1]
    prob = F.problem(np.zeros((size, d)), np.full(size, 1.0 / size), np.ones(d), missing=bool(np.isnan(X).any()))
    alg = F.algorithm(prob, est.algorithm, float(est.step_size), int(est.n_short), float(est.prune))
    merge = est._price(d, float(sw.sum()), kind) > 0
    keys = F.start_keys(0, int(est.n_init))
    return final_fit(F.InMemory(prob, alg), res.students, keys, kind, int(est.max_iter), merge)


def choose_type(est, X: np.ndarray, sw: np.ndarray, progress: Progress, grid: np.ndarray | None = None) -> Choice:
    """The ``"auto"`` rule for the estimator ``est``: validation log-likelihood on the rows of
    :func:`validation_mask` (weights of the held-out rows set to 0 for the fits, so shapes
    and compilations are those of the final fit); sets ``est.validation_scores_``. Falls
    back to "diag" when a side would be empty. ``grid``: the rounding grid of all rows
    (:func:`overgmm.rounding.grid`; None: computed here), shared by every candidate.

    On more than :data:`~._fit.AUTO_ROWS` training rows the candidates are fitted on that
    many of them, and priced (the merge price, :meth:`OverparamGMM._price`) as a fit of
    all the rows: each stands in for the final fit, which starts from the chosen one
    (:class:`Choice`) and can then only merge, never split; its programs, of all rows'
    shapes, start compiling in the background here (:func:`final_programs`,
    ``Choice.compiling``)."""
    grid = rounding.grid(X, sw) if grid is None else grid
    held = validation_mask(X) & (sw > 0)
    w_fit = np.where(held, 0.0, sw)
    if held.sum() < 1 or np.count_nonzero(w_fit) < 2 or w_fit.sum() <= 1:
        return Choice("diag")
    scores, models, sizes = {}, {}, {}

    def n_start(kind):  # as many starting components as the final fit of that type
        return est._resolve_n_components(float(sw.sum()), kind, X.shape[1])

    # the held-out rows score each candidate through the fit's own summary: on the same
    # padded rows as the fit (their weights swapped in), so nothing new is compiled
    X_fit, X_held, w_held = X, X, np.where(held, sw, 0.0)
    count = np.count_nonzero(w_fit)
    sub_total = None  # the candidates' price: that of their own rows, or of all rows (subsampled)
    if count > F.AUTO_ROWS:
        sub_total = float(sw.sum())
        # large data: the candidates are fitted on AUTO_ROWS of the training rows (chosen
        # by their values; exactly that many: one shape bucket for every data set), all
        # held-out rows still score them
        h = streaming.sample_hash(X)
        sub = (w_fit > 0) & (h <= np.uint64(streaming.kth_smallest(h[w_fit > 0], F.AUTO_ROWS)))
        X_fit, w_fit = X[sub], w_fit[sub]
        X_held, w_held = X[held], sw[held]
    # compiled in the background while the first type fits, each at its own starting width
    kinds = F.auto_types(X.shape[1])
    later = [k for k in kinds[1:] if k != "rotated"]
    pre = Precompiler(later, widths={k: bucket_components(n_start(k)) for k in later})
    # one seed per candidate, drawn in AUTO_TYPES' order: the candidates are fitted in the
    # order their programs are ready (a RandomState draws in turn), with the same results;
    # drawn for every type, so that a type's seed does not depend on those skipped at d = 1
    seeds = {k: est._seed() for k in F.AUTO_TYPES if k != "rotated"}
    fitted: dict[str, tuple] = {}
    try:
        for kind in in_turn(pre, kinds):
            if kind == "rotated":  # the diag fit of X @ R, R the axes of the AUTO_AXES_FROM candidates
                starts = [Rot.axes(fitted[k][0], fitted[k][1][1]) for k in Rot.AUTO_AXES_FROM if k in fitted]
                if not starts or X.shape[1] < 2 or np.isnan(X).any():
                    continue
                units = fitted[next(k for k in Rot.AUTO_AXES_FROM if k in fitted)][1]
                wf, tf = w_fit / w_fit.sum(), float(w_fit.sum())
                res, _, units_r, R = Rot.refined(
                    functools.partial(
                        Rot.on_axes,
                        est,
                        X_fit,
                        wf,
                        tf,
                        units=units,
                        n=n_start("diag"),
                        progress=progress,
                        stage="auto: rotated",
                        candidate=True,
                        price_total=sub_total,
                    ),
                    starts,
                    est._price(X.shape[1], sub_total or tf, "diag"),
                )
                if res.best < 0:
                    scores[kind] = -math.inf
                    continue
                students, best = Rot.as_candidate(res, units_r, R, units), 0
            else:
                res, _, units = est._fit_type(
                    X_fit,
                    w_fit / w_fit.sum(),
                    float(w_fit.sum()),
                    kind,
                    n_start(kind),
                    progress,
                    f"auto: {kind}",
                    pre,
                    grid,
                    True,
                    price_total=sub_total,
                    seed=seeds[kind],
                )
                if res.best < 0:
                    scores[kind] = -math.inf
                    continue
                fitted[kind], students, best = (res, units), res.students, res.best
            sizes[kind] = F.n_parameters(res, kind, X.shape[1])
            shift, scale, floor = units
            nll = held_nll(students, (X_held - shift) / scale, w_held / w_held.sum(), floor, X_fit.shape[0])[best]
            scores[kind] = -float(nll) - log_jacobian(X_held, scale, w_held / w_held.sum())
            models[kind] = (F.take(students, best), shift, scale)
    finally:
        pre.close()
    # in AUTO_TYPES' order, whatever order the candidates were fitted in
    scores = {k: scores[k] for k in F.AUTO_TYPES if k in scores}
    models = {k: models[k] for k in F.AUTO_TYPES if k in models}
    est.validation_scores_ = scores
    if held.sum() > F.AUTO_ROWS:  # many held-out rows: the margin alone
        kind = F.simplest_type(scores, sizes=sizes)
    else:  # the standard errors: per-row log-likelihoods (one evaluate program per type)
        names, sums = list(models), held_moments(X_held, w_held, 0, streaming.ALL, list(models.values()))
        kind = F.simplest_type(scores, lambda a, b: sums.se(names, a, b), sizes)
    if sub_total is None or kind not in fitted:  # the final fit shares the candidates' programs
        return Choice(kind)
    # the final fit on all rows has programs of its own shapes: compiled in the background
    # while it starts and solves, each waited for where the fit calls it (_precompile.Awaiting)
    return Choice(kind, fitted[kind], final_programs(est, X, sw, kind, fitted[kind][0]))
