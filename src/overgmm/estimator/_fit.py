"""The numerics behind :class:`~overgmm.OverparamGMM`, all from the core.

The estimator hands this module standardized data in a canonical row order; everything
numerical is the core's:

* starting students: :func:`overgmm.init.from_data` (one per restart, ``vmap``);
* the fit: :func:`overgmm.solve_batch` of :func:`overgmm.with_pruning` over EM, gradient
  EM or the Polyak method, all restarts in one call;
* merging: :func:`overgmm.reduce.merge_round` at the BIC price, each round followed by a
  polishing :func:`~overgmm.solve_batch` (the same compiled function as the main fit);
* ``covariance_type="auto"``: :class:`._precompile.Precompiler` compiles the later candidate types'
  programs in background threads while the first fits (compile only, into the persistent
  cache);
* evaluation (:meth:`Mixture.log_prob`, :meth:`Mixture.responsibilities`), sampling
  (:meth:`Mixture.sample`) and :meth:`OverparamGMM.partial_fit`
  (:func:`overgmm.stepwise_em`, then :func:`overgmm.reduce.prune`).

Shapes stay in few buckets so that compiled code is reused: rows are padded with zero
weight to one of four sizes per doubling (at least :data:`MIN_ROWS`), components with pruned
ones (weight 0) to a power of two up to 16 (:func:`._slots.bucket_components`). Each
compiled unit here is a small module-level ``jax.jit`` (or the driver's cached solver), so
refits of one bucket compile nothing; small buckets are compiled for compile speed (:mod:`overgmm._xla`).
Between units, mixtures live on the host as :class:`~overgmm.Mixture` objects with NumPy
leaves.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import numpy as np

from overgmm import covariances as C
from overgmm import init as initialisation
from overgmm import reduce, statistics
from overgmm._xla import LIGHT_ROWS, SMALL_ROWS, compile_options, jit_by_rows
from overgmm.algorithms import Algorithm, em, gradient_em, polyak, stepwise_em, with_pruning
from overgmm.driver import solve_batch
from overgmm.estimator import _slots
from overgmm.estimator._progress import Progress
from overgmm.mixture import Mixture
from overgmm.problem import Problem

ALGORITHMS = ("em", "gradient_em", "polyak")
COVARIANCE_TYPES = tuple(C.PUBLIC)  # full, tied, rotated, diag, spherical, fixed (identity after standardization)
INITS = initialisation.INITS
MIN_ROWS = 128
# covariance_type="auto": of these types whose validation log-likelihood is within
# AUTO_MARGIN nats/sample of the best, the fit with the fewest free parameters, the first
# in this order among equals (docs/estimator.md has the measurements: by the order alone
# a tiling of a sheared cluster by 9 diagonal components beat 3 full ones). "rotated"
# comes last (kept only where it leads every other type by the margin; ranked before
# "full" it lost on wine and olive) and starts from the "full" candidate's axes
# (_rotated.AUTO_AXES_FROM).
AUTO_TYPES = ("spherical", "diag", "tied", "full", "rotated")
# in one feature "diag" and "full" are "spherical"'s model (one variance per component), and
# "rotated" has no axes to turn: "auto" fits them only where d > 1 (auto_types)
ONE_FEATURE_TYPES = ("spherical", "tied")
AUTO_MARGIN = 0.02
# ... or half a standard error of the per-row difference from the best type, when that is
# more: on a few dozen held-out rows a type ahead by less is as likely noise (measured:
# docs/estimator.md); computed where at most AUTO_ROWS rows are held out (beyond, the margin)
AUTO_SE = 0.5
# beyond this many training rows, "auto" fits its candidate types on this many of them,
# chosen by a hash of their values (streaming.sample_hash), in memory and on chunks alike
AUTO_ROWS = 1 << 14
RECORD = ("weights",)
# the first fit stops at COARSE_TOL * tol when merges follow; every merge round is then
# followed by a polishing fit (rounds back to back were measured and not kept:
# docs/estimator.md; 3 cost breast_cancer 0.16-0.24 nats/sample held out, 8 merged close pairs)
COARSE_TOL = 30.0
# with missing values, a polishing fit that more merges may follow runs at most this many
# steps: EM on the observed values slows by the fraction of missing information, and its
# redundant components crawl (wine with 10% gaps: "full" polishes of 200 steps, 23 s for
# the candidate), until the next round merges them. Without gaps polishes end sooner; the
# cap there cost breast_cancer 0.41 nats/sample (real_data_cv), so it is not applied.
POLISH_STEPS = 50
# an "auto" candidate fitted on this many rows (the sum of sample weights) or more stops a
# polishing fit that more merges may follow at COARSE_TOL * tol too (the last one, after a
# round that merges nothing, still fits to tol): there each step is a pass over many rows,
# and those polishes were most of the candidate's fit (10^4 rows, 5 full clusters: 65-94
# steps with 15-17 of 25 components left, the next round merging them anyway). Measured
# and kept to the candidates (docs/estimator.md): in every fit, small data lost held-out
# likelihood (real_data_cv, all sets under 1800 rows: wine -0.31, breast_cancer -0.15) and
# close pairs at 10x the --hard rows kept an extra tied component in 2 of 36 sets.
COARSE_POLISH_ROWS = 1 << 12


def coarse_polish(total: float, candidate: bool) -> bool:
    """Whether a fit on ``total`` rows (sum of sample weights) stops its polishes between
    merges at ``COARSE_TOL * tol``: an "auto" candidate on :data:`COARSE_POLISH_ROWS` or more."""
    return bool(candidate) and total >= COARSE_POLISH_ROWS


# ----------------------------------------------------------------------------- shapes
AUTO_MAX = 25
AUTO_SAMPLES_PER_COMPONENT = 10


def auto_n_components(n_samples: float, covariance_type: str = "diag", n_features: int | None = None) -> int:
    """The ``n_components="auto"`` rule: one component per 10 samples, at least 1, at most 25;
    for ``covariance_type="full"`` in ``n_features`` dimensions d, also no more covariance
    parameters than the data has values (``n d (d + 1) / 2 <= n_samples d``: at most one
    component per ``(d + 1) / 2`` samples).

    25 exceeds Zhou et al.'s ``n = Omega(m log m)`` for every m <= 8 (8 ln 8 = 17) and
    leaves ten samples per component on small data sets. A full component fitted to fewer
    than d + 1 samples has a singular sample covariance, held up by the variance floor
    alone: in wide data (400 rows in d = 200) 25 of them cost 24 merge rounds, one pair
    each, and end at one component (docs/performance.md, twenty-third session).
    """
    n = max(1, min(AUTO_MAX, math.floor(n_samples / AUTO_SAMPLES_PER_COMPONENT)))
    if covariance_type == "full" and n_features is not None:
        n = max(1, min(n, math.floor(2 * n_samples / (n_features + 1))))
    return int(n)


def n_covariance_parameters(covariance_type: str, d: int) -> int:
    """Free covariance parameters of one component: d(d+1)/2 full, d diag, 1 spherical, 0 fixed."""
    return C.public(covariance_type).n_parameters(d)


def bucket_rows(n_rows: int) -> int:
    """Rows are padded (with zero weight) to the next of 4, 5, 6, 7 or 8 times a power of two
    (at least :data:`MIN_ROWS`): four buckets per doubling, at most 25% padding."""
    n = max(MIN_ROWS, int(n_rows))
    unit = 1 << max(0, n.bit_length() - 3)
    return -(-n // unit) * unit


def pad_rows(Z: np.ndarray, w: np.ndarray | None = None, *, at_least: int = 0) -> Any:
    """``Z`` (N, d) and ``w`` (N,) zero-padded to :func:`bucket_rows` rows (at least
    ``at_least``; NumPy)."""
    size = bucket_rows(max(Z.shape[0], at_least))
    Zp = np.zeros((size, Z.shape[1]))
    Zp[: Z.shape[0]] = Z
    if w is None:
        return Zp
    wp = np.zeros(size)
    wp[: Z.shape[0]] = w
    return Zp, wp


def problem(Zp: np.ndarray, wp: np.ndarray, floor: np.ndarray, missing: bool | None = None) -> Problem:
    """The weighted NLL of the padded standardized data, variance floor ``floor`` (d,); NaN
    entries (only present when the estimator allows missing values) are missing, and the
    missing-value E-step runs only when there are any (``missing``: whether it runs; None:
    whether ``Zp`` has a NaN)."""
    missing = bool(np.isnan(Zp).any()) if missing is None else bool(missing)
    return Problem.from_data(Zp, sample_weight=wp, var_floor=floor, missing=missing)


def algorithm(prob: Problem, name: str, step_size: float, n_short: int, prune: float) -> Algorithm:
    """The estimator's algorithm on ``prob``, pruning at ``prune`` after every step.

    ``"polyak"``: short steps in EM's metric (``scaled="mass"``), one EM weight step with
    each, and a long step on the means aimed at ``L* = L - (L_prev - L)`` (the last cycle's
    decrease), undone when it raises the loss."""
    if name == "em":
        alg = em(prob)
    elif name == "gradient_em":
        alg = gradient_em(prob, step_size, weights="em")
    else:
        alg = polyak(prob, step_size, n_short, scaled="mass", loss_star="decrease", weights="em")
    return with_pruning(alg, prune)


def host(tree):
    """A pytree (e.g. a :class:`Mixture`) with its leaves copied to NumPy."""
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def take(student: Mixture, r: int) -> Mixture:
    """Restart ``r`` of a batched host mixture."""
    return jax.tree_util.tree_map(lambda a: a[r], student)


# ----------------------------------------------------------------------------- compiled units
def _data_rows(prob, *args, **kwargs) -> int:
    # data with missing values: XLA's optimised build whatever the size (see _options)
    return max(SMALL_ROWS, LIGHT_ROWS) + 1 if prob.missing else prob.data.shape[0]


def _x_rows(first, X, *args, **kwargs) -> int:
    return X.shape[0]


def start_keys(seed, n_init: int):
    """The ``n_init`` PRNG keys of the restarts, from ``seed``."""
    return jax.random.split(jax.random.key(seed), n_init)


@jit_by_rows(_x_rows, static_argnames=("n", "n_init", "method"), light=True)
def _init(seed, X, w, n_live, *, n: int, n_init: int, method: str):
    """``n_init`` keys from ``seed`` (:func:`start_keys`) and one starting student per key
    (batched; identity covariances: the same compiled draw serves every covariance type)."""
    keys = start_keys(seed, n_init)
    init = functools.partial(initialisation.from_data, n_live=n_live, method=method)
    return jax.vmap(lambda k: init(k, X, w, n))(keys), keys


@jit_by_rows(_x_rows, static_argnames=("kind",), light=True)
def _with_covariances(students: Mixture, X, w, floor, *, kind: str):
    """:func:`overgmm.init.with_data_covariances` of a batch of identity students (run as
    one program: eagerly, each of its dozen small operations compiled on its own cost more)."""
    return initialisation.with_data_covariances(students, X, w, kind, floor)


@jit_by_rows(_data_rows, light=True)
def _summary(prob: Problem, students: Mixture):
    """Loss (B,) and :func:`_covariances` (batched) of a batch of students. The loss is
    summed over row blocks (:func:`overgmm.statistics.loglik_sum`): the problem's own
    ``loss`` reads every row at once, an ``N x n x d`` temporary for full covariances that
    took 1.7x an EM step at 10^6 rows."""
    X, w = prob.data, prob.sample_weight
    assert X is not None and w is not None  # a data problem (problem() builds one)

    def loss(student):
        return -statistics.loglik_sum(student, X, w, missing=prob.missing) / jax.numpy.sum(w)

    return jax.vmap(loss)(students), jax.vmap(_covariances)(students)


def _covariances(student: Mixture):
    """Covariances in natural shape and, for "full", the precision Cholesky factors
    ``U`` (n, d, d) with ``Sigma^{-1} = U U^T`` (None for the other types)."""
    return student.covariances, student.cov_type.precision_factor(student.cov_params)


@jit_by_rows(_data_rows, light=True)
def _merge(prob: Problem, students: Mixture, price):
    """One :func:`overgmm.reduce.merge_round` per student: merged students and pairs merged (B,)."""
    return jax.vmap(reduce.merge_round, in_axes=(None, 0, None))(prob, students, price)


@jit_by_rows(_data_rows, light=True)
def _sums(prob: Problem, students: Mixture):
    """:func:`overgmm.statistics.raw_moments` of a batch of students (leading axis B) on the
    problem's rows."""
    X, w = prob.data, prob.sample_weight
    assert X is not None and w is not None  # a data problem (problem() builds one)
    return jax.vmap(lambda s: statistics.raw_moments(s, X, w))(students)


@jit_by_rows(_x_rows, static_argnames=("missing",), light=True)
def _evaluate(student: Mixture, X, *, missing: bool = False):
    """Log-density (N,) and responsibilities (N, n) of ``X`` (N, d) (``missing``: NaN
    entries are missing, each row's marginal over its observed features); over
    :data:`LIGHT_ROWS` rows in the E-step's row blocks (:func:`overgmm.statistics.block_rows`,
    the largest power of two at most that which divides N): each row on its own, and no
    ``N x n x d`` temporary. (Up to LIGHT_ROWS the temporary is small, and the blocked loop
    cost "auto"'s held-out scoring 0.7 s more compilation in a cold 10^4-row fit.)"""
    n_rows = X.shape[0]
    block = statistics.block_rows(n_rows, student.n_components, student.dim, student.covariance_type, missing)
    if block >= n_rows or n_rows <= LIGHT_ROWS:
        return student.log_posterior(X, missing=missing)
    block = 1 << (block.bit_length() - 1)
    while n_rows % block:
        block //= 2
    ll, resp = jax.lax.map(lambda x: student.log_posterior(x, missing=missing), X.reshape(n_rows // block, block, -1))
    return ll.reshape(n_rows), resp.reshape(n_rows, -1)


@jit_by_rows(lambda student, seed, *, n_samples: n_samples, static_argnames=("n_samples",), light=True)
def _sample(student: Mixture, seed, *, n_samples: int):
    return student.sample(jax.random.key(seed), n_samples, return_labels=True)


@jit_by_rows(_data_rows)
def _stepwise(prob: Problem, student: Mixture, rate, threshold):
    """Stepwise EM on a batch, then pruning: new student, batch loss, new covariances."""
    new, loss = stepwise_em(prob, student, rate)
    new = reduce.prune(new, threshold)
    return new, loss, _covariances(new)


def init_students(seed: int, Zp, wp, n_live: int, floor, *, n: int, n_init: int, method: str, covariance_type: str):
    """Starting students (host, leading axis ``n_init``) and their keys: the means drawn by
    :func:`_init` (one compiled draw for every covariance type), then the data's covariance
    for ``covariance_type`` (:func:`_with_covariances`, a small program per type)."""
    students, keys = _init(np.int32(seed), Zp, wp, np.int32(n_live), n=n, n_init=n_init, method=method)
    students = _with_covariances(students, Zp, wp, floor, kind=C.public(covariance_type).name)
    return host(students), keys


def evaluate(student: Mixture, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-density (N,) and responsibilities (N, n) of standardized ``Z`` (N, d); NaN
    entries are missing (marginal over each row's observed features)."""
    ll, resp = _evaluate(student, pad_rows(Z), missing=bool(np.isnan(Z).any()))
    return np.asarray(ll)[: Z.shape[0]], np.asarray(resp)[: Z.shape[0]]


def sample(student: Mixture, seed: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_samples`` points (n_samples, d) of ``student`` and their components (n_samples,)."""
    z, comp = _sample(student, np.int32(seed), n_samples=int(n_samples))
    return np.asarray(z), np.asarray(comp)


def stepwise(prob: Problem, student: Mixture, rate: float, threshold: float):
    """Host copies of :func:`_stepwise`'s new student, batch loss (float) and :func:`_covariances`."""
    new, loss, cov = _stepwise(prob, student, np.float64(rate), np.float64(threshold))
    return host(new), float(loss), host(cov)


# ----------------------------------------------------------------------------- the fit
class Restart(NamedTuple):
    """The history of one restart, in standardized units.

    Fields:
      losses: ``(n_evaluations,)`` mean NLL at each evaluated student: each segment's
        per-step losses and then its final student's (segments: the main fit, then a
        polishing fit after each round of merges).
      weights: ``(n_steps + 1, n)`` weights after each step (row 0: the start).
      n_steps: steps in all.
      converged: the last segment stopped on ``tol``.
      failed_at: the step at which the restart turned non-finite, -1 if it did not.
      n_merges: pairs merged.
    """

    losses: np.ndarray
    weights: np.ndarray
    n_steps: int
    converged: bool
    failed_at: int
    n_merges: int


class FitResult(NamedTuple):
    """What :func:`fit` returns: every restart's final student (host, leading axis R), its
    :func:`_covariances` (covariances in natural shape, full's precision factors), its
    final loss ``(R,)``, its :class:`Restart` history, and ``best``, the index of the kept
    restart (lowest ``loss + price * live components`` among those that stayed finite; -1
    when none did)."""

    students: Mixture
    covariances: tuple
    loss: np.ndarray
    restarts: list
    best: int


def warm_start(res: FitResult | None, units_from: tuple, units_to: tuple) -> Mixture | None:
    """The students of a fit ``res`` (host, leading axis R), standardized by ``units_from``
    = (shift, scale, floor), as the same mixtures in the standardized units ``units_to``
    (the final fit's): the start of the final fit on all rows from the "auto" candidate
    fitted on a subsample (:func:`overgmm.estimator._auto.choose_type`). None when there is
    none or a restart of it is not finite."""
    if res is None or not np.all(np.isfinite(res.loss)):
        return None
    (shift_f, scale_f), (shift_t, scale_t) = units_from[:2], units_to[:2]
    means = (np.asarray(res.students.means) * scale_f + shift_f - shift_t) / scale_t
    cov = res.students.cov_type.in_units(np.asarray(res.covariances[0]), np.asarray(scale_f / scale_t))
    return host(res.students.replace(means=means).with_covariances(jax.numpy.asarray(cov)))


def auto_types(d: int) -> tuple[str, ...]:
    """The candidate types of ``covariance_type="auto"`` in ``d`` features, in the order of
    :data:`AUTO_TYPES`: all of them, or :data:`ONE_FEATURE_TYPES` where ``d == 1`` (there
    "diag" and "full" fitted "spherical"'s model again, to the same held-out score within
    1e-3, and lost every tie to it; galaxies: docs/performance.md)."""
    return AUTO_TYPES if d > 1 else ONE_FEATURE_TYPES


def simplest_type(scores: dict, se=None, sizes: dict | None = None) -> str:
    """The ``"auto"`` choice from held-out scores (mean log-likelihood per sample by type):
    of the types within ``max(AUTO_MARGIN, AUTO_SE * se(best, k))`` of the best, the one
    with the fewest free parameters (``sizes``, per type, :func:`n_parameters` of its
    fit; None: none counted), the first of :data:`AUTO_TYPES` among equals; ``se(a, b)``
    is the standard error of the mean per-row difference of types a and b on the
    held-out rows (:class:`._auto.HeldMoments`; None: 0); "diag" when none is finite. A
    type without a score (one not tried) is passed over."""
    top = max(scores, key=lambda k: scores[k])
    if not np.isfinite(scores[top]):
        return "diag"

    def margin(k):
        return max(AUTO_MARGIN, 0.0 if se is None or k == top else AUTO_SE * se(top, k))

    tried = [k for k in AUTO_TYPES if k in scores and np.isfinite(scores[k])]
    near = [k for k in tried if scores[k] >= scores[top] - margin(k)]
    if near != ["rotated"]:  # "rotated" only where it leads every other type by the margin
        near = [k for k in near if k != "rotated"]
    return min(near, key=lambda k: (0 if sizes is None else sizes[k], AUTO_TYPES.index(k)))


def live_components(res: FitResult) -> int:
    """Live components (finite log-weight) of the kept restart of a fit ``res``."""
    return int(np.isfinite(np.asarray(res.students.log_weights[res.best])).sum())


def count_parameters(kind: str, d: int, k: int) -> int:
    """Free parameters of ``k`` components of covariance type ``kind`` in ``d`` features:
    means, covariances (shared ones once) and weights, as BIC counts them."""
    t = C.public(kind)
    return k * (d + t.n_parameters(d)) + k - 1 + t.shared_parameters(d)


def n_parameters(res: FitResult, kind: str, d: int) -> int:
    """:func:`count_parameters` of the live components of a fit ``res``."""
    return count_parameters(kind, d, live_components(res))


def _options(prob: Problem) -> dict | None:
    """The solver's compile options: by rows (:mod:`overgmm._xla`), but XLA's defaults for
    data with missing values, whose per-row factors make the run, not the compilation,
    the cost (wine with 10% gaps, full: a fit 27.5 -> 10.9 s, the same fit)."""
    return compile_options(0 if prob.data is None else _data_rows(prob))


def _solve(alg, students, keys, max_iter: int, tol: float):
    # non-finite restarts are reported by the estimator, with what to change (warn=False)
    opts = _options(alg.problem)
    return solve_batch(
        alg, students, max_steps=max_iter, tol=tol, keys=keys, record=RECORD, compiler_options=opts, warn=False
    )


class InMemory(NamedTuple):
    """The fit's data operations on a :class:`~overgmm.Problem` held in memory: ``solve``
    (:func:`overgmm.solve_batch`), ``summary`` (final losses and covariances), ``merge``
    (one :func:`overgmm.reduce.merge_round` per restart) and ``sums`` (the E-step's
    weighted sums, which the "rotated" fit turns its axes by).
    :class:`overgmm.estimator._stream.Streamed` is the same on data in chunks."""

    problem: Problem
    algorithm: Algorithm | None  # None: summaries only

    def solve(self, students, keys, max_iter: int, tol: float):
        return _solve(self.algorithm, students, keys, max_iter, tol)

    def summary(self, students):
        return host(_summary(self.problem, students))

    def merge(self, students, price: float):
        merged, k = _merge(self.problem, students, np.float64(price))
        return host(merged), np.asarray(k)

    def sums(self, students):
        """:class:`overgmm.statistics.Raw` of a batch of students on the rows (host, leading axis B)."""
        return host(_sums(self.problem, students))


def fit(
    engine,
    students: Mixture,
    keys,
    *,
    max_iter: int,
    tol: float,
    price: float,
    progress=None,
    polish_steps=None,
    coarse_polish: bool = False,
    compact: bool = False,
    widths=None,
) -> FitResult:
    """Fit the batched ``students`` (leading axis R) until ``|Delta loss| < tol`` or
    ``max_iter`` steps; then, if ``price > 0`` (mean log-likelihood per sample), merge
    rounds, each followed by a polishing fit of the restarts that merged something, until
    a round merges nothing.
    With merging (``price > 0``) the first fit stops at ``COARSE_TOL * tol`` and the first
    polishing fit always runs, so every kept restart ends fitted to ``tol``. A restart
    that turns non-finite stops there (``failed_at``).
    ``polish_steps``: the most steps of a polishing fit that more merges may follow (None:
    ``max_iter``); one cut there before ``tol`` is fitted on once a round merges nothing.
    ``coarse_polish``: such a polishing fit also stops at ``COARSE_TOL * tol``
    (:func:`coarse_polish`); the restarts it leaves coarse are fitted on to ``tol`` once a
    round merges nothing.
    ``compact``: after a merge round, drop the dead component slots whenever the live ones
    fit a smaller width (:mod:`._slots`, :func:`._slots.compact`); the result is expanded
    back to the starting width; ``widths``: a :class:`._precompile.Precompiler` of (type, width) jobs,
    claimed before the first fit at each width and closed at the end (without waiting).
    ``engine``: :class:`InMemory` or :class:`~overgmm.estimator._stream.Streamed`;
    ``progress``: a :class:`~overgmm.estimator._progress.Progress` told of every segment."""
    progress = Progress(False) if progress is None else progress
    R = students.means.shape[0]
    segs: list[dict[str, Any]] = [
        {"losses": [], "weights": [], "steps": 0, "status": 0, "failed_at": -1, "merges": 0} for _ in range(R)
    ]

    slots = _slots.Slots(students.means.shape[1], R)

    def book(sol, loss_end, which):
        loss, wts = sol.loss, sol.records["weights"]
        for r in np.flatnonzero(which):
            s, t = segs[r], int(sol.n_steps[r])
            s["losses"] += [loss[r, :t], loss_end[r : r + 1]]
            s["weights"].append(slots.weights(r, wts[r, : t + 1] if not s["weights"] else wts[r, 1 : t + 1]))
            if int(sol.status[r]) == 1:
                s["failed_at"] = s["steps"] + int(sol.failed_at[r])
            s["steps"] += t
            s["status"] = int(sol.status[r])

    # with merging to come, the first fit stops at COARSE_TOL * tol: its redundant components
    # crawl (the over-parameterized regime), and merging them ends the crawl sooner
    progress.begin(max_iter)
    sol = engine.solve(students, keys, max_iter, tol * COARSE_TOL if price > 0 else tol)
    current = host(sol.final.student)
    loss_end, cov = engine.summary(current)
    progress.end(int(np.max(sol.n_steps)), float(np.nanmin(loss_end)))
    book(sol, loss_end, np.ones(R, bool))
    ok = (sol.status != 1) & np.isfinite(loss_end)
    coarse = np.full(R, price > 0)  # still to be fitted to tol

    def where(do, a, b):
        """``a`` for the restarts in ``do``, ``b`` for the others (pytrees with leading axis R)."""
        return jax.tree_util.tree_map(lambda x, y: np.where(do.reshape(do.shape + (1,) * (x.ndim - 1)), x, y), a, b)

    while price > 0:
        merged, k = engine.merge(current, price)
        do = ok & ((k > 0) | coarse)
        if not do.any():
            break
        if compact:  # the live components to the front, the dead slots dropped (_slots)
            nxt = where(do, merged, current)
            to = _slots.width(nxt, ok)
            if to < slots.width:
                order = slots.narrow(nxt, cov, to)
                merged, _ = slots.take(merged, cov, order)
                current, cov = slots.take(current, cov, order)
                if widths is not None:
                    widths.claim_width(to)
        # a polishing fit that more merges may follow stops after polish_steps; one cut there
        # before tol is fitted on (max_iter) once a round merges nothing
        more = bool((k[do] > 0).any())
        steps = min(max_iter, polish_steps or max_iter) if more else max_iter
        for r in np.flatnonzero(do):
            segs[r]["merges"] += int(k[r])
        progress.begin(steps)
        sol = engine.solve(merged, keys, steps, tol * COARSE_TOL if more and coarse_polish else tol)
        cut = (np.asarray(sol.status)[do] == 2) & (steps < max_iter)
        coarse[do] = cut | (more and coarse_polish)
        polished = host(sol.final.student)
        new_loss, new_cov = engine.summary(polished)
        progress.end(int(np.max(sol.n_steps[do])), float(np.nanmin(new_loss[do])))
        book(sol, new_loss, do)
        current, loss_end, cov = where(do, (polished, new_loss, new_cov), (current, loss_end, cov))
        ok = ok & ~(do & ((sol.status == 1) | ~np.isfinite(new_loss)))

    current, cov = slots.student(current), slots.covariances(cov)
    if widths is not None:  # the widths not reached are not compiled (one in progress ends)
        widths.close(wait=False)
    for r in np.flatnonzero(~ok):
        if segs[r]["failed_at"] < 0:
            segs[r]["failed_at"] = segs[r]["steps"]
    live = np.sum(current.log_weights > -np.inf, axis=1)
    score = np.where(ok, loss_end + price * live, np.inf)
    best = int(np.argmin(score)) if ok.any() else -1
    restarts = [
        Restart(
            np.concatenate(s["losses"]),
            np.concatenate(s["weights"]),
            s["steps"],
            s["status"] == 0,
            s["failed_at"],
            s["merges"],
        )
        for s in segs
    ]
    return FitResult(current, cov, loss_end, restarts, best)
