"""The only loop: T steps of an algorithm inside one compiled ``lax.scan``, with the
measures of SPEC section 5 recorded every ``stride`` steps, and a batch of
independent trials in one call via ``vmap``.

A step that produces a non-finite state is not applied: the trial freezes at its
last finite state, its ``status`` becomes 1 and ``failed_at`` records the step, and
everything recorded before is kept (a warning is raised at the end, not an error).
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from overgmm import _validation as v
from overgmm.algorithms.base import Algorithm, State
from overgmm.measures import ACTIVE_THRESHOLD, student_measures, teacher_measures
from overgmm.mixture import Mixture

STATUS = {0: "ok", 1: "non-finite state (frozen at the last finite one)"}


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
        ``bias_0, bias_1, ...``; ready for ``pandas.DataFrame``."""
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
                    else:
                        for j, x in enumerate(np.asarray(val)):
                            row[f"{name}_{j}"] = float(x)
                rows.append(row)
        return rows


def _finite(student: Mixture) -> jax.Array:
    lw = student.log_weights
    return jnp.all(jnp.isfinite(student.means)) & ~jnp.any(jnp.isnan(lw) | (lw == jnp.inf))


def _measure(algorithm: Algorithm, state: State, threshold: float) -> dict:
    problem = algorithm.problem
    key = jax.random.fold_in(state.key, 0x5EED)
    loss, g = problem.value_and_grad(state.student, key)
    rec = {
        "step": state.step,
        "grad_evals": state.grad_evals,
        "loss": loss,
        "grad_norm": jnp.sqrt(jnp.sum(g.means**2)),
    }
    rec.update(student_measures(state.student, threshold))
    if problem.teacher is not None:
        rec.update(teacher_measures(problem.teacher, state.student))
    return rec


def _trajectory(algorithm: Algorithm, n_steps: int, stride: int, threshold: float):
    n_records = n_steps // stride

    def one(student: Mixture, key: jax.Array):
        state = algorithm.init(student, key)

        def inner(_, carry):
            state, status, failed_at, long_seen = carry
            new = algorithm.step(state)
            good = _finite(new.student) & (status == 0)
            newly_bad = (~_finite(new.student)) & (status == 0)
            state = jax.tree_util.tree_map(lambda a, b: jnp.where(good, a, b), new, state)
            failed_at = jnp.where(newly_bad, new.step, failed_at)
            status = jnp.where(newly_bad, 1, status)
            return state, status, failed_at, long_seen | (good & new.polyak)

        def outer(carry, _):
            state, status, failed_at = carry
            state, status, failed_at, long_seen = jax.lax.fori_loop(
                0, stride, inner, (state, status, failed_at, jnp.zeros((), bool))
            )
            rec = _measure(algorithm, state, threshold)
            rec["polyak"] = long_seen
            return (state, status, failed_at), rec

        rec0 = _measure(algorithm, state, threshold)
        rec0["polyak"] = jnp.zeros((), bool)
        init = (state, jnp.zeros((), jnp.int32), jnp.full((), -1, jnp.int32))
        (state, status, failed_at), recs = jax.lax.scan(outer, init, None, length=n_records)
        recs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), rec0, recs)
        return recs, state, status, failed_at

    return one


def _check_run_args(n_steps, stride):
    n_steps = v.check_positive_int(n_steps, "n_steps")
    stride = v.check_positive_int(stride, "stride")
    if n_steps % stride:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of stride ({stride})")
    return n_steps, stride


def _finish(algorithm, student_for_basis, recs, state, status, failed_at) -> History:
    cols = {k: np.asarray(a) for k, a in recs.items()}
    status = np.asarray(status)
    failed_at = np.asarray(failed_at)
    if np.any(status != 0):
        bad = np.flatnonzero(np.atleast_1d(status))
        steps = np.atleast_1d(failed_at)[bad]
        warnings.warn(
            f"{len(bad)} trial(s) reached a non-finite state (first at step {int(steps.min())}); "
            "they were frozen at their last finite state and the history up to there is kept. "
            "Try a smaller step size or a more accurate backend.",
            RuntimeWarning,
            stacklevel=3,
        )
    return History(cols, state, status, failed_at, algorithm.name, algorithm.problem.describe(student_for_basis))


def run(
    algorithm: Algorithm,
    student: Mixture,
    n_steps: int,
    *,
    key: jax.Array | None = None,
    stride: int = 1,
    threshold: float = ACTIVE_THRESHOLD,
) -> History:
    """Run ``n_steps`` steps of ``algorithm`` from ``student`` in one compiled loop.

    Args:
      algorithm: from :mod:`overgmm.algorithms`.
      student: the initial :class:`~overgmm.Mixture`.
      n_steps: number of steps T (a multiple of ``stride``).
      key: PRNG key (needed for fresh Monte Carlo; default ``key(0)``).
      stride: record every ``stride`` steps (records at 0, stride, ..., T).
      threshold: weight above which a component counts as active.

    Returns:
      A :class:`History` with ``T / stride + 1`` records.
    """
    n_steps, stride = _check_run_args(n_steps, stride)
    algorithm.problem.check_student(student)
    key = jax.random.key(0) if key is None else key
    fn = jax.jit(_trajectory(algorithm, n_steps, stride, threshold))
    return _finish(algorithm, student, *fn(student, key))


def run_batch(
    algorithm: Algorithm,
    students: Mixture,
    n_steps: int,
    *,
    keys: jax.Array | None = None,
    stride: int = 1,
    threshold: float = ACTIVE_THRESHOLD,
) -> History:
    """Run a batch of independent trials in one compiled ``vmap`` call.

    Args:
      students: a :class:`~overgmm.Mixture` whose arrays carry a leading batch axis
        B (means (B, n, d), log-weights (B, n)), e.g. from :func:`stack`.
      keys: B PRNG keys (default ``split(key(0), B)``).

    Returns:
      A :class:`History` whose columns have shape ``(B, n_records, ...)``.
    """
    n_steps, stride = _check_run_args(n_steps, stride)
    if students.means.ndim != 3:
        raise ValueError(
            f"students must carry a batch axis: means of shape (batch, n, d), got {tuple(students.means.shape)}"
        )
    b = students.means.shape[0]
    if students.means.shape[-1] != algorithm.problem.dim:
        raise ValueError(f"students have dimension {students.means.shape[-1]}, the problem {algorithm.problem.dim}")
    keys = jax.random.split(jax.random.key(0), b) if keys is None else keys
    if keys.shape[0] != b:
        raise ValueError(f"need {b} keys, one per trial, got {keys.shape[0]}")
    fn = jax.jit(jax.vmap(_trajectory(algorithm, n_steps, stride, threshold)))
    first = jax.tree_util.tree_map(lambda a: a[0], students)
    return _finish(algorithm, first, *fn(students, keys))


def stack(students: list[Mixture]) -> Mixture:
    """Stack mixtures of equal shape into one with a leading batch axis."""
    if not students:
        raise ValueError("stack needs at least one mixture")
    shapes = {s.means.shape for s in students}
    if len(shapes) != 1:
        raise ValueError(f"all mixtures must have the same shape, got {sorted(shapes)}")
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *students)
