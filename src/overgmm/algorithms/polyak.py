"""The alternating Polyak method (Wang, Fazel, Charisopoulos 2026; SPEC sections 4, 6 W1).

Repeat: ``n_short`` short gradient steps of size ``eta``, then one long Polyak step

    mu <- mu - gamma (L(mu) - L*) / <g, P g> P g

in the same metric ``P`` as the short steps: ``P = diag(1/pi_i)`` (``scaled=True``, the
default: each component moves by ``eta g_i / pi_i``, EM's own scaling with the fixed
weight in place of ``E[psi_i]``) or ``P = I`` (``scaled=False``, the paper-literal
scheme). On a quartic ``c s^4`` a Polyak step maps ``s`` to ``3s/4`` (``gamma = 1``).

``loss_star`` (L*) is 0 in the realizable population case; outside it, give an
estimate: a Polyak step aimed below the true minimum overshoots.
"""

from __future__ import annotations

import jax
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
    weights_from_mass,
)
from overgmm.problem import Problem


def polyak(
    problem: Problem,
    step_size: float = 1.0,
    n_short: int = 10,
    *,
    scaled: bool = True,
    gamma: float = 1.0,
    loss_star: float = 0.0,
    reject_increase: bool = False,
    weights: str = "fixed",
) -> Algorithm:
    """The alternating Polyak method.

    Args:
      problem: the objective (kl, nll or score matching; ``weights="em"`` needs kl or nll).
      step_size: eta of the short steps.
      n_short: K, the number of short steps before each long step (K >= 1).
      scaled: short and long steps in the metric ``diag(1/pi_i)`` (default) or Euclidean.
      gamma: multiplier of the Polyak step (1: the classical step; 2: doubled).
      loss_star: L*, keyword-only; the Polyak step is ``gamma (L - L*) / <g, P g>``.
      reject_increase: evaluate the loss after a long step and undo it if it rose
        (one more evaluation per long step).
      weights: ``"fixed"`` or ``"em"`` (one EM weight step with each short step).

    A long step is guarded: it is skipped (zero step) when ``L <= L*`` or the gradient
    vanishes. ``State.polyak`` marks the steps that were long.
    """
    eta = check_step_size(step_size)
    gamma = check_step_size(gamma, "gamma")
    if isinstance(n_short, bool) or not isinstance(n_short, int) or n_short < 1:
        raise ValueError(f"n_short must be an integer >= 1, got {n_short!r}")
    check_weights_option(weights)
    if weights == "solve":
        raise ValueError("polyak supports weights='fixed' or 'em'")
    if weights == "em":
        require_em_statistics(problem, "polyak(weights='em')")
    loss_star = float(loss_star)

    def step(state: State) -> State:
        key, sub = next_key(state)
        s = state.student
        is_long = (state.step % (n_short + 1)) == n_short
        loss, g = problem.value_and_grad(s, sub)
        p = jnp.exp(-s.log_weights) if scaled else jnp.ones_like(s.log_weights)
        pg = p[:, None] * g.means
        denom = jnp.sum(g.means * pg)
        gap = loss - loss_star
        ok = (denom > 0) & (gap > 0)
        alpha = jnp.where(ok, gamma * gap / jnp.where(ok, denom, 1.0), 0.0)
        size = jnp.where(is_long, alpha, eta)
        new = s.replace(means=s.means - size * pg)
        if weights == "em":
            mass, _ = em_statistics(s, g)
            new = jax.tree_util.tree_map(
                lambda a, b: jnp.where(is_long, a, b), new, new.replace(log_weights=weights_from_mass(mass))
            )
        evals = 1
        if reject_increase:
            new_loss = jax.lax.cond(is_long, lambda: problem.loss(new, sub), lambda: loss)
            keep = new_loss <= loss
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, s)
            evals = 1 + is_long.astype(jnp.int32)
        return State(new, state.step + 1, key, state.grad_evals + evals, is_long, state.extra)

    name = f"polyak(eta={eta}, K={n_short}, scaled={scaled}, gamma={gamma}, L*={loss_star}, weights={weights})"
    return Algorithm(name, make_init(problem), step, problem)
