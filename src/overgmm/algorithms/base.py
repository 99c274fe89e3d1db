"""What every algorithm shares: its state record, the pair of pure functions, and
the small primitives the named algorithms chain (SPEC section 4)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from overgmm import _validation as v
from overgmm.mixture import Mixture
from overgmm.problem import Problem

WEIGHT_UPDATES = ("fixed", "em", "solve")
TINY = 1e-300


class State(NamedTuple):
    """The state every algorithm carries through the driver's loop.

    Fields:
      student: the current :class:`Mixture` (means (n, d), log-weights (n,)).
      step: number of steps taken, int scalar.
      key: PRNG key for backends that draw fresh samples.
      grad_evals: gradient evaluations spent so far (an EM step counts one).
      polyak: whether the last step was a long Polyak step (bool scalar).
      extra: algorithm-specific state (e.g. an optax optimizer state), a pytree.
    """

    student: Mixture
    step: jax.Array
    key: jax.Array
    grad_evals: jax.Array
    polyak: jax.Array
    extra: object = ()


class Algorithm(NamedTuple):
    """A named pair of pure functions: ``init(student, key) -> State``, ``step(State) -> State``."""

    name: str
    init: Callable[[Mixture, jax.Array], State]
    step: Callable[[State], State]
    problem: Problem


def make_init(problem: Problem, extra_init: Callable[[Mixture], object] | None = None):
    def init(student: Mixture, key: jax.Array | None = None) -> State:
        problem.check_student(student)
        key = jax.random.key(0) if key is None else key
        extra = () if extra_init is None else extra_init(student)
        zero = jnp.zeros((), dtype=jnp.int32)
        return State(student, zero, key, zero, jnp.zeros((), dtype=bool), extra)

    return init


def next_key(state: State) -> tuple[jax.Array, jax.Array]:
    """Split the state's key: (key to keep, key for this step's evaluation)."""
    k1, k2 = jax.random.split(state.key)
    return k1, k2


def em_statistics(student: Mixture, grads: Mixture) -> tuple[jax.Array, jax.Array]:
    """``E[psi_i]`` (n,) and ``E[psi_i (x - mu_i)]`` (n, d) from the loss gradient
    (valid for kl and nll; see :mod:`overgmm.problem`)."""
    mass = jnp.exp(student.log_weights) - grads.log_weights
    return mass, -grads.means


def weights_from_mass(mass: jax.Array) -> jax.Array:
    """Log-weights from EM masses ``E[psi_i]`` (clipped at 0, renormalised)."""
    mass = jnp.maximum(mass, 0.0)
    return jnp.log(jnp.maximum(mass, TINY)) - jnp.log(jnp.sum(mass))


def solve_weights(problem: Problem, student: Mixture, key, *, tol: float, max_iter: int):
    """Repeat the EM weight step ``pi <- E[psi]`` at fixed means until
    ``sum |Delta pi| < tol`` (the convex problem ``min_pi L``). Returns the student
    with solved weights and the number of evaluations spent."""

    def cond(c):
        _, delta, it = c
        return (delta > tol) & (it < max_iter)

    def body(c):
        s, _, it = c
        _, g = problem.value_and_grad(s, key)
        mass, _ = em_statistics(s, g)
        lw = weights_from_mass(mass)
        delta = jnp.sum(jnp.abs(jnp.exp(lw) - s.weights))
        return s.replace(log_weights=lw), delta, it + 1

    s, _, it = jax.lax.while_loop(cond, body, (student, jnp.asarray(jnp.inf), jnp.zeros((), jnp.int32)))
    return s, it


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
