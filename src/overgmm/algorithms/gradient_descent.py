"""Plain gradient descent on any objective, and any optax optimizer as a baseline.

``params`` selects what moves: ``"means"``, or ``"all"``: the means, the log-weights (a
softmax parametrisation of the weights) and, for learned covariances, the unconstrained
covariance parameters (log-variances, or the log-diagonal Cholesky factor of the
precision), so that every step keeps the covariances valid.
"""

from __future__ import annotations

import dataclasses

import jax
import optax

from overgmm import _validation as v
from overgmm.algorithms.base import Algorithm, Method, State, advance, bind, check_step_size, next_key
from overgmm.mixture import Mixture
from overgmm.problem import Problem

PARAMS = ("means", "all")


def _normalise(s: Mixture) -> Mixture:
    return s.replace(log_weights=s.log_weights - jax.scipy.special.logsumexp(s.log_weights))


def _select(s: Mixture, params: str):
    return s.means if params == "means" else (s.means, s.log_weights, s.cov_params)


def _apply(s: Mixture, updates, params: str) -> Mixture:
    if params == "means":
        return s.replace(means=s.means + updates)
    du_m, du_w, du_c = updates
    cov = None if s.cov_params is None else s.cov_params + du_c
    return _normalise(s.replace(means=s.means + du_m, log_weights=s.log_weights + du_w, cov_params=cov))


@dataclasses.dataclass(frozen=True)
class GradientDescent(Method):
    """``theta <- theta - eta grad L`` on the selected parameters."""

    step_size: float
    params: str = "means"

    @property
    def name(self) -> str:
        return f"gradient_descent(eta={self.step_size}, params={self.params})"

    def step(self, problem: Problem, state: State) -> State:
        key, sub = next_key(state, problem)
        s = state.student
        loss, g = problem.value_and_grad(s, sub)
        eta = self.step_size
        if self.params == "means":
            new = s.replace(means=s.means - eta * g.means)
        else:
            new = s.replace(means=s.means - eta * g.means)
            cov = None if s.cov_params is None else s.cov_params - eta * g.cov_params
            new = _normalise(new.replace(log_weights=s.log_weights - eta * g.log_weights, cov_params=cov))
        return advance(state, new, key, 1, loss)


@dataclasses.dataclass(frozen=True)
class OptaxMethod(Method):
    """Any optax optimizer on the selected parameters; its state lives in ``State.extra``."""

    optimizer: optax.GradientTransformation
    params: str = "means"

    @property
    def name(self) -> str:
        return f"optax({self.params})"

    def init_extra(self, student: Mixture) -> object:
        return self.optimizer.init(_select(student, self.params))

    def step(self, problem: Problem, state: State) -> State:
        key, sub = next_key(state, problem)
        s = state.student
        loss, g = problem.value_and_grad(s, sub)
        sel = _select(s, self.params)
        updates, opt_state = self.optimizer.update(_select(g, self.params), state.extra, sel, value=loss)
        return advance(state, _apply(s, updates, self.params), key, 1, loss, extra=opt_state)


def gradient_descent(problem: Problem, step_size: float, *, params: str = "means") -> Algorithm:
    """``theta <- theta - eta grad L`` on the means (``params="means"``) or on all the
    parameters (``"all"``; see the module docstring).

    On the score-matching problem this is the paper's descent at fixed ``t``.
    """
    eta = check_step_size(step_size)
    v.check_choice(params, PARAMS, "params")
    return bind(GradientDescent(eta, params), problem)


def optax_method(problem: Problem, optimizer: optax.GradientTransformation, *, params: str = "means") -> Algorithm:
    """Any optax optimizer (e.g. ``optax.adam(1e-2)``) on the means or on all the parameters
    (``params="all"``). The optimizer state lives in ``State.extra``.

    The compiled loop is cached on the optimizer object: reuse the same optimizer to reuse
    the compilation."""
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}")
    v.check_choice(params, PARAMS, "params")
    return bind(OptaxMethod(optax.with_extra_args_support(optimizer), params), problem)
