"""The only loop. Two ways to run an algorithm, both compiled once per (algorithm config,
loop settings, shapes, dtypes) and cached, so a second run of the same shape does not
recompile (:func:`trace_count` counts the traces):

* :func:`run` / :func:`run_batch`: a fixed number of steps T inside one ``lax.scan``, with
  the measures of SPEC section 5 recorded every ``stride`` steps (the papers' runs);
* :func:`solve` / :func:`solve_batch`: a stopping rule (the loss changed by less than
  ``tol``, or ``max_steps``) inside one ``lax.while_loop``, the loss recorded at each step.

Batches of independent trials run in one call via ``vmap``, over students and keys and,
optionally, over problems (each trial its own data: ``problems=`` a stacked problem).

A step that produces a non-finite state is not applied: the trial freezes at its last
finite state, its ``status`` becomes 1 and ``failed_at`` records the step, and
everything recorded before is kept (a warning is raised at the end, not an error).
Status codes: 0 ok (for :func:`solve`: converged), 1 non-finite, 2 max steps reached.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from overgmm import _mappings
from overgmm import _validation as v
from overgmm._executables import persistent
from overgmm.algorithms.base import Algorithm, Method, State
from overgmm.measures import ACTIVE_THRESHOLD, student_measures, teacher_measures
from overgmm.mixture import Mixture

STATUS = {0: "ok", 1: "non-finite state (frozen at the last finite one)", 2: "max steps reached"}
RECORDABLE = ("means", "weights", "log_weights", "covariances")


@dataclasses.dataclass(frozen=True)
class History:
    """What a run recorded.

    Attributes:
      columns: name -> array of shape ``(n_records, ...)`` (``(batch, n_records, ...)``
        for a batch). Always: ``step``, ``grad_evals``, ``loss``, ``grad_norm`` (norm of
        the gradient in the means), ``polyak`` (a long step was taken since the last
        record), ``active``, ``max_norm``, ``U``; with a teacher also ``param_dist``,
        ``bias`` and ``dispersion`` (per teacher component, trailing axis m), and
        ``weight_mismatch``.
      final: the final :class:`~overgmm.algorithms.State` (batched for a batch).
        ``record=`` adds per-record fields (``means``, ``weights``, ``log_weights``,
        ``covariances``).
      status: 0 (ok) or 1 (non-finite), per trial.
      failed_at: step at which a trial failed, -1 if it did not.
      algorithm: the algorithm's name with its settings.
      backend: which objective and expectation backend produced the numbers.
    """

    columns: dict
    final: State
    status: np.ndarray
    failed_at: np.ndarray
    algorithm: str
    backend: str

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @property
    def ok(self) -> bool:
        return bool(np.all(self.status == 0))

    @property
    def status_text(self) -> list[str]:
        """The meaning of each trial's status code."""
        return [STATUS[int(c)] for c in np.atleast_1d(self.status)]

    def to_rows(self) -> list[dict]:
        """Tidy rows (one per record and trial), per-cluster arrays split into
        ``bias_0, bias_1, ...`` and recorded matrices into ``means_0_0, means_0_1, ...``;
        ready for ``pandas.DataFrame``."""
        cols = self.columns
        batched = cols["loss"].ndim == 2
        n_trials = cols["loss"].shape[0] if batched else 1
        rows = []
        for b in range(n_trials):
            for k in range(cols["loss"].shape[-1]):
                row = {"trial": b, "algorithm": self.algorithm, "backend": self.backend}
                for name, arr in cols.items():
                    val = arr[b] if batched else arr
                    val = val[k]
                    if np.ndim(val) == 0:
                        row[name] = val.item()
                    else:  # per-cluster measures and record= fields: name_i (or name_i_j)
                        arr = np.asarray(val)
                        for idx in np.ndindex(arr.shape):
                            row[name + "".join(f"_{j}" for j in idx)] = float(arr[idx])
                rows.append(row)
        return rows


def _finite(student: Mixture) -> jax.Array:
    lw = student.log_weights
    ok = jnp.all(jnp.isfinite(student.means)) & ~jnp.any(jnp.isnan(lw) | (lw == jnp.inf))
    if student.cov_params is not None:
        ok = ok & jnp.all(jnp.isfinite(student.cov_params))
    return ok


def _recorded(student: Mixture, record: tuple[str, ...]) -> dict:
    return {name: getattr(student, name) for name in record}


def _check_record(record) -> tuple[str, ...]:
    record = (record,) if isinstance(record, str) else tuple(record)
    for name in record:
        v.check_choice(name, RECORDABLE, "record field")
    return record


def _measure(problem, state: State, threshold: float, record: tuple[str, ...]) -> tuple[dict, tuple]:
    """The records of SPEC section 5 at ``state``, and the evaluation made there (which the
    step that starts from ``state`` reuses: :meth:`Problem.measure`, :meth:`Problem.remember`)."""
    key = jax.random.fold_in(state.key, 0x5EED)
    loss, grad_means, evaluation = problem.measure(state.student, key)
    rec = {
        "step": state.step,
        "grad_evals": state.grad_evals,
        "loss": loss,
        "grad_norm": jnp.sqrt(jnp.sum(grad_means**2)),
    }
    rec.update(student_measures(state.student, threshold))
    if problem.teacher is not None:
        rec.update(teacher_measures(problem.teacher, state.student))
    rec.update(_recorded(state.student, record))
    return rec, evaluation


def _guarded(method: Method, problem, state, status, failed_at):
    """One step, not applied when it produces a non-finite state."""
    new = method.step(problem, state)
    fin = _finite(new.student)
    good = fin & (status == 0)
    newly_bad = (~fin) & (status == 0)
    state = jax.tree_util.tree_map(lambda a, b: jnp.where(good, a, b), new, state)
    failed_at = jnp.where(newly_bad, new.step, failed_at)
    status = jnp.where(newly_bad, 1, status)
    return state, status, failed_at, good, new


_TRACES: collections.Counter = collections.Counter()
_CACHE: collections.OrderedDict = collections.OrderedDict()
CACHE_SIZE = 32  # compiled loops kept (least recently used dropped: bounded memory in long sessions)


def trace_count(kind: str | None = None) -> int:
    """How many times the driver traced (compiled) a loop, in all or of one kind
    (``"run"`` or ``"solve"``): a second run of the same shape adds nothing."""
    return sum(_TRACES.values()) if kind is None else _TRACES[kind]


def _trajectory(method: Method, n_steps: int, stride: int, threshold: float, record: tuple[str, ...]):
    n_records = n_steps // stride

    def one(problem, student: Mixture, key: jax.Array):
        _TRACES["run"] += 1
        state = method.init(problem, student, key)

        def inner(_, carry):
            state, status, failed_at, long_seen = carry
            state, status, failed_at, good, new = _guarded(method, problem, state, status, failed_at)
            return state, status, failed_at, long_seen | (good & method.long_step(new))

        def outer(carry, _):
            state, status, failed_at, measured = carry
            if stride == 1:
                # the step reuses the evaluation just measured at its start (half the
                # evaluations, the same numbers); with a longer stride it would save one in
                # stride + 1 and trace the step twice: measured slower (docs/performance.md)
                known = problem.remember(state.student, measured)
                state, status, failed_at, good, new = _guarded(method, known, state, status, failed_at)
                long_seen = good & method.long_step(new)
            else:
                state, status, failed_at, long_seen = jax.lax.fori_loop(
                    0, stride, inner, (state, status, failed_at, jnp.zeros((), bool))
                )
            rec, measured = _measure(problem, state, threshold, record)
            rec["polyak"] = long_seen
            return (state, status, failed_at, measured), rec

        rec0, measured = _measure(problem, state, threshold, record)
        rec0["polyak"] = jnp.zeros((), bool)
        init = (state, jnp.zeros((), jnp.int32), jnp.full((), -1, jnp.int32), measured)
        (state, status, failed_at, _), recs = jax.lax.scan(outer, init, None, length=n_records)
        recs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), rec0, recs)
        return recs, state, status, failed_at

    return one


class Carry(NamedTuple):
    """The carry of :func:`solve`'s loop for one trial (a pytree; batched, every leaf gains
    a leading axis).

    Fields:
      state: the method's :class:`~overgmm.algorithms.State`.
      status: ``()`` int32, 0 while stepping (and when converged), 1 non-finite.
      failed_at: ``()`` int32, the step at which the trial turned non-finite, -1 if not.
      converged: ``()`` bool, the stopping rule ``|Delta loss| < tol`` held.
      done: ``()`` bool, converged or out of steps.
      losses: ``(max_steps,)`` the loss evaluated by each step, NaN after the last.
      records: name -> ``(max_steps + 1, ...)`` the recorded fields after each step.
    """

    state: State
    status: jax.Array
    failed_at: jax.Array
    converged: jax.Array
    done: jax.Array
    losses: jax.Array
    records: dict


def solve_init(method: Method, max_steps: int, record: tuple[str, ...], problem, student: Mixture, key: jax.Array):
    """The :class:`Carry` of :func:`solve`'s loop for one trial, before its first step."""
    state = method.init(problem, student, key)
    losses = jnp.full((max_steps,), jnp.nan, student.means.dtype)
    recs = {
        name: jnp.zeros((max_steps + 1,) + a.shape, a.dtype).at[0].set(a)
        for name, a in _recorded(student, record).items()
    }
    false = jnp.zeros((), bool)
    return Carry(state, jnp.zeros((), jnp.int32), jnp.full((), -1, jnp.int32), false, false, losses, recs)


def solve_active(carry: Carry) -> jax.Array:
    """Whether a trial of :func:`solve`'s loop still steps (ok and not done)."""
    return (carry.status == 0) & ~carry.done


def solve_step(method: Method, max_steps: int, record: tuple[str, ...], problem, tol: jax.Array, carry: Carry) -> Carry:
    """One step of :func:`solve`'s loop on its carry (:func:`solve_init`): the guarded step,
    the loss and records booked, the stopping rule judged. :mod:`overgmm.streaming` runs
    the same step from a host loop."""
    state, status, failed_at, losses, recs = carry.state, carry.status, carry.failed_at, carry.losses, carry.records
    prev_loss, prev_long = state.loss, method.long_step(state)
    state, status, failed_at, good, new = _guarded(method, problem, state, status, failed_at)
    bad_loss = ~jnp.isfinite(new.loss) & (status == 0)
    status = jnp.where(bad_loss, 1, status)
    failed_at = jnp.where(bad_loss, new.step, failed_at)
    k = new.step - 1
    losses = losses.at[k].set(new.loss)
    now = _recorded(state.student, record)
    recs = {name: a.at[k + 1].set(now[name]) for name, a in recs.items()}
    # a Polyak long step (or the step after one) is not judged for convergence
    judged = (k > 0) & ~method.long_step(new) & ~prev_long
    conv = judged & (jnp.abs(new.loss - prev_loss) < tol)
    done = conv | (state.step >= max_steps)
    return Carry(state, status, failed_at, conv, done, losses, recs)


def solve_result(carry: Carry):
    """``(losses, records, state, status, failed_at)`` from a finished :class:`Carry`
    (status 2 where the budget ran out); :func:`solution` turns them into a :class:`Solution`."""
    status = jnp.where((carry.status == 0) & ~carry.converged, 2, carry.status)
    return carry.losses, carry.records, carry.state, status, carry.failed_at


def _solver(method: Method, max_steps: int, record: tuple[str, ...]):
    def one(problem, student: Mixture, key: jax.Array, tol: jax.Array):
        _TRACES["solve"] += 1
        init = solve_init(method, max_steps, record, problem, student, key)
        carry = jax.lax.while_loop(solve_active, lambda c: solve_step(method, max_steps, record, problem, tol, c), init)
        return solve_result(carry)

    return one


_CACHE_LOCK = threading.Lock()  # precompile_solve_batch may run in a background thread


def _release_loops() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


_mappings.on_release(_release_loops)


def _compiled(kind: str, method: Method, batched: bool, batched_problem: bool, *settings, compiler_options=None):
    _mappings.release_if_crowded()  # a long session's programs, before the process runs out of mappings
    with _CACHE_LOCK:
        return _compiled_locked(kind, method, batched, batched_problem, *settings, compiler_options=compiler_options)


def _compiled_locked(kind: str, method: Method, batched: bool, batched_problem: bool, *settings, compiler_options=None):
    options = tuple(sorted((compiler_options or {}).items()))
    cache_key = (kind, method, batched, batched_problem, settings, options)
    fn = _CACHE.get(cache_key)
    if fn is not None:
        _CACHE.move_to_end(cache_key)
    else:
        one = _trajectory(method, *settings) if kind == "run" else _solver(method, *settings)
        if batched:
            in_axes = (0 if batched_problem else None, 0, 0) + ((None,) if kind == "solve" else ())
            one = jax.vmap(one, in_axes=in_axes)
        # stored on first use (overgmm._executables): a new process loads it compiled
        fn = _CACHE[cache_key] = persistent(one, f"driver.{cache_key!r}", compiler_options=dict(options) or None)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return fn


def _check_run_args(n_steps, stride):
    n_steps = v.check_positive_int(n_steps, "n_steps")
    stride = v.check_positive_int(stride, "stride")
    if n_steps % stride:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of stride ({stride})")
    return n_steps, stride


def _warn_failed(status, failed_at, stacklevel=4):
    if np.any(np.asarray(status) == 1):
        bad = np.flatnonzero(np.atleast_1d(status) == 1)
        steps = np.atleast_1d(failed_at)[bad]
        warnings.warn(
            f"{len(bad)} trial(s) reached a non-finite state (first at step {int(steps.min())}); "
            "they were frozen at their last finite state and the history up to there is kept. "
            "Try a smaller step size or a more accurate backend.",
            RuntimeWarning,
            stacklevel=stacklevel,
        )


def _finish(algorithm, student_for_basis, recs, state, status, failed_at) -> History:
    cols = {k: np.asarray(a) for k, a in recs.items()}
    status = np.asarray(status)
    failed_at = np.asarray(failed_at)
    _warn_failed(status, failed_at)
    return History(cols, state, status, failed_at, algorithm.name, algorithm.problem.describe(student_for_basis))


def _check_algorithm(algorithm) -> None:
    if not isinstance(algorithm, Algorithm):
        raise TypeError(
            f"algorithm must be an overgmm Algorithm (from og.em, og.gradient_em, og.polyak, ...), "
            f"got {type(algorithm).__name__}"
        )


def run(
    algorithm: Algorithm,
    student: Mixture,
    n_steps: int,
    *,
    key: jax.Array | None = None,
    stride: int = 1,
    threshold: float = ACTIVE_THRESHOLD,
    record=(),
) -> History:
    """Run ``n_steps`` steps of ``algorithm`` from ``student`` in one compiled loop.

    Args:
      algorithm: from :mod:`overgmm.algorithms`.
      student: the initial :class:`~overgmm.Mixture`.
      n_steps: number of steps T (a multiple of ``stride``).
      key: PRNG key (needed for fresh Monte Carlo; default ``key(0)``).
      stride: record every ``stride`` steps (records at 0, stride, ..., T).
      threshold: weight above which a component counts as active.
      record: extra per-record fields, any of ``"means"``, ``"weights"``,
        ``"log_weights"``, ``"covariances"``.

    Returns:
      A :class:`History` with ``T / stride + 1`` records.
    """
    _check_algorithm(algorithm)
    n_steps, stride = _check_run_args(n_steps, stride)
    record = _check_record(record)
    algorithm.problem.check_student(student)
    algorithm.method.check(algorithm.problem, student)
    key = jax.random.key(0) if key is None else v.check_key(key)
    fn = _compiled("run", algorithm.method, False, False, n_steps, stride, float(threshold), record)
    return _finish(algorithm, student, *fn(algorithm.problem, student, key))


def _check_batch(algorithm, students, keys, problems):
    if students.means.ndim != 3:
        raise ValueError(
            f"students must carry a batch axis: means of shape (batch, n, d), got {tuple(students.means.shape)}"
        )
    b = students.means.shape[0]
    problem = algorithm.problem if problems is None else problems
    dim = (
        problem.dim
        if problems is None
        else (problems.teacher.means.shape[-1] if problems.teacher is not None else problems.data.shape[-1])
    )
    if students.means.shape[-1] != dim:
        raise ValueError(f"students have dimension {students.means.shape[-1]}, the problem {dim}")
    if problems is not None:
        sizes = {a.shape[0] for a in jax.tree_util.tree_leaves(problems) if hasattr(a, "shape") and a.ndim > 0}
        if sizes != {b}:
            raise ValueError(
                f"problems must carry the same batch axis as the students ({b}), got sizes {sorted(sizes)}"
            )
    first = jax.tree_util.tree_map(lambda a: a[0], students)
    algorithm.method.check(algorithm.problem, first)
    keys = jax.random.split(jax.random.key(0), b) if keys is None else v.check_key(keys, "keys")
    if keys.shape[0] != b:
        raise ValueError(f"need {b} keys, one per trial, got {keys.shape[0]}")
    return b, keys, first


def run_batch(
    algorithm: Algorithm,
    students: Mixture,
    n_steps: int,
    *,
    keys: jax.Array | None = None,
    stride: int = 1,
    threshold: float = ACTIVE_THRESHOLD,
    record=(),
    problems=None,
) -> History:
    """Run a batch of independent trials in one compiled ``vmap`` call.

    Args:
      students: a :class:`~overgmm.Mixture` whose arrays carry a leading batch axis
        B (means (B, n, d), log-weights (B, n)), e.g. from :func:`stack`.
      keys: B PRNG keys (default ``split(key(0), B)``).
      problems: optionally one problem per trial, stacked along a leading axis B
        (:func:`stack` of problems of one shape, e.g. each trial's own sample);
        default: ``algorithm.problem`` for all.

    Returns:
      A :class:`History` whose columns have shape ``(B, n_records, ...)``.
    """
    _check_algorithm(algorithm)
    n_steps, stride = _check_run_args(n_steps, stride)
    record = _check_record(record)
    b, keys, first = _check_batch(algorithm, students, keys, problems)
    fn = _compiled("run", algorithm.method, True, problems is not None, n_steps, stride, float(threshold), record)
    problem = algorithm.problem if problems is None else problems
    return _finish(algorithm, first, *fn(problem, students, keys))


@dataclasses.dataclass(frozen=True)
class Solution:
    """What :func:`solve` returns (arrays carry a leading batch axis for :func:`solve_batch`).

    Attributes:
      final: the final :class:`~overgmm.algorithms.State` (its ``student`` is the result).
      loss: ``(max_steps,)`` the loss evaluated by each step (at the student it started
        from), NaN after the last step.
      records: name -> ``(max_steps + 1, ...)`` the ``record=`` fields after each step
        (row 0: the start); rows after the last step are zeros.
      n_steps: steps applied.
      status: 0 converged (``|Delta loss| < tol``), 1 non-finite, 2 max steps reached.
      failed_at: step at which a trial turned non-finite, -1 if it did not.
      algorithm: the algorithm's name with its settings.
    """

    final: State
    loss: np.ndarray
    records: dict
    n_steps: np.ndarray
    status: np.ndarray
    failed_at: np.ndarray
    algorithm: str

    @property
    def converged(self) -> np.ndarray:
        return self.status == 0

    @property
    def status_text(self) -> list[str]:
        return [STATUS[int(c)] for c in np.atleast_1d(self.status)]


def solution(algorithm, losses, recs, state, status, failed_at, *, warn: bool = True) -> Solution:
    """The :class:`Solution` from :func:`solve_result`'s arrays (batched or not), the one
    place where it is assembled; ``algorithm``: anything with a ``name`` (an
    :class:`~overgmm.algorithms.Algorithm` or a method). ``warn``: a warning for trials
    that turned non-finite."""
    status = np.asarray(status)
    failed_at = np.asarray(failed_at)
    if warn:
        _warn_failed(status, failed_at)
    return Solution(
        state,
        np.asarray(losses),
        {k: np.asarray(a) for k, a in recs.items()},
        np.asarray(state.step),
        status,
        failed_at,
        algorithm.name,
    )


def _check_tol(tol) -> float:
    try:
        tol = float(tol)
    except (TypeError, ValueError) as err:
        raise TypeError(f"tol must be a number, got {tol!r}") from err
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    return tol


def solve(
    algorithm: Algorithm,
    student: Mixture,
    *,
    max_steps: int,
    tol: float = 0.0,
    key: jax.Array | None = None,
    record=(),
    compiler_options: dict | None = None,
    warn: bool = True,
) -> Solution:
    """Run ``algorithm`` from ``student`` until the loss changes by less than ``tol`` between
    two steps (not judged at or right after a Polyak long step), or ``max_steps`` steps.

    One compiled ``while_loop``, cached on (algorithm config, ``max_steps``, ``record``,
    ``compiler_options``, shapes): ``tol`` is an argument and does not recompile.
    ``compiler_options`` go to XLA (e.g. ``{"xla_backend_optimization_level": 0}`` compiles
    about twice as fast and runs slower: worth it for small data). ``warn=False`` leaves
    non-finite trials to the caller (``Solution.status``) without a warning.

    Returns:
      A :class:`Solution`.
    """
    _check_algorithm(algorithm)
    max_steps = v.check_positive_int(max_steps, "max_steps")
    record = _check_record(record)
    algorithm.problem.check_student(student)
    algorithm.method.check(algorithm.problem, student)
    key = jax.random.key(0) if key is None else v.check_key(key)
    fn = _compiled("solve", algorithm.method, False, False, max_steps, record, compiler_options=compiler_options)
    return solution(algorithm, *fn(algorithm.problem, student, key, np.float64(_check_tol(tol))), warn=warn)


def solve_batch(
    algorithm: Algorithm,
    students: Mixture,
    *,
    max_steps: int,
    tol: float = 0.0,
    keys: jax.Array | None = None,
    record=(),
    problems=None,
    compiler_options: dict | None = None,
    warn: bool = True,
) -> Solution:
    """:func:`solve` for a batch of trials (leading axis B) in one ``vmap`` call; see
    :func:`run_batch` for ``keys`` and ``problems``."""
    _check_algorithm(algorithm)
    max_steps = v.check_positive_int(max_steps, "max_steps")
    record = _check_record(record)
    _, keys, _ = _check_batch(algorithm, students, keys, problems)
    fn = _compiled(
        "solve", algorithm.method, True, problems is not None, max_steps, record, compiler_options=compiler_options
    )
    problem = algorithm.problem if problems is None else problems
    return solution(algorithm, *fn(problem, students, keys, np.float64(_check_tol(tol))), warn=warn)


def precompile_solve_batch(
    algorithm: Algorithm,
    students: Mixture,
    *,
    max_steps: int,
    keys: jax.Array,
    record=(),
    compiler_options: dict | None = None,
) -> None:
    """Compile :func:`solve_batch`'s loop for these shapes without running it. ``students``
    may hold ``jax.ShapeDtypeStruct`` leaves. The program lands in the persistent
    compilation cache (when it is on), where a later :func:`solve_batch` on the same shapes
    finds it: the estimator compiles its next covariance types this way in a background
    thread while it fits the first."""
    fn = _compiled(
        "solve", algorithm.method, True, False, max_steps, _check_record(record), compiler_options=compiler_options
    )
    fn.precompile(algorithm.problem, students, keys, np.float64(_check_tol(1.0)))


def stack(items: list):
    """Stack mixtures (or problems) of equal shape into one with a leading batch axis."""
    if not items:
        raise ValueError("stack needs at least one mixture")
    shapes = {tuple(np.shape(a) for a in jax.tree_util.tree_leaves(s)) for s in items}
    treedefs = {jax.tree_util.tree_structure(s) for s in items}
    if len(shapes) != 1 or len(treedefs) != 1:
        what = "mixtures" if isinstance(items[0], Mixture) else "items"
        raise ValueError(f"all {what} must have the same shape and kind, got shapes {sorted(shapes)}")
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *items)
