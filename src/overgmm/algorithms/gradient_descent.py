"""Plain gradient descent on any objective, and any optax optimizer as a baseline."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from overgmm import _validation as v
from overgmm.algorithms.base import Algorithm, State, check_step_size, make_init, next_key
from overgmm.mixture import Mixture
from overgmm.problem import Problem

PARAMS = ("means", "all")


def _normalise(s: Mixture) -> Mixture:
    return s.replace(log_weights=s.log_weights - jax.scipy.special.logsumexp(s.log_weights))


def gradient_descent(problem: Problem, step_size: float, *, params: str = "means") -> Algorithm:
    """``theta <- theta - eta grad L`` on the means (``params="means"``) or on the
    means and the log-weights (``"all"``, a softmax parametrisation of the weights).

    On the score-matching problem this is the paper's descent at fixed ``t``.
    """
    eta = check_step_size(step_size)
    v.check_choice(params, PARAMS, "params")

    def step(state: State) -> State:
        key, sub = next_key(state)
        s = state.student
        _, g = problem.value_and_grad(s, sub)
        new = s.replace(means=s.means - eta * g.means)
        if params == "all":
            new = _normalise(new.replace(log_weights=s.log_weights - eta * g.log_weights))
        return State(new, state.step + 1, key, state.grad_evals + 1, jnp.zeros((), bool), state.extra)

    return Algorithm(f"gradient_descent(eta={eta}, params={params})", make_init(problem), step, problem)


def optax_method(problem: Problem, optimizer: optax.GradientTransformation, *, params: str = "means") -> Algorithm:
    """Any optax optimizer (e.g. ``optax.adam(1e-2)``) on the means or on means and
    log-weights (``params="all"``). The optimizer state lives in ``State.extra``."""
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}")
    v.check_choice(params, PARAMS, "params")
    optimizer = optax.with_extra_args_support(optimizer)

    def select(s: Mixture):
        return s.means if params == "means" else (s.means, s.log_weights)

    def step(state: State) -> State:
        key, sub = next_key(state)
        s = state.student
        loss, g = problem.value_and_grad(s, sub)
        updates, opt_state = optimizer.update(select(g), state.extra, select(s), value=loss)
        if params == "means":
            new = s.replace(means=s.means + updates)
        else:
            new = _normalise(s.replace(means=s.means + updates[0], log_weights=s.log_weights + updates[1]))
        return State(new, state.step + 1, key, state.grad_evals + 1, jnp.zeros((), bool), opt_state)

    init = make_init(problem, lambda s: optimizer.init(select(s)))
    return Algorithm(f"optax({params})", init, step, problem)
