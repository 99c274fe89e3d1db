"""What every algorithm shares: its state record, the static config with its pure
``init``/``step``, the bound pair the driver runs, and the checks (SPEC section 4).

An algorithm is a frozen (hashable) dataclass, a :class:`Method`, whose
``step(problem, state)`` takes the problem as an argument. The driver compiles one
function per (method, shapes, dtypes) and passes the problem in, so that a second run of
the same shape does not recompile and data can be batched under ``vmap``. The factories
(:func:`~overgmm.em`, :func:`~overgmm.gradient_em`, ...) return an :class:`Algorithm`: the
method bound to its problem.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from overgmm import _validation as v
from overgmm.mixture import Mixture
from overgmm.problem import Problem
from overgmm.statistics import TINY, Stats

WEIGHT_UPDATES = ("fixed", "em", "solve")


class State(NamedTuple):
    """The state every algorithm carries through the driver's loop.

    Fields:
      student: the current :class:`Mixture` (means (n, d), log-weights (n,), covariances).
      step: number of steps taken, int scalar.
      key: PRNG key for backends that draw fresh samples.
      grad_evals: gradient (E-step) evaluations spent so far (an EM step counts one).
      extra: the method's own state, a typed pytree: the Polyak method's
        :class:`~overgmm.algorithms.polyak.PolyakState`, an optax optimizer state for
        :func:`~overgmm.gradient_descent`, ``()`` for EM and gradient EM. The driver
        reads it only through :meth:`Method.long_step`.
      loss: the loss evaluated by the last step, at the student it started from
        (NaN before the first step), float scalar.
    """

    student: Mixture
    step: jax.Array
    key: jax.Array
    grad_evals: jax.Array
    extra: Any = ()
    loss: jax.Array | float = jnp.nan


@dataclasses.dataclass(frozen=True)
class Method:
    """Base of the static algorithm configs: subclasses define :meth:`step` and may
    define :meth:`init_extra` and :meth:`check`."""

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def streamable(self) -> bool:
        """Whether a step reads the data only through one ``problem.statistics`` call at the
        state's student, so that it can run on statistics reduced over chunks
        (:meth:`Problem.from_statistics`, :mod:`overgmm.streaming`)."""
        return False

    def check(self, problem: Problem, student: Mixture | None = None) -> None:
        """Raise a clear error when the problem (or student) is not supported."""

    def init_extra(self, student: Mixture) -> object:
        return ()

    def long_step(self, state: State) -> jax.Array:
        """Whether the step that produced ``state`` was a long step, one that may raise
        the loss on purpose (the Polyak method's): the driver does not judge convergence
        on it or the step after it, and records it. ``()`` bool; False for most methods."""
        return jnp.zeros((), bool)

    def init(self, problem: Problem, student: Mixture, key: jax.Array | None = None) -> State:
        problem.check_student(student)
        self.check(problem, student)
        key = jax.random.key(0) if key is None else key
        zero = jnp.zeros((), dtype=jnp.int32)
        loss = jnp.full((), jnp.nan, student.means.dtype)
        return State(student, zero, key, zero, self.init_extra(student), loss)

    def step(self, problem: Problem, state: State) -> State:  # pragma: no cover - abstract
        raise NotImplementedError


class Algorithm(NamedTuple):
    """A :class:`Method` bound to its :class:`~overgmm.Problem`.

    ``init(student, key) -> State`` and ``step(state) -> State`` are the method's with the
    problem filled in; the driver passes ``problem`` to ``method.step`` explicitly.
    """

    method: Method
    problem: Problem

    @property
    def name(self) -> str:
        return self.method.name

    def init(self, student: Mixture, key: jax.Array | None = None) -> State:
        return self.method.init(self.problem, student, key)

    def step(self, state: State) -> State:
        return self.method.step(self.problem, state)


def bind(method: Method, problem: Problem) -> Algorithm:
    """Check ``method`` against ``problem`` and bind them."""
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be overgmm.Problem, got {type(problem).__name__}")
    method.check(problem)
    return Algorithm(method, problem)


def next_key(state: State, problem: Problem) -> tuple[jax.Array, jax.Array]:
    """(key to keep, key for this step's evaluation): the state's key split, or kept as it
    is where the problem's evaluations ignore it (:attr:`Problem.deterministic`: data,
    quadrature, common random numbers). Not splitting there keeps the PRNG's rounds out of
    every step's compiled program (about a tenth of a solver's instructions, a nested
    loop in the compile-speed build) and changes no number a run computes."""
    if problem.deterministic:
        return state.key, state.key
    k1, k2 = jax.random.split(state.key)
    return k1, k2


def advance(state: State, student: Mixture, key, evals, loss, *, extra=None) -> State:
    """The state after one step."""
    return State(
        student,
        state.step + 1,
        key,
        state.grad_evals + evals,
        state.extra if extra is None else extra,
        jnp.asarray(loss, student.means.dtype),
    )


def weights_from_mass(mass: jax.Array) -> jax.Array:
    """Log-weights from EM masses ``E[psi_i]`` (clipped at 0, renormalised). A component
    whose mass underflows keeps a tiny weight (``log 1e-300``), never exactly 0; pruning
    (:mod:`overgmm.reduce`) is what sets weights to 0."""
    mass = jnp.maximum(mass, 0.0)
    return jnp.log(jnp.maximum(mass, TINY)) - jnp.log(jnp.sum(mass))


def keep_pruned(old: Mixture, log_weights: jax.Array) -> jax.Array:
    """New log-weights with the pruned components of ``old`` kept at exactly 0 weight
    (their mass is exactly 0, so the live ones stay normalised)."""
    return jnp.where(old.live, log_weights, -jnp.inf)


def solve_weights(problem: Problem, student: Mixture, key, *, tol: float, max_iter: int):
    """Repeat the EM weight step ``pi <- E[psi]`` at fixed means until
    ``sum |Delta pi| < tol`` (the convex problem ``min_pi L``). Returns the student
    with solved weights and the number of evaluations spent."""

    def cond(c):
        _, delta, it = c
        return (delta > tol) & (it < max_iter)

    def body(c):
        s, _, it = c
        st = problem.statistics(s, key)
        lw = keep_pruned(s, weights_from_mass(st.mass))
        delta = jnp.sum(jnp.abs(jnp.exp(lw) - s.weights))
        return s.replace(log_weights=lw), delta, it + 1

    s, _, it = jax.lax.while_loop(cond, body, (student, jnp.asarray(jnp.inf), jnp.zeros((), jnp.int32)))
    return s, it


def statistics_or_gradient(problem: Problem, student: Mixture, key) -> Stats:
    """E-step statistics where the objective has them, else (fixed-weight descent on
    score matching) the loss with ``shift = -dL/dmu`` and no masses."""
    if problem.has_em_statistics:
        return problem.statistics(student, key)
    loss, g = problem.value_and_grad(student, key)
    return Stats(loss, None, -g.means, None)  # type: ignore[arg-type]  # no masses: not an EM objective


def check_step_size(step_size, name: str = "step_size") -> float:
    try:
        val = float(step_size)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a number, got {step_size!r}") from err
    if not (val > 0 and math.isfinite(val)):
        raise ValueError(f"{name} must be positive and finite, got {step_size!r}")
    return val


def check_weights_option(weights: str) -> None:
    v.check_choice(weights, WEIGHT_UPDATES, "weight update")


def require_em_statistics(problem: Problem, name: str) -> None:
    if not problem.has_em_statistics:
        raise ValueError(
            f"{name} needs EM statistics, available for the kl and nll objectives, not {problem.objective!r}"
        )


def require_identity_or_data(problem: Problem, student: Mixture | None, name: str) -> None:
    """Learned covariances are fitted on data (nll) only."""
    if student is not None and student.cov_type.learned and problem.objective != "nll":
        if problem.objective == "denoising_score_matching":
            return
        raise ValueError(
            f"{name} with covariance_type={student.covariance_type!r} needs a data problem "
            f"(Problem.from_data), not {problem.objective!r}"
        )
