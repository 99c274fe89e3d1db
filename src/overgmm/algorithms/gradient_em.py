"""Gradient EM (Xu et al. 2024; Zhou et al. 2025, Algorithm 1).

Means: ``mu_i <- mu_i + eta E[psi_i (x - mu_i)] = mu_i - eta dL/dmu_i`` (Fact 1: gradient
EM is gradient descent on the loss). Weights:

* ``"fixed"``: never updated (Xu et al.);
* ``"em"``: one EM weight step ``pi_i <- E[psi_i]`` from the same E-step;
* ``"solve"``: ``pi`` solved to tolerance at the current means (repeated weight
  steps), then the mean step at the solved weights (Zhou et al.'s convex weight
  problem ``min_pi L(mu, pi)``).
"""

from __future__ import annotations

import jax.numpy as jnp

from overgmm.algorithms.base import (
    Algorithm,
    State,
    check_step_size,
    check_weights_option,
    em_statistics,
    make_init,
    next_key,
    require_em_statistics,
    solve_weights,
    weights_from_mass,
)
from overgmm.problem import Problem


def gradient_em(
    problem: Problem,
    step_size: float,
    *,
    weights: str = "fixed",
    weight_tol: float = 1e-10,
    max_weight_iter: int = 100,
) -> Algorithm:
    """Gradient EM with step ``step_size`` (eta) and a weight update rule.

    Args:
      problem: a kl or nll :class:`~overgmm.Problem` (any objective for ``weights="fixed"``:
        then this is plain gradient descent on the means).
      step_size: eta > 0.
      weights: ``"fixed"``, ``"em"`` or ``"solve"`` (see module docstring).
      weight_tol, max_weight_iter: stopping rule of ``"solve"`` (sum |Delta pi|).
    """
    eta = check_step_size(step_size)
    check_weights_option(weights)
    if weights != "fixed":
        require_em_statistics(problem, f"gradient_em(weights={weights!r})")

    def step(state: State) -> State:
        key, sub = next_key(state)
        s = state.student
        evals = 1
        if weights == "solve":
            s, it = solve_weights(problem, s, sub, tol=weight_tol, max_iter=max_weight_iter)
            evals = it + 1
        _, g = problem.value_and_grad(s, sub)
        new = s.replace(means=s.means - eta * g.means)
        if weights == "em":
            mass, _ = em_statistics(s, g)
            new = new.replace(log_weights=weights_from_mass(mass))
        return State(new, state.step + 1, key, state.grad_evals + evals, jnp.zeros((), bool), state.extra)

    return Algorithm(f"gradient_em(eta={eta}, weights={weights})", make_init(problem), step, problem)
