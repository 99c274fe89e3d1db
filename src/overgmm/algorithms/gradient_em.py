"""Gradient EM (Xu et al. 2024; Zhou et al. 2025, Algorithm 1).

Means: ``mu_i <- mu_i + eta E[psi_i (x - mu_i)]``; for identity covariances this is
``mu_i - eta dL/dmu_i`` (Fact 1: gradient EM is gradient descent on the loss), for learned
covariances ``mu_i - eta Sigma_i dL/dmu_i`` (EM's scaling: ``eta`` has no units).
Covariances (learned types, data only): a fraction ``min(1, eta N_i)`` of the way to the
EM target (:func:`~overgmm.algorithms.updates.covariance_step`). Weights:

* ``"fixed"``: never updated (Xu et al.);
* ``"em"``: one EM weight step ``pi_i <- E[psi_i]`` from the same E-step;
* ``"solve"``: ``pi`` solved to tolerance at the current means (repeated weight
  steps), then the mean step at the solved weights (Zhou et al.'s convex weight
  problem ``min_pi L(mu, pi)``).
"""

from __future__ import annotations

import dataclasses

from overgmm.algorithms import base
from overgmm.algorithms.base import Algorithm, Method, State, advance, bind
from overgmm.algorithms.updates import covariance_step, mean_step, with_covariances
from overgmm.mixture import Mixture
from overgmm.problem import Problem


@dataclasses.dataclass(frozen=True)
class GradientEM(Method):
    """Gradient EM with step ``step_size`` (eta) and a weight update rule (module docstring)."""

    step_size: float
    weights: str = "fixed"
    weight_tol: float = 1e-10
    max_weight_iter: int = 100

    @property
    def name(self) -> str:
        return f"gradient_em(eta={self.step_size}, weights={self.weights})"

    @property
    def streamable(self) -> bool:
        return self.weights != "solve"  # "solve" repeats the E-step at new weights

    def check(self, problem: Problem, student: Mixture | None = None) -> None:
        if self.weights != "fixed":
            base.require_em_statistics(problem, f"gradient_em(weights={self.weights!r})")
        base.require_identity_or_data(problem, student, "gradient_em")
        if student is not None and student.cov_type.learned:
            base.require_em_statistics(problem, "gradient_em with learned covariances")

    def step(self, problem: Problem, state: State) -> State:
        key, sub = base.next_key(state, problem)
        s = state.student
        evals = 1
        if self.weights == "solve":
            s, it = base.solve_weights(problem, s, sub, tol=self.weight_tol, max_iter=self.max_weight_iter)
            evals = it + 1
        st = base.statistics_or_gradient(problem, s, sub)
        eta = self.step_size
        cov = None if not s.cov_type.learned else covariance_step(s, st, eta, problem.floor)
        new = with_covariances(s, mean_step(s, st, eta), cov)
        if self.weights == "em":
            new = new.replace(log_weights=base.keep_pruned(s, base.weights_from_mass(st.mass)))
        return advance(state, new, key, evals, st.loss)


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
      problem: a kl or nll :class:`~overgmm.Problem` (any objective for ``weights="fixed"``
        and identity covariances: then this is plain gradient descent on the means).
      step_size: eta > 0.
      weights: ``"fixed"``, ``"em"`` or ``"solve"`` (see module docstring).
      weight_tol, max_weight_iter: stopping rule of ``"solve"`` (sum |Delta pi|).
    """
    eta = base.check_step_size(step_size)
    base.check_weights_option(weights)
    return bind(GradientEM(eta, weights, float(weight_tol), int(max_weight_iter)), problem)
