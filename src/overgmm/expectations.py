"""How population expectations ``E_{x~p*}[f(x)]`` are taken (SPEC section 3).

Every integrand in overgmm depends on ``x`` only through its projection on
``V = span{teacher means, student means}`` (dimension ``r``), and the part of ``x``
orthogonal to ``V`` enters at most linearly with mean zero. So

    E_{p*}[f] = sum_j pi*_j E_{z ~ N(0, I_r)}[ f(mu*_j + Q z) ]

with ``Q`` an orthonormal basis of ``V`` (recomputed at each evaluation from an SVD,
held constant under differentiation), and a tensor rule for ``z``.

Backends (frozen dataclasses, hashable, so they are static under ``jit``):

* :class:`Quadrature` - deterministic tensor rule on the span. ``rule="trapezoid"``
  (equispaced, pruned to the ball ``|z| <= half_width``) or ``"gauss-hermite"``.
  With ``defensive=True`` the nodes are placed under the defensive mixture
  ``q = (p* + p_theta)/2`` and importance-weighted by ``p*/q``, so regions where a
  student component has mass but the teacher has none are integrated too (needed by
  the control-variate KL; SPEC section 3).
* :class:`MonteCarlo` - ``samples`` points from ``p*``; ``fresh=True`` draws new points
  from the key given at each call (the papers' setting), ``fresh=False`` uses common
  random numbers from ``seed`` (a deterministic, smooth objective).

Data (an ``(N, d)`` sample) is not a backend of the population expectation: the
sample objectives (:func:`overgmm.nll`) take it directly.

Exactness of the derivatives: first derivatives with respect to the student are
exact (the gradient lies in ``V``). Second derivatives in directions orthogonal to
``V`` are not captured by the span basis; use ``Quadrature(rank=d)`` (full space)
when a Hessian is needed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from overgmm import _validation as v
from overgmm import anisotropic, tails
from overgmm.mixture import Mixture

RULES = ("auto", "trapezoid", "gauss-hermite", "anisotropic")
TAILS = ("auto", "on", "off")

# Default (nodes per axis, half width) of the trapezoid rule by span dimension r,
# chosen from the accuracy measurements in tests/test_expectations.py and
# benchmarks/quadrature_accuracy.py (see README, "Accuracy").
DEFAULT_RULE = {1: (201, 9.0), 2: (161, 9.0), 3: (41, 8.0), 4: (17, 7.0), 5: (15, 6.5), 6: (11, 6.0)}
MAX_AUTO_RANK = 6
# rule="anisotropic": trapezoid spacing and half width on the teacher-difference span,
# Gauss-Hermite nodes per axis on the rest, the defensive share of the student centres
ANISOTROPIC = {
    "spacing": 0.3,
    "half_width": 7.0,
    "mild_nodes": 5,
    "share": 1e-6,
    "max_sharp": 2,
    "student_nodes": -4,
    "budget": 1.5,  # rule="auto": at most this many times the trapezoid rule's nodes
}
# ... by span dimension r, where it differs (issue 19: benchmarks/quadrature_accuracy.py, section 2):
# the Gauss-Hermite count on the mild axes decides the accuracy away from an optimum
ANISOTROPIC_BY_RANK: dict[int, dict[str, float]] = {
    3: {"spacing": 0.25, "mild_nodes": 7},
    4: {"mild_nodes": 6},
    5: {"mild_nodes": 7},
    6: {"mild_nodes": 8},
}


@dataclasses.dataclass(frozen=True)
class Quadrature:
    """Deterministic quadrature on the span of the means.

    Attributes:
      rule: ``"auto"`` (default): the anisotropic rule for the defensive (control-variate)
        KL at ``r = 3..6``, where it is more accurate for its cost, else the trapezoid
        rule with its node count by rank (:meth:`for_span`); ``"trapezoid"`` (the default
        before issue 19), ``"gauss-hermite"`` or ``"anisotropic"``.
      nodes: nodes per axis; default from ``DEFAULT_RULE`` by the span dimension.
      rank: dimension of the basis ``r``; default ``min(d, n + m)``. A smaller rank is
        exact only if all means lie in an ``r``-dimensional subspace (e.g. on a line).
      half_width: trapezoid nodes lie in the ball of this radius (in units of the
        teacher's standard deviation, 1); default from ``DEFAULT_RULE`` by rank.
      defensive: place nodes under ``(p* + p_theta)/2`` with importance weights
        (used by integrands that need it, i.e. the control-variate KL).
      check_rule: the second rule used for the error estimate: ``"coarse"`` (same rule,
        about 3/4 of the nodes per axis) or ``"gauss-hermite"``.
      spacing: ``rule="anisotropic"`` only: trapezoid spacing on the span of the teacher
        mean differences; ``nodes`` is then the Gauss-Hermite count per axis on the rest of
        the span and ``half_width`` the radius of the fine rule (:mod:`overgmm.anisotropic`).
        Defaults: ``ANISOTROPIC``, by rank where ``ANISOTROPIC_BY_RANK`` says.
      defensive_share: ``rule="anisotropic"`` only: weight ``eps`` of the student
        components in the defensive mixture ``(1 - eps) p* + eps p_theta`` (1e-6).
      tails: per-component integration of exponentially small components
        (:mod:`overgmm.tails`) in the KL gradient and the EM statistics: ``"auto"`` when
        the student mean differences span at most :data:`overgmm.tails.MAX_AUTO_TAIL_RANK`
        dimensions (``min(d, n - 1)``; the default), ``"on"`` up to
        :data:`overgmm.tails.MAX_TAIL_RANK`, ``"off"`` never: every component by the bulk
        rule, absolute accuracy only (the default before issue 19). The nodes are
        evaluated only when some component is small (:func:`overgmm.tails.own_statistics`).
    """

    rule: str = "auto"
    nodes: int | None = None
    rank: int | None = None
    half_width: float | None = None
    defensive: bool = True
    check_rule: str = "coarse"
    tails: str = "auto"
    spacing: float | None = None
    defensive_share: float | None = None

    def __post_init__(self):
        v.check_choice(self.rule, RULES, "quadrature rule")
        v.check_choice(self.tails, TAILS, "tails option")
        v.check_choice(self.check_rule, ("coarse", "gauss-hermite", "coarse-students"), "check_rule")
        if self.nodes is not None:
            v.check_positive_int(self.nodes, "nodes")
        if self.rank is not None:
            v.check_positive_int(self.rank, "rank")
        if self.half_width is not None and not (self.half_width > 0 and math.isfinite(self.half_width)):
            raise ValueError(f"half_width must be positive and finite, got {self.half_width!r}")

    def for_span(self, r: int, importance: bool, sizes: tuple[int, int] | None = None) -> Quadrature:
        """The rule ``"auto"`` stands for at span dimension ``r`` (``importance``: an
        integrand on defensive nodes, the control-variate KL; ``sizes``: the numbers of
        teacher and student components ``(m, n)``).

        The anisotropic rule at ``r = 3..6``, with the most Gauss-Hermite nodes on its mild
        axes (at most ``ANISOTROPIC_BY_RANK``, at least 5) whose node count over all
        centres stays within ``ANISOTROPIC["budget"]`` times the trapezoid rule's; the
        trapezoid rule elsewhere, or when even 5 do not fit."""
        if self.rule != "auto":
            return self
        if 3 <= r <= MAX_AUTO_RANK and importance and self.defensive and self.nodes is None:
            m, n = sizes if sizes is not None else (2, 2)
            k, hw = DEFAULT_RULE[r]
            trapezoid = (m + n) * len(_tensor_rule("trapezoid", k, r, hw)[1])
            for mild in range(int(self._aniso("mild_nodes", r)), 4, -1):
                if self._anisotropic_nodes(r, m, n, mild) <= ANISOTROPIC["budget"] * trapezoid:
                    return dataclasses.replace(self, rule="anisotropic", nodes=mild)
        return dataclasses.replace(self, rule="trapezoid")

    def _anisotropic_nodes(self, r: int, m: int, n: int, mild: int) -> int:
        """Nodes of the anisotropic rule over all centres (m teacher, n student)."""
        s = min(r, m - 1, ANISOTROPIC["max_sharp"])
        sharp = anisotropic.sharp_mild_rule(
            s, float(self._aniso("spacing", r)), float(self._aniso("half_width", r)), r - s, mild
        )
        return m * len(sharp[1]) + n * len(_student_rule(r, coarser=False)[1])

    def describe(self, r: int, importance: bool = False, sizes: tuple[int, int] | None = None) -> str:
        """One line naming the rule used at span dimension ``r`` (see :meth:`for_span`)."""
        if self.rule == "auto":
            return self.for_span(r, importance, sizes).describe(r)
        if self.rule == "anisotropic" and r >= 3:
            return (
                f"quadrature(anisotropic, r={r}, spacing={self._aniso('spacing', r)}, half_width="
                f"{self._aniso('half_width', r)}, mild nodes/axis={self._aniso('mild_nodes', r)}, "
                f"share={self._aniso('share', r)}, tails={self.tails})"
            )
        rule, k, hw = self.resolve(r)
        total = len(_tensor_rule(rule, k, r, hw)[1])
        extra = f", half_width={hw}" if rule == "trapezoid" else ""
        return (
            f"quadrature({rule}, r={r}, nodes/axis={k}{extra}, nodes={total}, defensive={self.defensive}, "
            f"tails={self.tails})"
        )

    def tails_active(self, n_components: int, dim: int) -> bool:
        """Whether the KL gradient integrates small components on their own nodes."""
        r_d = tails.tail_rank(n_components, dim)
        if self.tails == "off":
            return False
        if self.tails == "on":
            if r_d > tails.MAX_TAIL_RANK:
                raise ValueError(
                    f"Quadrature(tails='on') supports student mean differences of rank <= {tails.MAX_TAIL_RANK}, "
                    f"got min(d, n - 1) = {r_d}; use tails='auto' or 'off'"
                )
            return True
        return r_d <= tails.MAX_AUTO_TAIL_RANK

    def _aniso(self, name: str, r: int):
        own = {"spacing": self.spacing, "half_width": self.half_width, "mild_nodes": self.nodes}
        own["share"] = self.defensive_share
        if own[name] is not None:
            return own[name]
        return ANISOTROPIC_BY_RANK.get(r, {}).get(name, ANISOTROPIC[name])

    def resolve(self, r: int) -> tuple[str, int, float]:
        """The rule name, nodes per axis and half width used at span dimension ``r``."""
        rule = "trapezoid" if self.rule in ("auto", "anisotropic") else self.rule
        if self.nodes is None and r > MAX_AUTO_RANK:
            raise ValueError(
                f"span dimension r={r} is above {MAX_AUTO_RANK}: a tensor rule is unaffordable; "
                "use MonteCarlo(), or give Quadrature(rank=..., nodes=...) explicitly"
            )
        k_def, hw_def = DEFAULT_RULE.get(r, (7, 6.0))
        k = self.nodes if self.nodes is not None else k_def
        if rule == "gauss-hermite" and self.nodes is None:
            k = min(k, 20)
        hw = self.half_width if self.half_width is not None else hw_def
        return rule, k, float(hw)

    def check_variant(self, r: int) -> Quadrature:
        """The second rule for the error estimate."""
        if self.rule == "anisotropic":
            return dataclasses.replace(
                self,
                spacing=self._aniso("spacing", r) * 4 / 3,
                nodes=max(2, self._aniso("mild_nodes", r) - 1),
                half_width=self._aniso("half_width", r) - 0.5,
                check_rule="coarse-students",
            )
        rule, k, hw = self.resolve(r)
        if self.check_rule == "gauss-hermite":
            return dataclasses.replace(self, rule="gauss-hermite", nodes=min(k, 20), half_width=hw)
        k2 = max(3, int(round(0.75 * k)))
        k2 += k2 % 2 == 0  # odd: keep the centre node
        return dataclasses.replace(self, rule=rule, nodes=k2, half_width=hw)


@dataclasses.dataclass(frozen=True)
class MonteCarlo:
    """Monte Carlo expectation over ``samples`` draws from the teacher.

    Attributes:
      samples: number of draws per evaluation.
      fresh: draw new samples from the key passed at each call (required then);
        otherwise use common random numbers from ``seed``.
      seed: seed of the common random numbers (``fresh=False``).
    """

    samples: int = 100_000
    fresh: bool = True
    seed: int = 0

    def __post_init__(self):
        v.check_positive_int(self.samples, "samples")

    def describe(self, r: int | None = None) -> str:
        kind = "fresh" if self.fresh else f"common random numbers, seed={self.seed}"
        return f"monte-carlo({self.samples} samples, {kind})"


Backend = Quadrature | MonteCarlo


class Estimate(NamedTuple):
    """A value with an error estimate and the backend that produced it."""

    value: jax.Array
    error: jax.Array
    backend: str


# -- 1-D and tensor rules (numpy, built once per shape) -----------------------------


@functools.lru_cache(maxsize=64)
def _tensor_rule(rule: str, k: int, r: int, half_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``(K, r)`` and weights ``(K,)`` for ``E_{z~N(0, I_r)}``."""
    if rule == "gauss-hermite":
        z1, w1 = np.polynomial.hermite_e.hermegauss(k)
        w1 = w1 / math.sqrt(2.0 * math.pi)
    else:
        z1 = np.linspace(-half_width, half_width, k)
        h = z1[1] - z1[0] if k > 1 else 1.0
        w1 = h * np.exp(-0.5 * z1**2) / math.sqrt(2.0 * math.pi)
    grids = np.meshgrid(*([z1] * r), indexing="ij")
    z = np.stack([g.ravel() for g in grids], axis=-1)
    wg = np.meshgrid(*([w1] * r), indexing="ij")
    w = np.prod(np.stack([g.ravel() for g in wg], axis=-1), axis=-1)
    if rule == "trapezoid" and r > 1:
        keep = np.sum(z**2, axis=-1) <= half_width**2 * (1 + 1e-12)
        z, w = z[keep], w[keep]
    if r > 1:  # drop nodes whose weight cannot matter at float64 precision
        keep = w >= anisotropic.PRUNE_BELOW
        z, w = z[keep], w[keep]
    if rule == "trapezoid":
        w = w / w.sum()  # integrates the constant exactly (the discarded mass is < 1e-17)
    return z, w


def span_rank(teacher: Mixture, student: Mixture | None, backend: Quadrature) -> int:
    """The static dimension ``r`` of the basis used for these shapes."""
    d = teacher.dim
    n_all = teacher.n_components + (student.n_components if student is not None else 0)
    r = backend.rank if backend.rank is not None else min(d, n_all)
    if r > d:
        raise ValueError(f"Quadrature(rank={r}) exceeds the dimension d={d}")
    return r


def span_basis(means: jax.Array, r: int) -> tuple[jax.Array, jax.Array]:
    """Orthonormal basis ``Q`` (d, r) of the span of the rows of ``means``, and the
    norm of the part of the means outside it (0 when the rank is at most ``r``).
    Held constant under differentiation."""
    a = jax.lax.stop_gradient(means)
    u, _, _ = jnp.linalg.svd(a.T, full_matrices=True)
    q = u[:, :r]
    resid = jnp.sqrt(jnp.sum((a - (a @ q) @ q.T) ** 2))
    return q, resid


# -- the expectation ----------------------------------------------------------------

# f(x) -> values, or f(x, log_w) -> weighted values when log_weighted=True
Integrand = Callable[..., jax.Array]


def _quadrature_mean(f, teacher, student, backend: Quadrature, r: int, importance: bool, log_weighted: bool):
    """Sum over centres and nodes of the weighted integrand (see :func:`expectation`)."""
    if backend.rule == "anisotropic" and r >= 3:  # r <= 2: the default rule is exact to 1e-12
        return _anisotropic_mean(f, teacher, student, backend, r, importance, log_weighted)
    rule, k, hw = backend.resolve(r)
    z_np, w_np = _tensor_rule(rule, k, r, hw)
    z = jnp.asarray(z_np)
    log_wz = jnp.asarray(np.log(w_np))
    means = teacher.means if student is None else jnp.concatenate([teacher.means, student.means])
    q, resid = span_basis(means, r)
    zq = z @ q.T  # (K, d)

    t_lw = teacher.log_weights - logsumexp(teacher.log_weights)
    if importance and student is not None:
        s = jax.lax.stop_gradient(student)
        s_lw = s.log_weights - logsumexp(s.log_weights)
        centres = jnp.concatenate([teacher.means, s.means])
        log_alpha = jnp.concatenate([t_lw, s_lw]) - math.log(2.0)
        q_mix = Mixture.tree_unflatten(None, (centres, log_alpha))
        t_const = jax.lax.stop_gradient(teacher)

        def log_node_weights(c, la):
            x = c + zq
            return x, la + log_wz + t_const.log_prob(x) - q_mix.log_prob(x)

        items = (centres, log_alpha)
    else:

        def log_node_weights(c, la):
            return c + zq, la + log_wz

        items = (teacher.means, t_lw)

    def per_centre(item):
        x, log_w = log_node_weights(*item)
        if log_weighted:
            return jnp.sum(f(x, log_w), axis=0)
        return jnp.tensordot(jnp.exp(log_w), f(x), axes=1)

    width = anisotropic.components_per_node(teacher, student, defensive=importance and student is not None)
    return anisotropic.sum_over_centres(per_centre, items, len(z_np), width), resid


def _student_rule(r: int, coarser: bool) -> tuple[np.ndarray, np.ndarray]:
    """The anisotropic rule's student-centred nodes: the trapezoid rule with 4 fewer nodes
    per axis than the default (they weigh only ``eps`` near the optimum); ``coarser``:
    the error estimate's variant."""
    k, hw = DEFAULT_RULE.get(r, (7, 6.0))
    k = int(max(5, k + ANISOTROPIC["student_nodes"])) | 1
    if coarser:
        k = max(3, int(round(0.75 * k))) | 1
    return _tensor_rule("trapezoid", k, r, hw)


def _anisotropic_mean(f, teacher, student, backend: Quadrature, r: int, importance: bool, log_weighted: bool):
    means = teacher.means if student is None else jnp.concatenate([teacher.means, student.means])
    q, resid = span_basis(means, r)
    s = min(r, teacher.n_components - 1, ANISOTROPIC["max_sharp"])

    def a(name):
        return backend._aniso(name, r)

    sharp = anisotropic.sharp_mild_rule(s, float(a("spacing")), float(a("half_width")), r - s, int(a("mild_nodes")))
    coarse = _student_rule(r, coarser=backend.check_rule == "coarse-students")
    val = anisotropic.anisotropic_mean(
        f, teacher, student, q, sharp, coarse, s, float(a("share")), importance, log_weighted
    )
    return val, resid


def _resolve(
    teacher: Mixture, student: Mixture | None, backend: Quadrature, importance: bool
) -> tuple[Quadrature, int, bool]:
    """The rule :func:`expectation` uses for these mixtures: (quadrature for the span, its
    dimension ``r``, whether defensive nodes are on)."""
    r = span_rank(teacher, student, backend)
    use_importance = importance and backend.defensive
    sizes = (teacher.n_components, 0 if student is None else student.n_components)
    return backend.for_span(r, use_importance, sizes), r, use_importance


def describe(teacher: Mixture, student: Mixture | None, backend: Backend | None, *, importance: bool) -> str:
    """The ``backend`` text of :func:`expectation`'s :class:`Estimate` for these mixtures
    (computed from shapes only; for callers that compile the values and build the
    :class:`Estimate` outside)."""
    backend = Quadrature() if backend is None else backend
    if isinstance(backend, MonteCarlo):
        return backend.describe()
    resolved, r, _ = _resolve(teacher, student, backend, importance)
    return resolved.describe(r)


def expectation(
    f: Integrand,
    teacher: Mixture,
    student: Mixture | None = None,
    backend: Backend | None = None,
    *,
    key: jax.Array | None = None,
    importance: bool = False,
    log_weighted: bool = False,
    with_error: bool = False,
):
    """``E_{x ~ teacher}[f(x)]`` for a batched integrand ``f: (K, d) -> (K, ...)``.

    Args:
      f: integrand, vectorised over its first axis.
      teacher: the distribution ``p*`` (a :class:`Mixture`).
      student: its means join the span basis; with ``importance=True`` and a
        defensive quadrature, its components also carry nodes.
      backend: :class:`Quadrature` (default) or :class:`MonteCarlo`.
      key: PRNG key, required by ``MonteCarlo(fresh=True)``.
      importance: allow defensive nodes (the integrand stays meaningful away from
        the teacher's mass).
      log_weighted: ``f`` takes ``(x, log_w)``, the points and the logs of their
        weights (node weight times importance weight), and returns the *weighted*
        values ``w f(x)``, which are summed. Lets an integrand that overflows where
        its weight underflows (``rho`` far from the teacher) combine the two in the
        log domain.
      with_error: also return an error estimate (a second rule, or the Monte Carlo
        standard error of a scalar integrand).

    Returns:
      The expectation (shape of ``f``'s trailing axes), or an :class:`Estimate`.
    """
    if not callable(f) or not isinstance(teacher, Mixture) or not (student is None or isinstance(student, Mixture)):
        raise TypeError(
            "expectation(f, teacher, student=None, backend=None): f a function, teacher and student "
            f"overgmm.Mixture; got {type(f).__name__}, {type(teacher).__name__}, {type(student).__name__}"
        )
    backend = Quadrature() if backend is None else backend
    if isinstance(backend, MonteCarlo):
        if backend.fresh:
            if key is None:
                raise ValueError("MonteCarlo(fresh=True) needs a PRNG key: pass key=jax.random.key(...)")
        else:
            key = jax.random.key(backend.seed)
        x = jax.lax.stop_gradient(teacher).sample(key, backend.samples)
        if log_weighted:
            fx = backend.samples * f(x, jnp.full(x.shape[:1], -math.log(backend.samples)))
        else:
            fx = f(x)
        val = jnp.mean(fx, axis=0)
        if not with_error:
            return val
        err = jnp.std(fx, axis=0) / math.sqrt(backend.samples)
        return Estimate(val, err, backend.describe())
    if not isinstance(backend, Quadrature):
        raise TypeError(f"backend must be Quadrature or MonteCarlo, got {type(backend).__name__}")
    backend, r, use_importance = _resolve(teacher, student, backend, importance)
    val, resid = _quadrature_mean(f, teacher, student, backend, r, use_importance, log_weighted)
    if not with_error:
        return val
    val2, _ = _quadrature_mean(f, teacher, student, backend.check_variant(r), r, use_importance, log_weighted)
    # a basis that misses part of the means (rank too small) makes the rule unreliable
    err = jnp.abs(val - val2) + jnp.where(resid > 1e-10 * (1 + jnp.max(jnp.abs(teacher.means))), jnp.inf, 0.0)
    return Estimate(val, err, backend.describe(r))
