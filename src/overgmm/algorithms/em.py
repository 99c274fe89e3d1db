"""EM for isotropic mixtures with identity covariances (SPEC section 4):
``pi_i <- E[psi_i]``, ``mu_i <- E[psi_i x] / E[psi_i]``."""

from __future__ import annotations

import jax.numpy as jnp

from overgmm.algorithms.base import (
    TINY,
    Algorithm,
    State,
    em_statistics,
    make_init,
    next_key,
    require_em_statistics,
    weights_from_mass,
)
from overgmm.problem import Problem


def em(problem: Problem, *, update_weights: bool = True) -> Algorithm:
    """EM; ``update_weights=False`` keeps the weights fixed (mean step only).

    A component whose mass ``E[psi_i]`` underflows keeps its mean.
    """
    require_em_statistics(problem, "em")

    def step(state: State) -> State:
        key, sub = next_key(state)
        s = state.student
        _, g = problem.value_and_grad(s, sub)
        mass, shift = em_statistics(s, g)
        ok = mass > TINY
        means = s.means + jnp.where(ok[:, None], shift / jnp.where(ok, mass, 1.0)[:, None], 0.0)
        new = s.replace(means=means)
        if update_weights:
            new = new.replace(log_weights=weights_from_mass(mass))
        return State(new, state.step + 1, key, state.grad_evals + 1, jnp.zeros((), bool), state.extra)

    return Algorithm(f"em(update_weights={update_weights})", make_init(problem), step, problem)
