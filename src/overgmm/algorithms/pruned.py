"""Pruning as part of a step: any algorithm followed by :func:`overgmm.reduce.prune`."""

from __future__ import annotations

import dataclasses

import jax

from overgmm.algorithms.base import Algorithm, Method, State, bind
from overgmm.mixture import Mixture
from overgmm.problem import Problem
from overgmm.reduce import prune


@dataclasses.dataclass(frozen=True)
class Pruned(Method):
    """``inner``'s step, then the weights below ``threshold`` set to exactly 0 (the
    components stay in the arrays; the heaviest is never pruned)."""

    inner: Method
    threshold: float

    @property
    def name(self) -> str:
        return f"pruned({self.inner.name}, threshold={self.threshold})"

    @property
    def streamable(self) -> bool:
        return self.inner.streamable

    def check(self, problem: Problem, student: Mixture | None = None) -> None:
        self.inner.check(problem, student)

    def init_extra(self, student: Mixture) -> object:
        return self.inner.init_extra(student)

    def long_step(self, state: State) -> jax.Array:
        return self.inner.long_step(state)

    def step(self, problem: Problem, state: State) -> State:
        new = self.inner.step(problem, state)
        return new._replace(student=prune(new.student, self.threshold))


def with_pruning(algorithm: Algorithm, threshold: float) -> Algorithm:
    """``algorithm`` with every step followed by pruning at ``threshold`` in [0, 1)."""
    threshold = float(threshold)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"the prune threshold must be a weight in [0, 1), got {threshold!r}")
    return bind(Pruned(algorithm.method, threshold), algorithm.problem)
