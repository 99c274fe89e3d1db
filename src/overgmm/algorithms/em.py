"""EM (SPEC section 4): ``pi_i <- E[psi_i]``, ``mu_i <- E[psi_i x] / E[psi_i]`` and, for learned
covariances, ``Sigma_i <-`` the weighted scatter about the new mean (floored)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from overgmm.algorithms import base
from overgmm.algorithms.base import TINY, Algorithm, Method, State, advance, bind
from overgmm.algorithms.updates import em_covariances, with_covariances
from overgmm.mixture import Mixture
from overgmm.problem import Problem
from overgmm.statistics import Stats


@dataclasses.dataclass(frozen=True)
class EM(Method):
    """EM; ``update_weights=False`` keeps the weights fixed. A component whose mass
    ``E[psi_i]`` underflows keeps its mean and covariance; a pruned one stays pruned."""

    update_weights: bool = True

    @property
    def name(self) -> str:
        return f"em(update_weights={self.update_weights})"

    @property
    def streamable(self) -> bool:
        return True

    def check(self, problem: Problem, student: Mixture | None = None) -> None:
        base.require_em_statistics(problem, "em")
        base.require_identity_or_data(problem, student, "em")

    def step(self, problem: Problem, state: State) -> State:
        key, sub = base.next_key(state, problem)
        s = state.student
        st = problem.statistics(s, sub)
        ok = st.mass > TINY
        means = s.means + jnp.where(ok[:, None], st.shift / jnp.where(ok, st.mass, 1.0)[:, None], 0.0)
        cov = None if not s.cov_type.learned else em_covariances(s, st, problem.floor)
        new = with_covariances(s, means, cov)
        if self.update_weights:
            new = new.replace(log_weights=base.keep_pruned(s, base.weights_from_mass(st.mass)))
        return advance(state, new, key, 1, st.loss)


def em(problem: Problem, *, update_weights: bool = True) -> Algorithm:
    """EM on ``problem`` (kl or nll); see :class:`EM`."""
    return bind(EM(bool(update_weights)), problem)


def stepwise_em(problem: Problem, student: Mixture, rate, key=None) -> tuple[Mixture, jax.Array]:
    """One stepwise (online) EM step on a mini-batch ``problem`` (nll): the sufficient
    statistics implied by ``student`` (``pi``, no shift, ``pi Sigma``) move ``rate`` in
    [0, 1] of the way to the batch's, then the M-step. For the means this is
    ``mu_i <- mu_i + rate E_batch[psi_i (x - mu_i)] / pi_i'``: a stochastic gradient-EM step
    in EM's metric. Returns the new student and the batch loss (before the step)."""
    base.require_em_statistics(problem, "stepwise_em")
    st = problem.statistics(student, key)
    pi = student.weights
    mass = (1.0 - rate) * pi + rate * st.mass
    shift = rate * st.shift
    scatter = None
    if student.cov_type.learned:
        own = student.cov_type.implied_scatter(student.covariances, pi)
        scatter = (1.0 - rate) * own + rate * st.scatter
    blended = Stats(st.loss, mass, shift, scatter)
    ok = mass > TINY
    means = student.means + jnp.where(ok[:, None], shift / jnp.where(ok, mass, 1.0)[:, None], 0.0)
    cov = None if not student.cov_type.learned else em_covariances(student, blended, problem.floor)
    new = with_covariances(student, means, cov).replace(
        log_weights=base.keep_pruned(student, base.weights_from_mass(mass))
    )
    return new, st.loss
