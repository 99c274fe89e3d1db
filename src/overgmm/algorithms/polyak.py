"""The alternating Polyak method (Wang, Fazel, Charisopoulos 2026; SPEC sections 4, 6 W1).

Repeat: ``n_short`` short gradient steps of size ``eta``, then one long Polyak step

    mu <- mu - gamma (L(mu) - L*) / <g, P g> P g

in the same metric ``P`` as the short steps: ``P = diag(1/pi_i)`` (``scaled=True``, the
default: each component moves by ``eta g_i / pi_i``, EM's own scaling with the fixed
weight in place of ``E[psi_i]``) or ``P = I`` (``scaled=False``, the paper-literal
scheme). On a quartic ``c s^4`` a Polyak step maps ``s`` to ``3s/4`` (``gamma = 1``).

``loss_star`` (L*) is 0 in the realizable population case; outside it (fixed weights
that do not match the teacher's cluster masses, or a sample), a Polyak step aimed below
the true minimum overshoots and can diverge. Then either give an estimate, learn the
weights (``weights="em"``: the optimum is realizable again), or let the method estimate
L* itself with ``loss_star="adaptive"``: a level method. The step aims at a level
``l`` (starting at ``loss_floor``, 0 for KL). A long step that does not lower the loss
is undone and raises the level halfway to the current loss, ``l <- (l + L) / 2``; one
that lowers it doubles the gap, ``l <- max(floor, l - (L - l))``; when the loss has
fallen to the level, the level drops halfway to the floor, ``l <- (floor + L) / 2``.
Long steps therefore never raise the loss (each costs one extra evaluation).
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
    n_short: int | str = 10,
    *,
    scaled: bool = True,
    gamma: float = 1.0,
    loss_star: float | str = 0.0,
    reject_increase: bool = False,
    weights: str = "fixed",
    loss_floor: float = 0.0,
    align: float = 0.999,
    min_short: int = 8,
    max_short: int = 100,
) -> Algorithm:
    """The alternating Polyak method.

    Args:
      problem: the objective (kl, nll or score matching; ``weights="em"`` needs kl or nll).
      step_size: eta of the short steps.
      n_short: K, the number of short steps before each long step (K >= 1), or
        ``"adaptive"``: take the long step once two successive short-step directions
        ``P g`` are aligned (cosine above ``align``: the short steps have reached the
        ravine floor and crawl along it), after at least ``min_short`` and at most
        ``max_short`` short steps.
      scaled: short and long steps in the metric ``diag(1/pi_i)`` (default) or Euclidean.
      gamma: multiplier of the Polyak step (1: the classical step; 2: doubled).
      loss_star: L*, keyword-only; the Polyak step is ``gamma (L - L*) / <g, P g>``;
        ``"adaptive"``: estimated by the level method above (implies ``reject_increase``).
      reject_increase: evaluate the loss after a long step and undo it if it rose
        (one more evaluation per long step).
      loss_floor: a lower bound of the loss, where the adaptive level starts (0 for KL
        and score matching; for an NLL give a lower bound or a crude L* estimate).
      weights: ``"fixed"`` or ``"em"`` (one EM weight step with each short step).
      align, min_short, max_short: the rule of ``n_short="adaptive"``.

    A long step is guarded: it is skipped (zero step) when ``L <= L*`` or the gradient
    vanishes. ``State.polyak`` marks the steps that were long.
    """
    eta = check_step_size(step_size)
    gamma = check_step_size(gamma, "gamma")
    adaptive_k = n_short == "adaptive"
    if not adaptive_k and (isinstance(n_short, bool) or not isinstance(n_short, int) or n_short < 1):
        raise ValueError(f"n_short must be an integer >= 1 or 'adaptive', got {n_short!r}")
    if adaptive_k:
        align = float(align)
        if not -1.0 < align < 1.0:
            raise ValueError(f"align must lie in (-1, 1), got {align!r}")
        for name, val in (("min_short", min_short), ("max_short", max_short)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
        if max_short < min_short:
            raise ValueError(f"max_short ({max_short}) must be >= min_short ({min_short})")
    check_weights_option(weights)
    if weights == "solve":
        raise ValueError("polyak supports weights='fixed' or 'em'")
    if weights == "em":
        require_em_statistics(problem, "polyak(weights='em')")
    adaptive = isinstance(loss_star, str)
    if adaptive:
        if loss_star != "adaptive":
            raise ValueError(f"loss_star must be a number or 'adaptive', got {loss_star!r}")
        reject_increase = True
    else:
        loss_star = float(loss_star)
    loss_floor = float(loss_floor)

    def extra_init(student):
        # level: the adaptive L* level; since: short steps since the last long one;
        # prev: the previous short step's direction P g (for n_short="adaptive").
        return {
            "level": jnp.asarray(loss_floor, student.means.dtype),
            "since": jnp.zeros((), jnp.int32),
            "prev": jnp.zeros_like(student.means),
        }

    def step(state: State) -> State:
        key, sub = next_key(state)
        s = state.student
        loss, g = problem.value_and_grad(s, sub)
        p = jnp.exp(-s.log_weights) if scaled else jnp.ones_like(s.log_weights)
        pg = p[:, None] * g.means
        denom = jnp.sum(g.means * pg)
        since, prev = state.extra["since"], state.extra["prev"]
        if adaptive_k:
            cos = jnp.sum(pg * prev) / jnp.sqrt(jnp.sum(pg**2) * jnp.sum(prev**2) + 1e-300)
            is_long = ((since >= min_short) & (cos > align)) | (since >= max_short)
        else:
            is_long = (state.step % (n_short + 1)) == n_short
        if adaptive:
            level = state.extra["level"]
            level = jnp.where(is_long & (loss <= level), 0.5 * (loss_floor + loss), level)
        else:
            level = loss_star
        gap = loss - level
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
        extra = dict(state.extra)
        extra["since"] = jnp.where(is_long, 0, since + 1)
        extra["prev"] = jnp.where(is_long, jnp.zeros_like(pg), pg)
        if reject_increase:
            new_loss = jax.lax.cond(is_long, lambda: problem.loss(new, sub), lambda: loss)
            keep = (new_loss < loss) | ~is_long
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, s)
            evals = 1 + is_long.astype(jnp.int32)
            if adaptive:
                grown = jnp.maximum(loss_floor, level - (loss - level))
                extra["level"] = jnp.where(is_long, jnp.where(keep, grown, 0.5 * (level + loss)), level)
        return State(new, state.step + 1, key, state.grad_evals + evals, is_long, extra)

    k_text = f"adaptive(align={align}, min={min_short}, max={max_short})" if adaptive_k else n_short
    name = f"polyak(eta={eta}, K={k_text}, scaled={scaled}, gamma={gamma}, L*={loss_star}, weights={weights})"
    return Algorithm(name, make_init(problem, extra_init), step, problem)
