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
``loss_star="decrease"`` (the rule for data, where no floor is known): the gap is the last
cycle's decrease, ``L - L* = L_prev - L`` with ``L_prev`` the loss at the previous long
step; a long step that raises the loss is undone.

``scaled="mass"`` scales by ``1/E[psi_i]`` instead of ``1/pi_i`` (EM itself at ``eta = 1``):
with learned weights the fixed ``1/pi_i`` overshoots by ``E[psi_i]/pi_i``.

Learned covariances (data problems): the metric is ``P = diag(Sigma_i p_i)`` with
``p_i`` the scaling above, so a short step is ``mu_i <- mu_i + eta p_i E[psi_i (x - mu_i)]``
and the covariances take the relaxed step of fraction ``min(1, eta p_i E[psi_i])``; the
long step moves the means only, with ``<g, P g> = sum_i p_i shift_i^T Sigma_i^{-1} shift_i``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from overgmm.algorithms import base
from overgmm.algorithms.base import TINY, Algorithm, Method, State, advance, bind
from overgmm.algorithms.updates import covariance_step, mahalanobis_sq, with_covariances
from overgmm.mixture import Mixture
from overgmm.problem import Problem

SCALINGS = (True, False, "mass")
LOSS_STAR_RULES = ("adaptive", "decrease")


class PolyakState(NamedTuple):
    """The Polyak method's own state (:attr:`State.extra`), a pytree of scalars and one array.

    Fields:
      level: the adaptive ``L*`` level (``loss_star="adaptive"``).
      since: short steps since the last long one (``n_short="adaptive"``).
      prev: the previous short step's direction ``P g``, shape ``(n, d)``.
      ref: the loss at the last long step (``loss_star="decrease"``); NaN before the first.
      long: whether the last step was long, ``()`` bool (:meth:`Polyak.long_step`).
    """

    level: jax.Array
    since: jax.Array
    prev: jax.Array
    ref: jax.Array
    long: jax.Array


@dataclasses.dataclass(frozen=True)
class Polyak(Method):
    """The alternating Polyak method (see :func:`polyak` for the fields)."""

    step_size: float = 1.0
    n_short: int | str = 10
    scaled: bool | str = True
    gamma: float = 1.0
    loss_star: float | str = 0.0
    reject_increase: bool = False
    weights: str = "fixed"
    loss_floor: float = 0.0
    align: float = 0.999
    min_short: int = 8
    max_short: int = 100

    @property
    def name(self) -> str:
        k_text = self.n_short
        if self.n_short == "adaptive":
            k_text = f"adaptive(align={self.align}, min={self.min_short}, max={self.max_short})"
        return (
            f"polyak(eta={self.step_size}, K={k_text}, scaled={self.scaled}, gamma={self.gamma}, "
            f"L*={self.loss_star}, weights={self.weights})"
        )

    def check(self, problem: Problem, student: Mixture | None = None) -> None:
        if self.weights == "em" or self.scaled == "mass":
            base.require_em_statistics(problem, f"polyak(weights={self.weights!r}, scaled={self.scaled!r})")
        base.require_identity_or_data(problem, student, "polyak")
        if student is not None and student.cov_type.learned:
            base.require_em_statistics(problem, "polyak with learned covariances")

    def init_extra(self, student) -> PolyakState:
        return PolyakState(
            level=jnp.asarray(self.loss_floor, student.means.dtype),
            since=jnp.zeros((), jnp.int32),
            prev=jnp.zeros_like(student.means),
            ref=jnp.full((), jnp.nan, student.means.dtype),
            long=jnp.zeros((), bool),
        )

    def long_step(self, state: State) -> jax.Array:
        return state.extra.long

    def step(self, problem: Problem, state: State) -> State:
        eta, gamma, loss_floor = self.step_size, self.gamma, self.loss_floor
        adaptive_k = self.n_short == "adaptive"
        rule = self.loss_star if isinstance(self.loss_star, str) else None
        reject = self.reject_increase or rule is not None
        key, sub = base.next_key(state, problem)
        s = state.student
        st = base.statistics_or_gradient(problem, s, sub)
        loss, gm = st.loss, -st.shift
        if self.scaled == "mass":
            ok_m = st.mass > TINY
            p = jnp.where(ok_m, 1.0 / jnp.where(ok_m, st.mass, 1.0), 0.0)
        elif self.scaled:
            p = jnp.where(s.live, jnp.exp(-s.log_weights), 0.0)
        else:
            p = jnp.ones_like(s.log_weights)
        pg = p[:, None] * gm
        if not s.cov_type.learned:
            denom = jnp.sum(gm * pg)
        else:
            denom = jnp.sum(p * mahalanobis_sq(s, gm))
        extra: PolyakState = state.extra
        since, prev = extra.since, extra.prev
        if adaptive_k:
            cos = jnp.sum(pg * prev) / jnp.sqrt(jnp.sum(pg**2) * jnp.sum(prev**2) + 1e-300)
            is_long = ((since >= self.min_short) & (cos > self.align)) | (since >= self.max_short)
        else:
            k = int(self.n_short)  # a number unless "adaptive" (adaptive_k above)
            is_long = (state.step % (k + 1)) == k
        ref = jnp.where(jnp.isnan(extra.ref), loss, extra.ref)
        level: jax.Array | float
        if rule == "adaptive":
            level = extra.level
            level = jnp.where(is_long & (loss <= level), 0.5 * (loss_floor + loss), level)
        elif rule == "decrease":
            level = loss - (ref - loss)
        else:
            level = float(self.loss_star)
        gap = loss - level
        ok = (denom > 0) & (gap > 0)
        alpha = jnp.where(ok, gamma * gap / jnp.where(ok, denom, 1.0), 0.0)
        size = jnp.where(is_long, alpha, eta)
        means = s.means - size * pg
        if not s.cov_type.learned:
            new = s.replace(means=means)
        else:
            short_cov = covariance_step(s, st, eta * p, problem.floor)
            cov = jnp.where(is_long, s.covariances, short_cov)
            new = with_covariances(s, means, cov)
        if self.weights == "em":
            new = jax.tree_util.tree_map(
                lambda a, b: jnp.where(is_long, a, b),
                new,
                new.replace(log_weights=base.keep_pruned(s, base.weights_from_mass(st.mass))),
            )
        evals = 1
        extra = extra._replace(
            since=jnp.where(is_long, 0, since + 1),
            prev=jnp.where(is_long, jnp.zeros_like(pg), pg),
            ref=jnp.where(is_long, loss, ref),
            long=is_long,
        )
        if reject:
            new_loss = jax.lax.cond(is_long, lambda: problem.loss(new, sub), lambda: loss)
            keep = (new_loss < loss) | ~is_long
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, s)
            evals = 1 + is_long.astype(jnp.int32)  # type: ignore[assignment]  # a traced count
            if rule == "adaptive":
                grown = jnp.maximum(loss_floor, level - (loss - level))
                extra = extra._replace(level=jnp.where(is_long, jnp.where(keep, grown, 0.5 * (level + loss)), level))
        return advance(state, new, key, evals, loss, extra=extra)


def polyak(
    problem: Problem,
    step_size: float = 1.0,
    n_short: int | str = 10,
    *,
    scaled: bool | str = True,
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
      scaled: short and long steps in the metric ``diag(1/pi_i)`` (``True``, default),
        ``diag(1/E[psi_i])`` (``"mass"``) or Euclidean (``False``).
      gamma: multiplier of the Polyak step (1: the classical step; 2: doubled).
      loss_star: L*, keyword-only; the Polyak step is ``gamma (L - L*) / <g, P g>``;
        ``"adaptive"``: estimated by the level method (implies ``reject_increase``);
        ``"decrease"``: the last cycle's decrease as the gap (implies ``reject_increase``).
      reject_increase: evaluate the loss after a long step and undo it if it rose
        (one more evaluation per long step).
      loss_floor: a lower bound of the loss, where the adaptive level starts (0 for KL
        and score matching; for an NLL give a lower bound or a crude L* estimate).
      weights: ``"fixed"`` or ``"em"`` (one EM weight step with each short step).
      align, min_short, max_short: the rule of ``n_short="adaptive"``.

    A long step is guarded: it is skipped (zero step) when ``L <= L*`` or the gradient
    vanishes. ``Polyak.long_step(state)`` (``state.extra.long``) marks the steps that were long.
    """
    eta = base.check_step_size(step_size)
    gamma = base.check_step_size(gamma, "gamma")
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
    if scaled not in SCALINGS or (isinstance(scaled, str) and scaled != "mass"):
        raise ValueError(f"scaled must be True, False or 'mass', got {scaled!r}")
    base.check_weights_option(weights)
    if weights == "solve":
        raise ValueError("polyak supports weights='fixed' or 'em'")
    if isinstance(loss_star, str):
        if loss_star not in LOSS_STAR_RULES:
            raise ValueError(f"loss_star must be a number, 'adaptive' or 'decrease', got {loss_star!r}")
        reject_increase = True
    else:
        loss_star = float(loss_star)
    method = Polyak(
        eta,
        n_short,
        scaled,
        gamma,
        loss_star,
        bool(reject_increase),
        weights,
        float(loss_floor),
        float(align),
        int(min_short),
        int(max_short),
    )
    return bind(method, problem)
